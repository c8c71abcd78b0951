"""NL-RX (synth / turk): English -> regular expression.

Metrics: ``exact`` (the stripped generation equals the reference) and ``startswith`` (it begins
with the reference, for models that never learn to stop): the paper's released rules, reproduced
exactly (its generation step strips the generation; NL-RX references carry no surrounding
whitespace). ``equivalent``: the two regexes accept the same language, the NL-RX paper's DFA
measure (:mod:`llm_jepa.eval.regex_equiv`). A generation that does not parse is not equivalent;
only a comparison stopped by its time or size limit is undecided (excluded, and counted in the
summary), as is an example whose reference does not parse.
"""

from __future__ import annotations

from typing import Any

NAME = "regex"
PRIMARY = "exact"
SYSTEM_PROMPTS = ("Convert natural language to regular expression.",)


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def score(generation: str, example, *, equivalence: bool = True, **_) -> dict[str, Any]:
    gen, ref = generation.strip(), example.assistant.strip()
    out: dict[str, Any] = {"exact": gen == ref, "startswith": gen.startswith(ref)}
    if equivalence:
        from ..regex_equiv import equivalent, parses

        if gen == ref:
            out["equivalent"] = True
        elif not parses(ref):
            out["equivalent"], out["excluded"] = None, {"equivalent": "reference does not parse"}
        else:
            out["equivalent"] = equivalent(gen, ref)
            if out["equivalent"] is None:
                out["excluded"] = {"equivalent": "comparison exceeded its time or size limit"}
    return out
