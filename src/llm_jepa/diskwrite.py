"""Writes that leave a whole file or none: a full disk is one line, and nothing half-written stays.

Every result file a command writes (eval's ``summary.json``, analyze's JSON and PNG files, embed's
arrays, train's final model) goes through here: the bytes go to a hidden sibling (``.NAME.partial``)
that is renamed onto the name once complete (a rename within one folder is atomic), and a write that
fails removes its partial file. A full disk (``ENOSPC``) becomes :class:`~llm_jepa.rundir.DiskFullError`,
which the command line prints as one line; since nothing was half-written, the same command can be
run again once space is freed.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["DiskFullError", "no_space", "write_atomically", "write_text", "write_json", "json_safe", "disk_full", "reporting_full_disk",
           "partial_path"]


class DiskFullError(OSError):
    """A write did not fit on the disk (a checkpoint, a result file): the run stopped with one line, and
    what was complete before is intact."""


def no_space(error: BaseException) -> bool:
    """Whether ``error`` is a full disk (an ``OSError`` ENOSPC, or safetensors' error that wraps one)."""
    import errno

    return (isinstance(error, OSError) and error.errno == errno.ENOSPC) or "No space left on device" in str(error)


def partial_path(path: Path) -> Path:
    """The hidden sibling a write goes to before it is renamed onto ``path``."""
    return path.with_name(f".{path.name}.partial")


def disk_full(path: Path | str, after: str = "nothing was half-written; free space and run the command again"
              ) -> DiskFullError:
    """The one-line error for a write to ``path`` that did not fit (with the free space left)."""
    path = Path(path)
    where = path.parent if path.parent.exists() else Path(".")
    free = shutil.disk_usage(where).free
    return DiskFullError(errno.ENOSPC, f"No space left on device: cannot write {path} "
                                       f"({free / 1e9:.1f} GB free); {after}")


@contextmanager
def reporting_full_disk(path: Path | str, cleanup: Callable[[], Any] | None = None,
                        after: str | None = None) -> Iterator[None]:
    """Turn a full disk inside the block into :func:`disk_full` for ``path``, after ``cleanup``."""
    try:
        yield
    except Exception as e:
        if cleanup is not None:
            cleanup()
        if isinstance(e, DiskFullError) or not no_space(e):
            raise
        raise (disk_full(path, after) if after else disk_full(path)) from e


def write_atomically(path: Path | str, write: Callable[[IO[Any]], Any], binary: bool = False) -> None:
    """``write(f)`` into ``path``'s partial sibling, then rename it onto ``path``."""
    path = Path(path)
    tmp = partial_path(path)
    with reporting_full_disk(path, cleanup=lambda: tmp.unlink(missing_ok=True)):
        with tmp.open("wb" if binary else "w") as f:
            write(f)
        os.replace(tmp, path)


def write_text(path: Path | str, text: str) -> Path:
    """``path.write_text(text)``, whole or not at all (a reader, or a kill, sees the old file or the
    whole new one)."""
    write_atomically(path, lambda f: f.write(text))
    return Path(path)


def json_safe(value: Any) -> Any:
    """JSON has no NaN or infinity (``json.dumps`` writes the invalid token ``NaN``): write them as
    null, recursively through dicts and lists (an accuracy over no decided example is undefined)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json(path: Path | str, value: Any) -> Path:
    """``value`` as indented, valid JSON (non-finite numbers as null, other values JSON cannot hold as
    text), whole or not at all."""
    import json

    return write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False, default=str))
