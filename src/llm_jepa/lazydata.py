"""Corpora larger than memory: JSONL rows read when the data loader asks for them.

``llm-jepa train --streaming true`` keeps no row in memory. One pass over the file checks every row
(the same file:line:field errors as :func:`llm_jepa.data.load_examples`, before anything is written)
and records where each row starts; afterwards a row is read by seeking to its offset, and tokenized
in the data loader (:class:`LazyTokenizedDataset`). The dataset stays map-style, so the Trainer's
sampler, its shuffling and its resume work as for an in-memory run: a resumed run skips the sampled
indices of the steps it has done without reading those rows, and every batch, including its STP
spans (keyed by line number), is the one the in-memory run would see. What stays in memory is
8 bytes of offset and 8 of line number per row, plus the sampler's permutation (8 bytes per row).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DataError, Example, _decode, example_from_row

__all__ = ["LazyExamples", "LazyTokenizedDataset"]


class LazyExamples:
    """The rows of a JSONL file as a sequence of :class:`Example`, read on access.

    ``check`` runs on every row during the indexing pass (e.g. the view-pair check of a JEPA run)."""

    def __init__(self, path: str | Path, limit: int | None = None, check: Callable[[Example], Any] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: --streaming reads a JSONL file; no such file")
        offsets, lines = [], []
        with self.path.open("rb") as f:
            position = 0
            for lineno, raw in enumerate(f, start=1):
                if limit is not None and len(offsets) >= limit:
                    break
                start, position = position, position + len(raw)
                example = self._parse(raw, lineno)
                if example is None:
                    continue
                if check is not None:
                    check(example)
                offsets.append(start)
                lines.append(lineno)
        if not offsets:
            raise DataError(f"{self.path}: no examples")
        self.offsets, self.lines = np.asarray(offsets, dtype=np.int64), np.asarray(lines, dtype=np.int64)
        self.rows: np.ndarray | None = None  # a subset's row numbers, in order (None: every row)

    def _parse(self, raw: bytes, lineno: int) -> Example | None:
        line = _decode(raw, self.path, lineno)
        if not line.strip():
            return None
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{self.path}:{lineno}: malformed JSON ({e.msg} at column {e.colno})") from None
        return example_from_row(row, (str(self.path), lineno))

    def __len__(self) -> int:
        return len(self.rows) if self.rows is not None else len(self.offsets)

    def __getitem__(self, i: int) -> Example:
        j = int(self.rows[i]) if self.rows is not None else int(i)
        with self.path.open("rb") as f:
            f.seek(int(self.offsets[j]))
            return self._parse(f.readline(), int(self.lines[j]))

    def subset(self, fraction: float = 1.0, rows: int | None = None, seed: int = 0) -> LazyExamples:
        """:func:`llm_jepa.data.subset_examples` on row numbers: the same rows, none of them read."""
        from .data import subset_examples

        if fraction == 1.0 and rows is None:
            return self
        self.rows = np.asarray(subset_examples(list(range(len(self.offsets))), fraction, rows, seed), dtype=np.int64)
        return self


class LazyTokenizedDataset(torch.utils.data.Dataset):
    """Rows tokenized when the data loader asks for them (see the module docstring)."""

    def __init__(self, examples: LazyExamples, builder: Any) -> None:
        self.examples, self.builder = examples, builder

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> Any:
        return self.builder(self.examples[i])
