"""One run record for every command: whose folder this is, whether it holds the same run, and how
its files are written, locked and moved aside.

``train``, ``eval``, ``demo`` and ``sweep`` each keep a small record of what defines their run
(``llm_jepa_config.yaml``, ``eval_run.json``, ``demo_config.json``, ``run.json``) and decide from it
whether a rerun into the same folder continues that run or is another one. What is shared lives
here, once:

- :func:`changes` / :func:`describe`: the settings that differ between the saved record and this
  run (each command declares which keys count and how a key's values compare), shown to the user
  as ``key saved -> now`` when a rerun is refused;
- :func:`resolved` / :func:`same_path`: path normalisation (the same file named relatively, from
  another directory or with ``~`` is the same file);
- :func:`write_json` / :func:`write_text`: atomic writes (a reader sees the old file or the whole new
  one, never half of it);
- :class:`OutputLock`: an advisory ``flock`` on ``<dir>/.llm-jepa.lock`` for the life of a run. The
  kernel drops it when the holder dies (even by ``kill -9``), so a lock file left behind by a dead
  process is stale by construction and is taken over; a live holder is named (pid, host, start).
  Released, it leaves nothing behind: the lock file goes, and so does a folder the lock created that
  is still empty (a run that failed before writing anything);
- :func:`move_aside`: ``--overwrite`` moves the previous run's files into ``<dir>.previous-N`` (or
  ``<into>/<name>-N``) instead of deleting them, and refuses to while any run below holds a lock;
- :func:`inputs_inside`: the inputs that ``--overwrite`` would move away from under the run.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import reprlib
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .diskwrite import write_json, write_text  # whole or not at all; a full disk is one line

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not locked
    fcntl = None

__all__ = ["LOCK_NAME", "OutputLock", "OutputLockedError", "entries", "check_unlocked", "held_locks", "move_aside", "write_json",
           "write_text", "CannotMoveAsideError", "resolved", "same_path", "changes", "describe", "MISSING", "inputs_inside",
           "check_output_name"]

LOCK_NAME = ".llm-jepa.lock"

#: the value :func:`changes` reports for a key one side does not hold
MISSING = "<not set>"


# ---- paths and the diff shown to the user ------------------------------------------------------

def resolved(value: Any) -> Any:
    """A non-empty path string made absolute (``~`` expanded, links followed); anything else as is."""
    if isinstance(value, (str, Path)) and str(value):
        return str(Path(value).expanduser().resolve())
    return value


def same_path(a: Any, b: Any) -> bool:
    """Whether two path values name the same file (equal values, or equal once resolved)."""
    return a == b or (isinstance(a, str) and isinstance(b, str) and bool(a) and bool(b) and resolved(a) == resolved(b))


def changes(saved: dict[str, Any], now: dict[str, Any], keys: Iterable[str] | None = None,
            same: Callable[[str, Any, Any], bool] | None = None) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved, now)}`` for the ``keys`` (default: every key of either side) whose values
    differ by ``same(key, saved, now)`` (default: equality). A key one side lacks compares as None
    (a record written before an option existed) and is shown as :data:`MISSING`. Two differing
    mappings are reported entry by entry (``run_settings.view_system``)."""
    keys = sorted(set(saved) | set(now)) if keys is None else list(keys)
    same = same or (lambda _k, a, b: a == b)
    out: dict[str, tuple[Any, Any]] = {}
    for k in keys:
        a, b = saved.get(k), now.get(k)
        if same(k, a, b):
            continue
        inner = changes(a, b) if isinstance(a, dict) and isinstance(b, dict) else {}
        if inner:  # a nested record (eval's run settings): name the entries that differ, not two long dicts
            out.update({f"{k}.{name}": pair for name, pair in inner.items()})
        else:
            out[k] = (saved.get(k, MISSING), now.get(k, MISSING))
    return out


_SHORT = reprlib.Repr()  # keyword arguments only from Python 3.12
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict = 60, 60, 6, 6


