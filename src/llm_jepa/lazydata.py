"""Corpora larger than memory: JSONL rows read when the data loader asks for them.

``llm-jepa train --streaming true`` keeps no row in memory. One pass over the file checks every row
(the same file:line:field errors as :func:`llm_jepa.data.load_examples`, before anything is written)
and records where each row starts; afterwards a row is read by seeking to its offset, and tokenized
in the data loader (:class:`LazyTokenizedDataset`). The dataset stays map-style, so the Trainer's
sampler, its shuffling and its resume work as for an in-memory run: a resumed run skips the sampled
indices of the steps it has done without reading those rows, and every batch, including its STP
spans (keyed by line number), is the one the in-memory run would see. What stays in memory is
8 bytes of offset and 8 of line number per row, plus the sampler's permutation (8 bytes per row).

A Hugging Face dataset (a name or folder, not a JSONL file) is streamed instead
(:class:`StreamedExamples`; see the section below for what that changes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .data import DataError, Example, _decode, example_from_row

__all__ = ["LazyExamples", "LazyTokenizedDataset", "StreamedDataset", "StreamedExamples", "TokenizingCollator",
           "open_stream"]


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


# ---- Hugging Face datasets in streaming mode -------------------------------------------------------
#
# A dataset name, a folder saved with ``save_to_disk`` or a folder of data files given to
# ``--data`` with ``--streaming true`` is opened as a ``datasets.IterableDataset``: nothing is read
# up front but the first row (checked at once, before anything is written). A stream cannot be
# checked whole before training: every later row is checked when the data loader meets it, and a
# bad one stops the run with ``NAME[SPLIT]:ROW: field ...`` before the optimizer step that would
# use it. Rows are tokenized in the data loader's collate step (:class:`TokenizingCollator`), so
# that in a multi-process run every process reads the stream but tokenizes only its own share:
# accelerate hands process p the p-th slice of every global batch (its ``IterableDatasetShard``),
# which keeps the global batches those of one process (``split_dataset_by_node`` would give each
# process other rows, and accelerate would shard them again). Resume: the checkpoint's global
# step gives the rows the done steps used; the resumed stream skips them (read, not tokenized).


def saved_to_disk(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
    (``load_dataset`` refuses those: they need ``load_from_disk``)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def open_stream(name: str, split: str = "train") -> Any:
    """``name`` (a hub dataset, a ``save_to_disk`` folder or a folder of JSON/parquet files) as a
    ``datasets.IterableDataset``; a saved folder is memory-mapped, never loaded."""
    import datasets  # heavy: only when a dataset is streamed

    path = Path(name)
    if saved_to_disk(path):
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise ValueError(f"no split {split!r} (it has {', '.join(ds)})")
            ds = ds[split]
        return ds.to_iterable_dataset()
    return datasets.load_dataset(name, split=split, streaming=True)


class StreamedExamples:
    """The rows of a streamed dataset as :class:`Example` objects, read when iterated.

    ``source`` of row i is ``("NAME[SPLIT]", i)``, as :func:`llm_jepa.data.load_examples` names the
    rows of the same dataset, so STP's spans (keyed by it) and error messages are those of an
    in-memory run. ``start`` rows are skipped by the next iteration only (a resumed run)."""

    is_stream = True

    def __init__(self, name: str, split: str = "train", limit: int | None = None,
                 check: Callable[[Example], Any] | None = None) -> None:
        self.name, self.where, self.limit, self.check, self.start = name, f"{name}[{split}]", limit, check, 0
        if not Path(name).exists():  # a hub name: one line now if it cannot be downloaded
            from .hub import require_loadable

            require_loadable(name, "dataset", "--data", alternatives="a JSONL file, a dataset folder saved with "
                             "save_to_disk or a folder of JSON/parquet files")
        try:
            self.stream = open_stream(name, split)
        except Exception as e:  # datasets raises many types; the user needs the name and the reason
            raise FileNotFoundError(f"{name}: opening it as a streamed dataset failed: {e}") from e
        if next(iter(self), None) is None:  # the first row is checked now, before anything is written
            raise DataError(f"{self.where}: no examples")

    def __iter__(self):
        ds = self.stream.take(self.limit) if self.limit is not None else self.stream
        start, self.start = self.start, 0
        for i, row in enumerate(ds.skip(start) if start else ds, start=start):
            example = example_from_row(row, (self.where, i))
            if self.check is not None:
                self.check(example)
            yield example


class StreamedDataset(torch.utils.data.IterableDataset):
    """A :class:`StreamedExamples` for the data loader: it yields the examples, untokenized (see
    :class:`TokenizingCollator`). One loader worker at most: several would each read the whole
    stream, and their interleaving would change the order of the rows."""

    def __init__(self, examples: StreamedExamples) -> None:
        self.examples = examples

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        if info is not None and info.num_workers > 1:
            raise ValueError(f"{self.examples.where}: a streamed dataset is read by one data loader worker; "
                             "give --dataloader_num_workers 0 or 1")
        yield from self.examples


class TokenizingCollator:
    """Tokenizes a batch of examples with ``builder``, then collates it with ``collator``."""

    def __init__(self, builder: Any, collator: Callable) -> None:
        self.builder, self.collator = builder, collator

    def set_position(self, micro_batch: int) -> None:
        """Passed on: the trainer seeds loss dropout by the micro-batch index (a resumed run's too)."""
        self.collator.set_position(micro_batch)

    def set_epoch(self, epoch: int) -> None:
        self.collator.set_epoch(epoch)

    def __call__(self, examples: list[Example]) -> Any:
        return self.collator([self.builder(ex) for ex in examples])
