"""Packing collator: tokenized examples -> padding-free packed rows for one forward pass.

Every segment of the batch (conversations, sources, targets) is placed into rows of at most
``pack_length`` tokens (first-fit decreasing; ``pack_length=0`` puts everything in one row, the
right choice for variable-length flash/flex attention). Rows are padded only to the longest row.
Position ids restart at every segment, which is what isolates the segments (see
:mod:`llm_jepa.attention`).

Loss dropout: with probability ``loss_dropout`` a batch carries no view segments at all, so the
step costs exactly what a plain step costs. The decision comes from a generator seeded with
``seed``, so every rank of a distributed run draws the same sequence and does the same work.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from .attention import position_ids_from_segments
from .views import IGNORE, Segment, TokenizedExample

__all__ = ["PackingCollator", "pack_segments"]


def pack_segments(lengths: list[int], pack_length: int) -> list[list[int]]:
    """First-fit decreasing bin packing of segment indices into rows of <= ``pack_length`` tokens.

    ``pack_length <= 0`` means one row. Rows keep the segments in a deterministic order.
    """
    if pack_length <= 0:
        return [list(range(len(lengths)))]
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda j: (-lengths[j], j)):
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:  # a segment longer than pack_length gets a row of its own
            rows.append([i])
            room.append(pack_length - lengths[i])
    return rows


def _shifted(labels: list[int]) -> list[int]:
    """Target of each position within one segment: the next token's label; the last has none."""
    return labels[1:] + [IGNORE]


@dataclass
class PackingCollator:
    """Collate :class:`~llm_jepa.views.TokenizedExample` items into one packed batch.

    Output keys (R rows, T tokens, P view pairs): ``input_ids``, ``position_ids``, ``segment_ids``,
    ``labels``, ``shift_labels`` [R, T]; ``source_anchor``, ``target_anchor`` [P, 2] as (row, column);
    and ``num_lm_tokens``, ``num_view_tokens``, ``num_pad_tokens`` counters.
    """

    pad_token_id: int
    pack_length: int = 1024
    loss_dropout: float = 0.0
    seed: int = 0
    pad_to_multiple_of: int = 1
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_dropout <= 1.0:
            raise ValueError(f"loss_dropout must be in [0, 1], got {self.loss_dropout}")
        self._rng = random.Random(self.seed)

    def skip_views(self) -> bool:
        """Draw the loss-dropout decision for the next batch (always draws, to stay in step)."""
        return self._rng.random() < self.loss_dropout

    def __call__(self, batch: list[TokenizedExample]) -> dict[str, Any]:
        skip = self.skip_views()
        segments: list[Segment] = [seg for ex in batch for seg in ex.lm]
        n_lm = len(segments)
        pairs = [] if skip else [p for ex in batch for p in ex.pairs]
        for src, tgt in pairs:
            segments += [src, tgt]
        return self._pack(segments, n_lm, len(pairs), skip)

    def _pack(self, segments: list[Segment], n_lm: int, n_pairs: int, skipped: bool) -> dict[str, Any]:
        lengths = [len(s.input_ids) for s in segments]
        rows = pack_segments(lengths, self.pack_length)
        T = max(sum(lengths[i] for i in row) for row in rows)
        T = -(-T // self.pad_to_multiple_of) * self.pad_to_multiple_of
        R = len(rows)
        input_ids = torch.full((R, T), self.pad_token_id, dtype=torch.long)
        labels = torch.full((R, T), IGNORE, dtype=torch.long)
        shift_labels = torch.full((R, T), IGNORE, dtype=torch.long)
        segment_ids = torch.zeros((R, T), dtype=torch.long)
        where: dict[int, tuple[int, int]] = {}  # segment index -> (row, start column)
        for r, row in enumerate(rows):
            col = 0
            for k, i in enumerate(row):
                seg, n = segments[i], lengths[i]
                input_ids[r, col : col + n] = torch.tensor(seg.input_ids)
                if seg.labels is not None:
                    labels[r, col : col + n] = torch.tensor(seg.labels)
                    shift_labels[r, col : col + n] = torch.tensor(_shifted(seg.labels))
                segment_ids[r, col : col + n] = k
                where[i] = (r, col)
                col += n
            segment_ids[r, col:] = len(row)  # padding: a segment of its own, never attended by real tokens
        anchors = [(where[i][0], where[i][1] + segments[i].anchor) for i in range(n_lm, len(segments))]
        anchor_t = torch.tensor(anchors, dtype=torch.long).reshape(-1, 2)  # [2P, 2]
        n_real = sum(lengths)
        return {
            "input_ids": input_ids,
            "position_ids": position_ids_from_segments(segment_ids),
            "segment_ids": segment_ids,
            "labels": labels,
            "shift_labels": shift_labels,
            "source_anchor": anchor_t[0::2],  # [P, 2]
            "target_anchor": anchor_t[1::2],  # [P, 2]
            "num_lm_tokens": sum(lengths[:n_lm]),
            "num_view_tokens": n_real - sum(lengths[:n_lm]),
            "num_pad_tokens": R * T - n_real,
            "views_skipped": skipped,
            "num_pairs": n_pairs,
        }
