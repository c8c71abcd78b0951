"""Sentiment (rotten_tomatoes: Good / Bad; yelp: five labels): the generation starts with the label.

``label``: the generation, stripped of surrounding whitespace, starts with the reference label,
case-sensitive: the paper's released ``startswith`` rule, reproduced exactly (so ``good`` does not
match ``Good``, and ``Good`` does not match ``Very Good``).
"""

from __future__ import annotations

NAME = "sentiment"
PRIMARY = "label"
SYSTEM_PROMPTS = ("Determine whether the comment is positive or negative",)


def matches(example) -> bool:
    return (example.system or "").strip() in SYSTEM_PROMPTS


def score(generation: str, example, **_) -> dict[str, bool | None]:
    return {"label": generation.strip().startswith(example.assistant)}
