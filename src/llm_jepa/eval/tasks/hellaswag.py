"""HellaSwag: pick the ending A/B/C/D with the highest next-token probability after the prompt.

No generation: one forward per batch, logits of the four letter tokens at the last prompt position.
Ties go to the first letter in A-D order (deterministic). ``choice``: the picked letter equals the
reference.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "hellaswag"
PRIMARY = "choice"
SYSTEM_PROMPTS = ("Which one of A), B), C), or D) is the best ending for the context? Answer A, B, C, or D.",)
LETTERS = ("A", "B", "C", "D")


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def letter_ids(tokenizer: Any) -> list[int]:
    ids = []
    for letter in LETTERS:
        pieces = tokenizer(letter, add_special_tokens=False)["input_ids"]
        if len(pieces) != 1:
            raise ValueError(f"the tokenizer splits {letter!r} into {len(pieces)} tokens; cannot score HellaSwag")
        ids.append(pieces[0])
    return ids


def pick(logits: torch.Tensor) -> list[str]:
    """[N, 4] letter logits -> letters; ``argmax`` returns the first maximum, so ties go to A-D order."""
    return [LETTERS[i] for i in logits.argmax(dim=-1).tolist()]


@torch.no_grad()
def choose(model: Any, tokenizer: Any, examples: list, plain: bool = False, batch_size: int = 8,
           separator: str = "\n") -> list[dict]:
    from ..generate import render_prompt

    ids = letter_ids(tokenizer)
    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last column is every prompt's last token
    out = []
    try:
        for i in range(0, len(examples), batch_size):
            prompts = [render_prompt(tokenizer, list(ex.messages), plain, separator) for ex in examples[i : i + batch_size]]
            enc = tokenizer(prompts, add_special_tokens=plain, padding=True, return_tensors="pt").to(device)
            logits = model(**enc, logits_to_keep=1).logits[:, -1, ids].float()  # [B, 4]
            out += [{"choice": c, "logits": row} for c, row in zip(pick(logits), logits.tolist(), strict=True)]
    finally:
        tokenizer.padding_side = side
    return out


def score(generation: str, example, **_) -> dict[str, bool | None]:
    return {"choice": generation.strip()[:1] == example.assistant.strip()[:1]}