def describe(changed: dict[str, tuple[Any, Any]]) -> str:
    """``key saved -> now, ...``, each value shortened: what a refused rerun tells the user."""
    def show(v: Any) -> str:
        return v if v is MISSING else _SHORT.repr(v)

    return ", ".join(f"{k} {show(a)} -> {show(b)}" for k, (a, b) in changed.items())


# ---- the folder ----------------------------------------------------------------------------------

def entries(directory: Path) -> list[Path]:
    """What a directory holds, leaving out our own lock file."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [p for p in directory.iterdir() if p.name != LOCK_NAME]


def check_output_name(output: Any, flag: str = "--output") -> Path:
    """``output`` as a Path; an empty name is refused (it would mean the current directory)."""
    if output is None or not str(output).strip():
        raise ValueError(f"{flag} is empty; name the output directory (an empty name would write into the current "
                         "directory)")
    return Path(output)


def inputs_inside(directory: Path, inputs: dict[str, Any]) -> list[str]:
    """The ``inputs`` (``{option: path}``) that lie in ``directory`` or are it: ``--overwrite`` would
    move them away from under the run. Names that are not local paths are left out."""
    top = Path(resolved(directory))
    inside = []
    for option, value in inputs.items():
        if isinstance(value, (str, Path)) and str(value) and Path(value).expanduser().exists():
            path = Path(resolved(value))
            if path == top or top in path.parents:
                inside.append(f"{option} {value}")
    return inside


class OutputLockedError(FileExistsError):
    """Another live process holds the output directory (a FileExistsError: the CLI prints it as one line)."""


class OutputLock:
    """Exclusive lock on ``directory`` (created if missing) while a run writes into it.

    Use as a context manager, or ``acquire()`` / ``release()``. The lock file keeps the holder's
    pid, host and start time so that a refused run can say who holds the directory. ``release()``
    removes the lock file, and the folders ``acquire()`` created when they are still empty."""

    def __init__(self, directory: str | Path, purpose: str = "run") -> None:
        self.directory = Path(directory)
        self.purpose = purpose
        self._fd: int | None = None
        self._created: list[Path] = []

    @property
    def path(self) -> Path:
        return self.directory / LOCK_NAME

    def acquire(self) -> OutputLock:
        if self.directory.exists() and not self.directory.is_dir():
            raise FileExistsError(f"{self.directory} is a file, not a directory; choose another output directory")
        self._created = [p for p in (self.directory, *self.directory.parents) if not p.exists()]
        self.directory.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self
        for _ in range(100):  # another holder may remove the file between our open and our flock
            fd = self._lock_file()
            if fd is not None:
                break
        else:
            raise OutputLockedError(f"{self.directory}: its lock file keeps being replaced; is another llm-jepa "
                                    "starting there?")
        previous = os.read(fd, 4096)
        if previous.strip():  # a holder that died without releasing: the kernel already dropped its lock
            import logging

            logging.getLogger(__name__).warning("%s: taking over a stale lock left by %s", self.directory,
                                                _describe(previous))
        info = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": self.purpose,
                "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        self._fd = fd
        return self

    def _lock_file(self) -> int | None:
        """The locked descriptor of the lock file, or None when the file we locked was meanwhile
        removed by its releasing holder (then it is not the file others will lock: try again)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputLockedError(f"{self.directory} is in use by another llm-jepa {self._holder()}; "
                                    "wait for it to finish or choose another output directory") from None
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
        return None

    def _holder(self) -> str:
        try:
            return _describe(self.path.read_bytes())
        except OSError:
            return "process (unknown holder)"

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still held: a later run creates a fresh file
        os.close(self._fd)
        self._fd = None
        for folder in self._created:  # innermost first: a run that wrote nothing leaves no folder
            try:
                folder.rmdir()
            except OSError:
                break
        self._created = []

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    def __del__(self) -> None:  # a lock handle dropped without release() (e.g. an exception) frees the fd
        self.release()


