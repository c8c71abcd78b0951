"""A run's output directory: one writer at a time, nothing deleted, checkpoints whole or absent.

- The lock, moving aside and atomic writes live in :mod:`llm_jepa.runrecord` (re-exported here:
  :class:`OutputLock`, :func:`move_aside`, :func:`entries`).
- :class:`AtomicCheckpoints`: a ``Trainer`` mixin that writes ``checkpoint-N`` under a staging
  folder and renames it into place when every file is written, so a kill or a full disk leaves
  either the whole checkpoint or none; :func:`newest_complete_checkpoint` skips any that is not whole.
- :func:`truncate_metrics` / :func:`read_metrics`: ``metrics.jsonl`` after a resume holds each step
  once, and its records carry a ``kind`` (``train``, ``eval``, ``summary``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from .diskwrite import DiskFullError, no_space
from .runrecord import LOCK_NAME, OutputLock, OutputLockedError, entries, move_aside, write_text

__all__ = ["LOCK_NAME", "STAGING", "OutputLock", "OutputLockedError", "move_aside", "entries",
           "checkpoint_is_complete", "newest_complete_checkpoint", "set_aside", "AtomicCheckpoints", "DiskFullError",
           "truncate_metrics", "read_metrics", "record_kind"]

log = logging.getLogger(__name__)

STAGING = ".checkpoint-staging"  # where checkpoints are written before being renamed into place
_CHECKPOINT = "checkpoint-"


# ---- checkpoints ---------------------------------------------------------------------------------

def _step(path: Path) -> int | None:
    tail = path.name[len(_CHECKPOINT):] if path.name.startswith(_CHECKPOINT) else ""
    return int(tail) if tail.isdigit() else None


def checkpoint_is_complete(path: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last; a checkpoint is whole when that file parses
    and names the checkpoint's own step (a half-written one, or one cut by a full disk, does not)."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(state, dict) and state.get("global_step") == _step(path)


def newest_complete_checkpoint(directory: Path) -> tuple[Path | None, list[Path]]:
    """(newest complete ``checkpoint-N``, the newer incomplete ones skipped on the way)."""
    found = sorted((p for p in entries(directory) if p.is_dir() and _step(p) is not None), key=_step, reverse=True)
    skipped = []
    for path in found:
        if checkpoint_is_complete(path):
            return path, skipped
        skipped.append(path)
    return None, skipped


def set_aside(checkpoint: Path) -> Path:
    """Rename an incomplete ``checkpoint-N`` to ``incomplete-checkpoint-N`` (``-2``, ... if taken):
    kept for inspection, but no longer a ``checkpoint-*`` that resume or rotation would count."""
    target, n = checkpoint.with_name(f"incomplete-{checkpoint.name}"), 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"incomplete-{checkpoint.name}-{n}")
    checkpoint.rename(target)
    return target


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _disk_full(real: Path, name: str) -> DiskFullError:
    """The error for checkpoint ``name`` of the run in ``real``: the free space, the size of the last
    complete checkpoint (the next one is as large) and how to go on."""
    import errno

    last, _ = newest_complete_checkpoint(real)
    free = shutil.disk_usage(real).free
    size = f"; the last checkpoint took {_tree_bytes(last) / 1e9:.1f} GB" if last else ""
    kept = (f"Nothing was lost: {last.name} is complete. Free space, then resume the run "
            "(llm-jepa train --resume; llm-jepa demo resumes its arm by itself)") if last else \
        "No checkpoint of this run was complete yet: free space and run it again"
    return DiskFullError(errno.ENOSPC, f"No space left on device: {real} cannot hold {name} "
                                       f"({free / 1e9:.1f} GB free{size}). {kept}")


def _copy_run_config(real: Path, checkpoint: Path) -> None:
    """The run's ``llm_jepa_config.yaml`` into a checkpoint being saved: ``eval --model
    RUN/checkpoint-N`` then reads the settings it was trained with (k, views), not the defaults."""
    from .runs import RUN_CONFIG

    if (real / RUN_CONFIG).is_file():
        shutil.copy2(real / RUN_CONFIG, checkpoint / RUN_CONFIG)


class AtomicCheckpoints:
    """Trainer mixin: each checkpoint is written under ``<output_dir>/.checkpoint-staging/`` and
    renamed to ``<output_dir>/checkpoint-N`` once complete (a rename within one file system is atomic).

    The Trainer computes every path of a checkpoint from ``_get_output_dir``; pointing that at the
    staging folder for the duration of ``_save_checkpoint`` redirects all of them at once."""

    _staging_active = False

    def _get_output_dir(self, trial: Any) -> str:
        real = super()._get_output_dir(trial)
        return os.path.join(real, STAGING) if self._staging_active else real

    def _save_checkpoint(self, model: Any, trial: Any) -> None:
        from transformers.trainer_utils import rotate_checkpoints

        real = Path(super()._get_output_dir(trial))
        staging, name = real / STAGING, f"{_CHECKPOINT}{self.state.global_step}"
        if self.args.should_save:
            shutil.rmtree(staging, ignore_errors=True)  # leftovers of a killed save
            # stop before writing gigabytes in vain, judging the next checkpoint by the last (one
            # process only: a rank stopping alone would leave the others waiting at the barrier below)
            last = newest_complete_checkpoint(real)[0] if self.accelerator.num_processes == 1 else None
            if last and shutil.disk_usage(real).free < _tree_bytes(last):
                raise _disk_full(real, name)
        self.accelerator.wait_for_everyone()
        self._staging_active = True
        try:
            super()._save_checkpoint(model, trial)
        except Exception as e:
            if not no_space(e):
                raise
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)  # the half-written checkpoint: space back
            raise _disk_full(real, name) from e
        finally:
            self._staging_active = False
        self.accelerator.wait_for_everyone()  # every rank has written its shards
        if self.args.should_save:
            best = self.state.best_model_checkpoint
            if best and Path(best).parent == staging:  # the Trainer named the best one by its staging path
                self.state.best_model_checkpoint = str(real / Path(best).name)
                self.state.save_to_json(str(staging / name / "trainer_state.json"))
            _copy_run_config(real, staging / name)
            final = real / name
            if final.exists():  # the same step saved again (e.g. a run resumed before its last save)
                shutil.rmtree(final)
            os.replace(staging / name, final)
            shutil.rmtree(staging, ignore_errors=True)
            rotate_checkpoints(output_dir=str(real), save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=False)
        self.accelerator.wait_for_everyone()


# ---- metrics log ---------------------------------------------------------------------------------

def record_kind(logs: dict[str, Any]) -> str:
    """``summary`` (the Trainer's end-of-training record), ``eval`` (evaluation) or ``train`` (a step).
    A step's record holds ``loss``; with ``--include_num_input_tokens_seen`` it also holds
    ``train_runtime``, which alone would make every step look like the summary."""
    if "train_runtime" in logs and "loss" not in logs:
        return "summary"
    if any(k.startswith("eval_") for k in logs):
        return "eval"
    return "train"


def truncate_metrics(path: Path, step: int) -> int:
    """Keep only the records logged up to ``step`` (a resumed run logs the later ones again); a cut
    last line is dropped. Returns how many records were removed."""
    if not path.is_file():
        return 0
    kept, removed = [], 0
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            removed += 1
            continue
        if record.get("kind") == "summary" or record.get("step", 0) > step:
            removed += 1
        else:
            kept.append(line + "\n")
    write_text(path, "".join(kept))
    return removed


def read_metrics(path: Path, kind: str | None = "train") -> list[dict[str, Any]]:
    """Records of ``metrics.jsonl`` of one ``kind`` (None: all). Logs written before records had a
    kind are classified by their keys."""
    if not path.is_file():
        return []
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise ValueError(f"{path}:{lineno}: malformed JSON ({e})") from None
        if kind is None or record.get("kind", record_kind(record)) == kind:
            out.append(record)
    return out
