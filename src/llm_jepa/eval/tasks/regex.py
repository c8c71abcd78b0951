"""NL-RX (synth / turk): English -> regular expression.

Metrics: ``exact`` (the stripped generation equals the reference) and ``startswith`` (it begins
with the reference, for models that never learn to stop): the paper's released rules, reproduced
exactly (its generation step strips the generation; NL-RX references carry no surrounding
whitespace). ``equivalent``: the two regexes accept the same language, the NL-RX paper's DFA
measure (:mod:`llm_jepa.eval.regex_equiv`). A generation that does not parse is not equivalent;
only a comparison stopped by its time or size limit is undecided (excluded, and counted in the
summary), as is an example whose reference does not parse.

Whether the model knows the answer apart from whether it stops (:mod:`llm_jepa.eval.termination`):
``contains`` (the reference occurs anywhere in the generation, as the independent replication of the
paper measured it), ``stopped`` (the generation ended with a stop token, not at ``max_new_tokens``)
and ``terminated`` (it stopped right after its answer), with the length of what follows the answer.
Where the answer ends (:func:`answer_end`): after the first occurrence of the reference when the
generation contains it, else after the generation's first whitespace-free run (NL-RX regexes hold
no whitespace, so a model's regex answer is one such run).
"""

from __future__ import annotations

from typing import Any

NAME = "regex"
PRIMARY = "exact"
SYSTEM_PROMPTS = ("Convert natural language to regular expression.",)


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def answer_end(generation: str, reference: str) -> int:
    """Character offset in ``generation`` (unstripped) where its answer ends (see the module docstring)."""
    at = generation.find(reference) if reference else -1
    if at >= 0:
        return at + len(reference)
    lead = len(generation) - len(generation.lstrip())
    rest = generation[lead:]
    return lead + next((i for i, c in enumerate(rest) if c.isspace()), len(rest))


def score(generation: str, example, *, equivalence: bool = True, finish: dict | None = None, **_) -> dict[str, Any]:
    """The metrics of one generation; ``finish``: how it ended (see :func:`llm_jepa.eval.generate.finish_record`)."""
    from ..termination import termination

    gen, ref = generation.strip(), example.assistant.strip()
    out: dict[str, Any] = {"exact": gen == ref, "startswith": gen.startswith(ref), "contains": bool(ref) and ref in gen}
    out.update(termination(generation, answer_end(generation, ref), finish))
    if equivalence:
        from ..regex_equiv import equivalent, parses

        excluded = out.setdefault("excluded", {})
        if gen == ref:
            out["equivalent"] = True
        elif not parses(ref):
            out["equivalent"], excluded["equivalent"] = None, "reference does not parse"
        else:
            out["equivalent"] = equivalent(gen, ref)
            if out["equivalent"] is None:
                excluded["equivalent"] = "comparison exceeded its time or size limit"
        if not excluded:
            del out["excluded"]
    return out
