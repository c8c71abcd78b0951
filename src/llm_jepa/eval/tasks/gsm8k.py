"""GSM8K: grade-school math; the reference's final answer follows ``####``.

``final``: the generation's final answer equals the reference's. The final answer is the FIRST
number after the FIRST ``####`` (a model often keeps generating past its answer, e.g. a new
question with its own ``####``). Numbers are normalised before comparing: thousands commas, ``$``,
a leading ``+`` and trailing decimal zeros are dropped, so ``1,000`` = ``$1000`` = ``1000.00`` =
``+1000``. A generation without ``####`` is judged by its last number (a documented fallback for
models that never learnt the marker); one without any number is wrong.
"""

from __future__ import annotations

import re

NAME = "gsm8k"
PRIMARY = "final"
SYSTEM_PROMPTS = ("Answer the math question, show steps.",)
# a sign, an optional dollar sign, digits with well-formed thousands commas or none, decimals
_NUMBER = re.compile(r"([-+]?)\s*\$?\s*(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?")


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def normalize(match: re.Match) -> str:
    """``-1,000.50`` -> ``-1000.5``; ``+7.00`` -> ``7``; ``-0`` -> ``0``."""
    sign, whole, decimals = match.group(1), match.group(2).replace(",", ""), match.group(3) or ""
    decimals = decimals.rstrip("0").rstrip(".")
    whole = whole.lstrip("0") or "0"
    number = whole + decimals
    return "-" + number if sign == "-" and number.strip("0.") else number


def final_answer(text: str) -> str | None:
    """The normalised final answer of a solution text, or ``None`` when it has no number."""
    if "####" in text:
        m = _NUMBER.search(text.split("####", 1)[1])
        return normalize(m) if m else None
    numbers = list(_NUMBER.finditer(text))
    return normalize(numbers[-1]) if numbers else None


def check(examples: list, **_) -> None:
    """Fail before any generation if a reference has no number after ``####``."""
    for ex in examples:
        if "####" not in ex.assistant or final_answer(ex.assistant) is None:
            raise ValueError(f"{ex.source[0]}:{ex.source[1]}: field 'messages.assistant.content': "
                             "the reference has no final answer after '####'")


def score(generation: str, example, **_) -> dict[str, bool | None]:
    return {"final": final_answer(generation) == final_answer(example.assistant)}
