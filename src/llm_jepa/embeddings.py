"""Embeddings of views for analysis and evaluation: Enc(Text), Pred(Enc(Text)) and Enc(Code).

Batched, no gradients, one packed forward per batch (the same path as training).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .collator import pack
from .data import Example
from .objective import DEFAULT_ISOLATION, forward_hidden
from .views import ViewConfig, select_pair, view_segments

__all__ = ["ViewEmbeddings", "encode_views", "encode_segments"]


@dataclass
class ViewEmbeddings:
    """Float32 CPU tensors [N, C]: ``text`` = Enc(Text) and ``code`` = Enc(Code) (no predictors), and
    ``pred`` = Pred(Enc(source)): the source view of ``direction`` (Text for text_to_code, Code for
    code_to_text) with the run's k predictor tokens (equal to Enc(source) when k = 0). ``target`` is
    what ``pred`` was trained to match."""

    text: torch.Tensor
    pred: torch.Tensor
    code: torch.Tensor
    direction: str = "text_to_code"

    @property
    def target(self) -> torch.Tensor:
        return self.code if self.direction == "text_to_code" else self.text


@torch.no_grad()
def encode_segments(model: Any, segments: list, pad_token_id: int, batch_size: int = 16,
                    pack_length: int = 1024, isolation: str = DEFAULT_ISOLATION) -> torch.Tensor:
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
    view: ViewConfig | None = None,
    batch_size: int = 16,
    isolation: str = DEFAULT_ISOLATION,
) -> ViewEmbeddings:
    """Enc(Text), Enc(Code) and Pred(Enc(source)) of every example, built as training built them from
    ``view`` (a run's settings, :attr:`llm_jepa.runs.TrainedRun.view`: k, predictor position and order,
    direction, anchor rule, template, max_length, and ``view_pair``: a multi-turn row's views come
    from the pair training took them from, by default its last). Default: k = 0, with the tokenizer's
    chat template if it has one. A plain ``text`` row, or a ``view_pair`` out of a row's range, is
    refused naming the file, line and field."""
    if view is None:
        view = ViewConfig(predictors=0, chat_template=bool(getattr(tokenizer, "chat_template", None)))

    def enc(kind, contents):
        segs = view_segments(tokenizer, view, contents, kind)
        return encode_segments(model, segs, tokenizer.pad_token_id, batch_size, isolation=isolation)

    pairs = [select_pair(ex, view.view_pair, 'embedding views') for ex in examples]  # every row checked before any forward
    text = enc("text", [request for request, _ in pairs])
    code = enc("code", [answer for _, answer in pairs])
    if view.predictors:
        pred = enc("pred", [pair[0 if view.direction == "text_to_code" else 1] for pair in pairs])
    else:
        pred = text if view.direction == "text_to_code" else code
    return ViewEmbeddings(text=text, pred=pred, code=code, direction=view.direction)
