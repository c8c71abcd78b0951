"""NQ-Open: open-domain questions; the reference lists acceptable answers separated by ``; ``.

``contains`` (the paper's stated criterion, the default): some acceptable answer appears in the
normalised generation (lower case, no punctuation, no articles, single spaces). The paper's released
code checks the reverse, whether a piece of the generation lies inside a reference, which accepts
trivial answers (an empty or one-word generation); it is offered only as
``reference_compatible=True``, reported as the ``reference_compatible`` metric.
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


def score(generation: str, example, *, reference_compatible: bool = False, **_) -> dict[str, bool | None]:
    gen = normalize(generation)
    refs = answers(example)
    out: dict[str, bool | None] = {"contains": any(f" {a} " in f" {gen} " for a in refs)}
    if reference_compatible:
        out["reference_compatible"] = any(gen in a for a in refs)
    return out
