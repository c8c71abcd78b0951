"""Attention isolation for packed rows, derived from one per-token segment id.

A packed row holds several segments (the conversation, the Text view, the Code view of several
examples). Each token may attend only to earlier tokens of its own segment. For a row with
segment ids ``[0, 0, 1, 1, 1]`` the allowed pairs (query row, key column) are::

        k0 k1 k2 k3 k4
    q0   1  .  .  .  .
    q1   1  1  .  .  .
    q2   .  .  1  .  .
    q3   .  .  1  1  .
    q4   .  .  1  1  1

Transformers >= 5 derives exactly this mask from position ids that restart at 0 for every segment
(when no attention mask and no cache are passed), and flash-attention builds its variable-length
boundaries from them, so the default path passes position ids only. :func:`additive_block_causal_mask`
materialises the mask for backends that need it explicitly (the ``explicit`` isolation mode); with
``window`` it is the sliding-window variant (a query sees at most the ``window`` latest keys of its
segment, itself included) that sliding-window layers (Gemma 2 / 3) need beside the full one.
"""

from __future__ import annotations

import torch

__all__ = [
    "position_ids_from_segments",
    "block_causal_mask",
    "additive_block_causal_mask",
]


def position_ids_from_segments(segment_ids: torch.Tensor) -> torch.Tensor:
    """Positions that restart at 0 at every segment start. ``segment_ids``: [R, T] -> [R, T]."""
    R, T = segment_ids.shape
    idx = torch.arange(T, device=segment_ids.device).expand(R, T)  # [R, T]
    starts = torch.ones_like(segment_ids, dtype=torch.bool)  # [R, T] True where a segment begins
    starts[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
    start_pos = torch.where(starts, idx, torch.zeros_like(idx)).cummax(dim=1).values  # [R, T]
    return idx - start_pos


def block_causal_mask(segment_ids: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean mask, True where query t may attend to key s (and, with ``window``, t - s < window:
    transformers' sliding window). [R, T] -> [R, T, T]."""
    T = segment_ids.shape[1]
    same = segment_ids[:, :, None] == segment_ids[:, None, :]  # [R, T, T]
    causal = torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril()  # [T, T]
    if window is not None:
        causal = causal & ~torch.ones(T, T, dtype=torch.bool, device=segment_ids.device).tril(-window)
    return same & causal


def additive_block_causal_mask(segment_ids: torch.Tensor, dtype: torch.dtype = torch.float32,
                                window: int | None = None) -> torch.Tensor:
    """The same mask as 0 / -inf-like additive bias, shaped for Hugging Face models. [R, 1, T, T]."""
    allowed = block_causal_mask(segment_ids, window)[:, None]  # [R, 1, T, T]
    bias = torch.zeros(allowed.shape, dtype=dtype, device=segment_ids.device)
    return bias.masked_fill(~allowed, torch.finfo(dtype).min)
