"""HellaSwag: pick the ending A/B/C/D with the highest next-token probability after the prompt.

No generation: one forward per batch, logits of the four letter tokens at the last prompt position.
Ties go to the first letter in A-D order (deterministic). ``choice``: the picked letter equals the
reference.

The letter tokens are the ones the model would produce right after the rendered prompt: each
letter is tokenized appended to the prompt and the token after the prompt's own tokens is taken.
A SentencePiece tokenizer (Llama-2, OpenELM) spells a letter at the start of a text as ``▁A`` but
after a template's assistant prefix often as ``A``; ``tokenizer("A")`` alone would score the
wrong token. (The released code uses the vocabulary entry ``"A"`` whatever the tokenizer.)
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


def letter_ids(tokenizer: Any, prompt: str, add_special_tokens: bool = False) -> list[int]:
    """The id of each letter as the continuation of ``prompt``. When the letter would merge with
    the prompt's last token (a prompt ending in a space: ``" "`` + ``"A"`` -> ``"▁A"``), the model,
    which sees that last token on its own, continues with the bare vocabulary entry ``"A"``."""
    base = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    ids = []
    for letter in LETTERS:
        full = tokenizer(prompt + letter, add_special_tokens=add_special_tokens)["input_ids"]
        if len(full) == len(base) + 1 and full[: len(base)] == base:
            ids.append(full[-1])
            continue
        bare = tokenizer.convert_tokens_to_ids(letter)
        if bare is None or bare == tokenizer.unk_token_id:
            raise ValueError(f"after the prompt's last tokens {base[-3:]}, {letter!r} is not one new token "
                             f"(tokenized {full[len(base) - 1:]}); cannot score HellaSwag by next-token probability")
        ids.append(bare)
    return ids


def pick(logits: torch.Tensor) -> list[str]:
    """[N, 4] letter logits -> letters; ``argmax`` returns the first maximum, so ties go to A-D order."""
    return [LETTERS[i] for i in logits.argmax(dim=-1).tolist()]


@torch.no_grad()
def choose(model: Any, tokenizer: Any, examples: list, plain: bool = False, batch_size: int = 8,
           separator: str = "\n") -> list[dict]:
    from ..generate import render_prompt

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # the last column is every prompt's last token
    out = []
    try:
        for i in range(0, len(examples), batch_size):
            prompts = [render_prompt(tokenizer, list(ex.messages), plain, separator)
                       for ex in examples[i : i + batch_size]]
            ids = torch.tensor([letter_ids(tokenizer, p, plain) for p in prompts], device=device)  # [B, 4]
            enc = tokenizer(prompts, add_special_tokens=plain, padding=True, return_tensors="pt").to(device)
            last = model(**enc, logits_to_keep=1).logits[:, -1]  # [B, V]
            logits = last.gather(1, ids).float()  # [B, 4]
            out += [{"choice": c, "logits": row} for c, row in zip(pick(logits), logits.tolist(), strict=True)]
    finally:
        tokenizer.padding_side = side
    return out


def score(generation: str, example, **_) -> dict[str, bool | None]:
    return {"choice": generation.strip()[:1] == example.assistant.strip()[:1]}
