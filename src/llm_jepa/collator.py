"""Packing collator: tokenized examples -> padding-free packed rows for one forward pass.

Every segment of the batch (conversations, sources, targets) is placed into rows of at most
``pack_length`` tokens (first-fit decreasing; ``pack_length=0`` puts everything in one row, the
right choice for variable-length flash/flex attention; ``-1`` picks a short row length per batch for
dense-mask backends). Rows are padded only to the longest row.
Position ids restart at every segment, which is what isolates the segments (see
:mod:`llm_jepa.attention`).

Loss dropout: with probability ``loss_dropout`` a batch carries no view segments at all, so the
step costs exactly what a plain step costs. The decision is a pure function of (``seed``, index of
the micro-batch since training began): every rank of a distributed run makes the same decision and
does the same work, and a resumed run makes the decisions the uninterrupted run would have made
(the trainer sets the index to optimizer step x accumulation steps when training starts, see
:meth:`PackingCollator.set_position`). Batches must be collated in the main process
(``dataloader_num_workers=0``) for the index to reach the collator.

Objective terms with a host-side part (``objective.Term.collate``, e.g. STP's spans, seeded by
(``seed``, epoch, the example's index in its data file)): for each term in ``term_settings`` the
collator calls its hook and adds the keys it returns. Such terms run over the conversation, so loss
dropout does not skip them. ``stp=`` is a shorthand for ``term_settings={"stp_loss": ...}``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import torch

from .attention import position_ids_from_segments
from .objective import TERMS, CollateInputs
from .stp import StpConfig
from .views import IGNORE, Segment, TokenizedExample

__all__ = ["PackingCollator", "pack", "pack_segments", "auto_pack_length"]


def auto_pack_length(lengths: list[int]) -> int:
    """Row length for backends that materialise a dense mask (sdpa, eager on CPU): attention costs
    row_length^2 per row whatever the segments, so rows stay short, about twice the longest segment
    (a power of two, 128..4096). Measured on a 4x256 Llama, batch 32 of NL-RX: 256-token rows are
    2x faster than 1024-token rows for a JEPA step."""
    longest = max(lengths, default=1)
    return min(max(128, 1 << (2 * longest - 1).bit_length()), max(4096, longest))


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
    pack_length: int = -1  # -1: chosen per batch (see auto_pack_length); 0: one row
    loss_dropout: float = 0.0
    seed: int = 0
    pad_to_multiple_of: int = 1
    views_every: int = 1  # >1: views only on every n-th micro-batch (monitoring a baseline cheaply)
    term_settings: dict[str, Any] = field(default_factory=dict)  # term name -> its settings (see Term.collate)
    stp: StpConfig | None = None  # shorthand: term_settings["stp_loss"] (Semantic Tube Prediction's spans)
    _position: int = field(default=0, init=False, repr=False)
    _epoch: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss_dropout <= 1.0:
            raise ValueError(f"loss_dropout must be in [0, 1], got {self.loss_dropout}")
        if self.stp is not None and self.stp.weight:
            self.term_settings = {**self.term_settings, "stp_loss": self.stp}
        unknown = [name for name in self.term_settings if name not in TERMS or TERMS[name].collate is None]
        if unknown:
            raise ValueError(f"term_settings names no term with a host-side part: {unknown}")
        self._hooks = [(TERMS[name].collate, value) for name, value in self.term_settings.items()]

    def set_position(self, micro_batch: int) -> None:
        """Index (since training began) of the micro-batch collated next."""
        self._position = micro_batch

    def set_epoch(self, epoch: int) -> None:
        """The epoch of the batches collated next (seeds the STP spans)."""
        self._epoch = epoch

    def skip_views(self) -> bool:
        """The loss-dropout decision for the next batch, seeded by (seed, micro-batch index)."""
        u = random.Random(f"{self.seed}/{self._position}").random()
        off_beat = self._position % max(self.views_every, 1) != 0
        self._position += 1
        return u < self.loss_dropout or off_beat

    def __call__(self, batch: list[TokenizedExample]) -> dict[str, Any]:
        skip = self.skip_views()
        segments: list[Segment] = [seg for ex in batch for seg in ex.lm]
        n_lm_segments = len(segments)
        n_lm_tokens = sum(len(s.input_ids) for s in segments)
        pairs = [] if skip else [p for ex in batch for p in ex.pairs]
        for src, tgt in pairs:
            segments += [src, tgt]
        out = pack(segments, self.pad_token_id, self.pack_length, self.pad_to_multiple_of)
        anchors = out.pop("anchors")  # [2P, 2]: source, target, source, target, ...
        starts = out.pop("starts")  # (row, column) of every segment
        if self._hooks:
            first = [sum(len(ex.lm) for ex in batch[:i]) for i in range(len(batch))]  # its lm segment
            inputs = CollateInputs(batch, [starts[j] for j in first], self.seed, self._epoch)
            for hook, value in self._hooks:
                out.update(hook(inputs, value))
        out.update(
            source_anchor=anchors[0::2],  # [P, 2]
            target_anchor=anchors[1::2],  # [P, 2]
            num_lm_tokens=n_lm_tokens,
            num_view_tokens=out["num_real_tokens"] - n_lm_tokens,
            views_skipped=skip,
            num_pairs=len(pairs),
            lm_segment_lengths=[len(s.input_ids) for s in segments[:n_lm_segments]],
            view_segment_lengths=[len(s.input_ids) for s in segments[n_lm_segments:]],
        )
        return out


def pack(segments: list[Segment], pad_token_id: int, pack_length: int = 0, pad_to_multiple_of: int = 1) -> dict[str, Any]:
    """Pack segments into rows. Returns ``input_ids``, ``position_ids``, ``segment_ids``, ``labels``,
    ``shift_labels`` [R, T], ``anchors`` [A, 2] (row, column) of the segments that have an anchor, in
    order, and the counters ``num_real_tokens`` / ``num_pad_tokens``."""
    lengths = [len(s.input_ids) for s in segments]
    rows = pack_segments(lengths, auto_pack_length(lengths) if pack_length < 0 else pack_length)
    T = max(sum(lengths[i] for i in row) for row in rows)
    T = -(-T // pad_to_multiple_of) * pad_to_multiple_of
    R = len(rows)
    input_ids = torch.full((R, T), pad_token_id, dtype=torch.long)
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
    anchors = [(where[i][0], where[i][1] + s.anchor) for i, s in enumerate(segments) if s.anchor is not None]
    return {
        "input_ids": input_ids,
        "position_ids": position_ids_from_segments(segment_ids),
        "segment_ids": segment_ids,
        "labels": labels,
        "shift_labels": shift_labels,
        "anchors": torch.tensor(anchors, dtype=torch.long).reshape(-1, 2),
        "starts": [where[i] for i in range(len(segments))],
        "num_real_tokens": sum(lengths),
        "num_pad_tokens": R * T - sum(lengths),
    }
