"""NQ-Open: open-domain questions; the reference lists acceptable answers separated by ``; ``.

``contains`` (the paper's stated criterion, llm-jepa's default): some acceptable answer appears,
as whole words, in the normalised generation (lower case, no punctuation, no articles, single
spaces, as in SQuAD's evaluation).

``reference_compatible`` (option ``reference_compatible=True``): the paper's released check,
reproduced exactly: the generation (stripped, as the released generation step does) is split on
``"; "`` and it is correct when any piece is a substring of the reference string as the dataset
stores it (all answers joined by ``"; "``), case-sensitive, with no normalisation. It checks the
reverse direction, so it accepts trivial answers: an empty generation, ``"e"``, or a word that
happens to occur inside some answer.
"""

from __future__ import annotations

import re
import string

NAME = "nq_open"
PRIMARY = "contains"
SYSTEM_PROMPTS = ("Answer the question below.",)


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def normalize(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def answers(example) -> list[str]:
    return [a for a in (normalize(x) for x in example.assistant.split(";")) if a]


def released_check(generation: str, gold: str) -> bool:
    """The released code's rule: any ``"; "``-separated piece of the generation lies in ``gold``."""
    return any(piece in gold for piece in generation.strip().split("; "))


def score(generation: str, example, *, reference_compatible: bool = False, **_) -> dict[str, bool | None]:
    gen = normalize(generation)
    out: dict[str, bool | None] = {"contains": any(f" {a} " in f" {gen} " for a in answers(example))}
    if reference_compatible:
        out["reference_compatible"] = released_check(generation, example.assistant)
    return out
