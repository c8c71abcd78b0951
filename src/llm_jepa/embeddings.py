"""Embeddings of views for analysis and evaluation: Enc(Text), Pred(Enc(Text)) and Enc(Code).

Batched, no gradients, one packed forward per batch (the same path as training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .collator import pack
from .data import Example
from .objective import forward_hidden
from .views import ViewBuilder, ViewConfig

__all__ = ["ViewEmbeddings", "encode_views", "encode_segments"]


@dataclass
class ViewEmbeddings:
    """Float32 CPU tensors [N, C]: ``text`` = Enc(Text) (no predictors), ``pred`` = Pred(Enc(Text))
    (Text with the k predictor tokens; equals ``text`` when k = 0), ``code`` = Enc(Code)."""

    text: torch.Tensor
    pred: torch.Tensor
    code: torch.Tensor


@torch.no_grad()
def encode_segments(model: Any, segments: list, pad_token_id: int, batch_size: int = 16,
                    pack_length: int = 1024, isolation: str = "position_ids") -> torch.Tensor:
    """Last-layer hidden state at each segment's anchor. -> [len(segments), C] float32 on CPU."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(segments), batch_size):
        batch = pack(segments[i : i + batch_size], pad_token_id, pack_length)
        batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
        h = forward_hidden(model, batch, isolation)  # [R, T, C]
        a = batch["anchors"]  # [B, 2]
        out.append(h[a[:, 0], a[:, 1]].float().cpu())
    model.train(was_training)
    return torch.cat(out)


def encode_views(
    model: Any,
    tokenizer: Any,
    examples: list[Example],
    *,
    predictors: int = 0,
    batch_size: int = 16,
    chat_template: bool | None = None,
    isolation: str = "position_ids",
    view_system: str = "default",
) -> ViewEmbeddings:
    """Enc(Text), Pred(Enc(Text)) and Enc(Code) of every example. ``chat_template`` defaults to
    whether the tokenizer has one; ``view_system`` should be the one the model was trained with."""
    if chat_template is None:
        chat_template = bool(getattr(tokenizer, "chat_template", None))
    plain = ViewBuilder(tokenizer, ViewConfig(predictors=0, chat_template=chat_template, view_system=view_system))
    with_pred = ViewBuilder(tokenizer, ViewConfig(predictors=predictors, chat_template=chat_template,
                                                  view_system=view_system))

    def enc(segs):
        return encode_segments(model, segs, tokenizer.pad_token_id, batch_size, isolation=isolation)

    text = enc([plain.view(ex.text_view, "user", False) for ex in examples])
    code = enc([plain.view(ex.code_view, "assistant", False) for ex in examples])
    pred = enc([with_pred.view(ex.text_view, "user", True) for ex in examples]) if predictors else text
    return ViewEmbeddings(text=text, pred=pred, code=code)
