"""GSM8K: grade-school math; the reference's final answer follows ``####``.

``final``: the generation's final answer equals the reference's after normalisation (commas,
``$``, whitespace, trailing zeros after a decimal point: ``1,000`` = ``1000`` = ``1000.00``). A
generation without ``####`` is judged by its last number (documented fallback for models that
stop early).
"""

from __future__ import annotations

import re

NAME = "gsm8k"
PRIMARY = "final"
SYSTEM_PROMPTS = ("Answer the math question, show steps.",)
_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def normalize(answer: str) -> str:
    s = answer.strip().replace(",", "").replace("$", "").rstrip(".").strip()
    if re.fullmatch(r"-?\d+\.\d*", s):
        s = s.rstrip("0").rstrip(".")
    return s


def final_answer(text: str) -> str | None:
    if "####" in text:
        return normalize(text.split("####")[-1].strip().split("\n")[0])
    numbers = _NUMBER.findall(text)
    return normalize(numbers[-1]) if numbers else None


def score(generation: str, example, **_) -> dict[str, bool | None]:
    ref = final_answer(example.assistant)
    got = final_answer(generation)
    return {"final": got is not None and got == ref}
