"""NL-RX (synth / turk): English -> regular expression.

Metrics: ``exact`` (same string, surrounding whitespace ignored); ``startswith`` (the generation
begins with the reference: the paper's criterion for models that never learn to stop); and
``equivalent`` (the two regexes accept the same language, the NL-RX paper's DFA measure, see
:mod:`llm_jepa.eval.regex_equiv`; ``None`` when either side cannot be parsed).
"""

from __future__ import annotations

NAME = "regex"
PRIMARY = "exact"
SYSTEM_PROMPTS = ("Convert natural language to regular expression.",)


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def score(generation: str, example, *, equivalence: bool = True, **_) -> dict[str, bool | None]:
    gen, ref = generation.strip(), example.assistant.strip()
    out: dict[str, bool | None] = {"exact": gen == ref, "startswith": gen.startswith(ref)}
    if equivalence:
        from ..regex_equiv import equivalent

        out["equivalent"] = True if gen == ref else equivalent(gen, ref)
    return out