def _describe(raw: bytes) -> str:
    try:
        info = json.loads(raw)
        return f"{info.get('purpose', 'run')} (pid {info['pid']} on {info['host']}, started {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "process (unreadable lock file)"


def _holder_of(lock: Path) -> str | None:
    """Who holds ``lock`` now (None when nobody does: released, stale or absent)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:  # released meanwhile
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _describe(lock.read_bytes())
    finally:
        os.close(fd)  # also drops our probe's shared lock
    return None


def check_unlocked(directory: Path) -> None:
    """Refuse at once, before a run spends minutes loading its model, a directory another run holds
    (the lock itself is taken once the inputs are checked)."""
    holder = _holder_of(Path(directory) / LOCK_NAME) if fcntl is not None else None
    if holder:
        raise OutputLockedError(f"{directory} is in use by another llm-jepa {holder}; wait for it to finish or "
                                "choose another output directory")


def held_locks(directory: Path) -> list[str]:
    """The runs holding a lock anywhere below ``directory`` (its own lock left out: the caller holds
    it), each as ``path (holder)``."""
    directory = Path(directory)
    if fcntl is None or not directory.is_dir():
        return []
    found = ((path.parent, _holder_of(path)) for path in directory.rglob(LOCK_NAME) if path.parent != directory)
    return [f"{where} ({holder})" for where, holder in found if holder]


def move_aside(directory: Path, into: Path | None = None) -> Path | None:
    """Move what ``directory`` holds (but its lock) into a new folder: the sibling
    ``<name>.previous-N``, or with ``into`` the whole folder to ``<into>/<name>-N``. Returns that
    folder (None when there was nothing to move).

    Refused while a run holds a lock below ``directory`` (it would lose its files mid-run), and
    when the files cannot be renamed there (a mount point's sibling is another file system): then
    everything stays where it was, and no empty backup folder is left."""
    directory = Path(directory)
    if into is None and not entries(directory):
        return None
    held = held_locks(directory)
    if held:
        raise OutputLockedError(f"{directory} cannot be moved aside: {', '.join(held)} is running below it; wait for "
                                "it to finish or choose another output directory")
    if into is not None:
        return _rename_numbered(directory, Path(into), f"{directory.name}-")
    directory = directory.resolve()  # "." has no name to build the sibling's from
    backup = _rename_numbered(None, directory.parent, f"{directory.name}.previous-", directory)
    moved: list[tuple[Path, Path]] = []
    try:
        for p in entries(directory):
            p.rename(backup / p.name)
            moved.append((p, backup / p.name))
    except OSError as e:
        for source, target in reversed(moved):
            target.rename(source)
        backup.rmdir()
        raise _cannot_move(directory, backup, e) from None
    return backup


def _rename_numbered(source: Path | None, parent: Path, prefix: str, of: Path | None = None) -> Path:
    """``source`` renamed to (or, with None, a new empty folder made as) ``<parent>/<prefix>N``, the
    first N free; ``of``: the folder whose backup the new one is (for the error message)."""
    parent.mkdir(parents=True, exist_ok=True)
    n = 1
    while True:
        target = parent / f"{prefix}{n}"
        try:
            if source is None:
                target.mkdir()
            elif not target.exists():
                source.rename(target)
            else:
                n += 1
                continue
            return target
        except FileExistsError:
            n += 1
        except OSError as e:
            raise _cannot_move(source or of, target, e) from None


class CannotMoveAsideError(FileExistsError):
    """--overwrite could not move the previous files aside; nothing was moved (printed as one line)."""


def _cannot_move(what: Path | None, where: Path, error: OSError) -> CannotMoveAsideError:
    why = ("it lies on another file system (is the output directory a mount point?)" if error.errno == errno.EXDEV
           else error.strerror or str(error))
    return CannotMoveAsideError(f"{what} cannot be moved aside to {where}: {why}; nothing was moved. Empty it "
                                "yourself or choose another output directory")
