"""Ways to compute one training step, for the benchmark: ours and the paper-style baselines.

Every strategy turns a list of examples into a loss with one ``step(model, examples)`` call. The
paper-style ones are re-implemented here from the paper's description of its released code (as
baselines to measure against, not as a training path):

- ``paper_3row``: conversation, Text view and Code view each padded to ``max_length`` (512), three
  rows per example, one padded forward with full-vocabulary logits for every row;
- ``paper_2row``: the conversation row, plus Text and Code concatenated in one row with a dense
  additive 4D mask that stops the Code tokens from seeing the Text tokens, both padded to 512.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..collator import PackingCollator
from ..objective import ObjectiveConfig, compute_objective, jepa_term, total_loss
from ..views import IGNORE, TokenizedExample

__all__ = ["StepResult", "packed_step", "paper_3row_step", "paper_2row_step"]


@dataclass
class StepResult:
    loss: torch.Tensor
    lm_loss: torch.Tensor
    jepa_loss: torch.Tensor | None
    real_tokens: int
    padded_tokens: int  # tokens the forward processed, padding included
    has_views: bool = True  # False when loss dropout skipped the views of this batch


def packed_step(model: Any, items: list[TokenizedExample], collator: PackingCollator,
                objective: ObjectiveConfig, device: Any) -> StepResult:
    """llm-jepa's path: padding-free packed rows, one forward, LM head only at labels."""
    batch = collator(items)
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    out = compute_objective(model, batch, objective)
    real = batch["num_lm_tokens"] + batch["num_view_tokens"]
    return StepResult(out.loss, out.lm_loss, out.jepa_loss, real, batch["input_ids"].numel(),
                      has_views=batch["num_pairs"] > 0)


def _pad_rows(rows: list[list[int]], length: int, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(rows), length), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), length), dtype=torch.long)
    for i, r in enumerate(rows):
        r = r[:length]
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def _paper_segments(items: list[TokenizedExample]) -> tuple[list[Any], list[Any], list[Any]]:
    """The paper's three segments of every example: the conversation, its Text view, its Code view."""
    return [it.lm[0] for it in items], [it.pairs[0][0] for it in items], [it.pairs[0][1] for it in items]


def _padded_labels(conv: list[Any], length: int) -> torch.Tensor:
    """[B, length] next-token labels of the conversation rows, IGNORE past each row's end."""
    labels = torch.full((len(conv), length), IGNORE, dtype=torch.long)
    for i, s in enumerate(conv):
        labels[i, : len(s.labels)] = torch.tensor(s.labels[:length])
    return labels


def _lm_loss_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labelled positions. [B, T, V], [B, T] -> scalar."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=IGNORE)


def paper_3row_step(model: Any, items: list[TokenizedExample], objective: ObjectiveConfig, device: Any,
                    pad: int, max_length: int = 512) -> StepResult:
    """Three padded rows per example (conversation, Text, Code) in one forward, as the paper's code."""
    conv, src, tgt = _paper_segments(items)
    B = len(items)
    ids, mask = _pad_rows([s.input_ids for s in conv + src + tgt], max_length, pad)
    labels = _padded_labels(conv, max_length)
    ids, mask, labels = ids.to(device), mask.to(device), labels.to(device)
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)  # [3B, T, V]
    lm = _lm_loss_from_logits(out.logits[:B], labels)
    h = out.hidden_states[-1]  # [3B, T, C]
    rows = torch.arange(B, device=device)
    pred = h[B + rows, torch.tensor([s.anchor for s in src], device=device)]
    target = h[2 * B + rows, torch.tensor([s.anchor for s in tgt], device=device)]
    jepa = jepa_term(objective, pred, target)
    real = sum(len(s.input_ids) for s in conv + src + tgt)
    return StepResult(total_loss(objective, lm, jepa), lm, jepa, real, ids.numel())


def _two_view_mask(src_len: int, tgt_len: int, length: int, dtype: torch.dtype) -> torch.Tensor:
    """Additive [T, T] mask of a row holding Text then Code: causal within each, nothing across."""
    seg = torch.full((length,), 2)
    seg[:src_len] = 0
    seg[src_len : src_len + tgt_len] = 1
    allowed = (seg[:, None] == seg[None, :]) & torch.ones(length, length, dtype=torch.bool).tril()
    return torch.zeros(length, length, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)


def paper_2row_step(model: Any, items: list[TokenizedExample], objective: ObjectiveConfig, device: Any,
                    pad: int, max_length: int = 512) -> StepResult:
    """Conversation rows, plus Text+Code rows under a dense 4D additive mask, all padded to 512."""
    conv, src, tgt = _paper_segments(items)
    B = len(items)
    dtype = model.get_input_embeddings().weight.dtype
    c_ids, c_mask = _pad_rows([s.input_ids for s in conv], max_length, pad)
    labels = _padded_labels(conv, max_length)
    causal = torch.ones(max_length, max_length, dtype=torch.bool).tril()
    conv_masks = [torch.zeros(max_length, max_length, dtype=dtype).masked_fill(
        ~(causal & c_mask[i].bool()[None, :]), torch.finfo(dtype).min) for i in range(B)]
    v_ids, _ = _pad_rows([a.input_ids + b.input_ids for a, b in zip(src, tgt, strict=True)], max_length, pad)
    view_masks = [_two_view_mask(len(a.input_ids), len(b.input_ids), max_length, dtype)
                  for a, b in zip(src, tgt, strict=True)]
    ids = torch.cat([c_ids, v_ids]).to(device)
    mask = torch.stack(conv_masks + view_masks)[:, None].to(device)  # [2B, 1, T, T]
    # positions restart for the Code part so it sees the same positions as in its own row
    pos = torch.arange(max_length).repeat(2 * B, 1)
    for i, a in enumerate(src):
        n = len(a.input_ids)
        pos[B + i, n:] = torch.arange(max_length - n)
    out = model(input_ids=ids, attention_mask=mask, position_ids=pos.to(device), output_hidden_states=True,
                use_cache=False)
    lm = _lm_loss_from_logits(out.logits[:B], labels.to(device))
    h = out.hidden_states[-1]
    rows = torch.arange(B, device=device)
    pred = h[B + rows, torch.tensor([a.anchor for a in src], device=device)]
    target = h[B + rows, torch.tensor([len(a.input_ids) + b.anchor for a, b in zip(src, tgt, strict=True)],
                                      device=device)]
    jepa = jepa_term(objective, pred, target)
    real = sum(len(s.input_ids) for s in conv + src + tgt)
    return StepResult(total_loss(objective, lm, jepa), lm, jepa, real, ids.numel())
