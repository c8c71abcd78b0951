"""Run untrusted SQL where wall time and memory are hard-capped: a worker process.

A progress handler alone cannot interrupt one long opcode (``replace(hex(zeroblob(25000000)), ...)``
ran 14 s and took 4.5 GB in-process), so generated SQL runs in a separate, freshly spawned Python
process (``python -m llm_jepa.eval.tasks._sql_sandbox``, so that no caller's main module is
re-imported, as multiprocessing's spawn would) that:

- caps its address space (``RLIMIT_AS``, ``memory_limit`` bytes), SQLite's heap
  (``PRAGMA hard_heap_limit``) and the size of any string, blob or row (``SQLITE_LIMIT_LENGTH``),
  and keeps temporary tables in memory, so an oversized query fails with an error (or the worker
  dies), never the evaluation;
- opens the database read-only (a ``file:`` URI built with :meth:`pathlib.Path.as_uri`, so ``#``,
  ``%`` and ``?`` in a path are escaped), sets ``PRAGMA query_only`` and an authorizer that denies
  everything but reading, so writes, ``ATTACH`` and ``PRAGMA`` fail;
- interrupts a query at the deadline (progress handler); the parent kills the worker if it has not
  answered shortly after, and starts a new one for the next example.

The whole comparison of one example (the reference, the generated query and the matching of their
results) runs in the worker, so the deadline and the memory cap bound all of it and only a few
booleans cross the pipe. The worker lives across examples (spawning one costs ~0.1 s).
"""

from __future__ import annotations

import atexit
import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Sandbox", "QueryError", "open_read_only", "statements", "cli_output"]

MEMORY_LIMIT = 1 << 30  # bytes of address space for the worker
LENGTH_LIMIT = 10_000_000  # bytes in one string, blob or row (Spider's values are a few bytes)
GRACE = 1.0  # seconds the worker may take past the deadline before it is killed
STARTUP = 60.0  # seconds a new worker may take to start (~0.3 s on an idle machine)
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
# strings, quoted identifiers, comments, statement separators, anything else (SQLite's lexical classes)
_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|`[^`]*`|\[[^\]]*\]|(--[^\n]*|/\*.*?(?:\*/|\Z))|(;)"
                    r"|[^'\"`\[;/-]+|.", re.S)


class QueryError(Exception):
    """The query failed, was denied, or ran past a time or memory limit."""


def statements(sql: str) -> list[str]:
    """The statements of ``sql`` with comments removed; empty (and comment-only) ones dropped."""
    out, current = [], []
    for m in _TOKEN.finditer(sql):
        if m.group(2):
            out.append("".join(current))
            current = []
        elif not m.group(1):  # a comment separates tokens like a space
            current.append(m.group(0))
        else:
            current.append(" ")
    out.append("".join(current))
    return [s.strip() for s in out if s.strip()]


def _authorize(action: int, *args: Any) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def open_read_only(path: str | Path, deadline: float, length_limit: int = LENGTH_LIMIT) -> sqlite3.Connection:
    """A connection that can only read ``path`` and stops any statement after ``deadline``
    (``time.monotonic()``). The path is escaped as a URI (never formatted into one by hand)."""
    con = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
    con.execute("PRAGMA query_only = ON")
    con.execute("PRAGMA temp_store = MEMORY")  # sorts and temporary tables stay under the memory cap
    if hasattr(con, "setlimit"):  # Python 3.11+; before, RLIMIT_AS and the heap limit still apply
        con.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, length_limit)
        con.setlimit(sqlite3.SQLITE_LIMIT_SQL_LENGTH, 100_000)
    con.set_authorizer(_authorize)
    con.set_progress_handler(lambda: int(time.monotonic() > deadline), 1_000)
    return con


def fetch(con: sqlite3.Connection, sql: str) -> list[tuple]:
    """Rows of one statement; a failure of any kind (including running out of memory) is a QueryError."""
    try:
        return con.execute(sql).fetchall()
    except (sqlite3.Error, sqlite3.Warning, ValueError, MemoryError, OverflowError) as e:
        raise QueryError(f"{type(e).__name__}: {e}") from None


def cli_output(con: sqlite3.Connection, sql: str) -> str:
    """The text the ``sqlite3`` command-line shell prints for ``sqlite3 DB SQL`` (default list mode):
    every statement in turn, one line per row, values joined by ``|``, NULL as nothing, numbers as
    SQLite writes them as text; the first failing statement ends the output (its error goes to
    stderr). Statements run here under the read-only sandbox, so a write prints nothing."""
    lines = []
    for stmt in statements(sql):
        try:
            rows = fetch(con, stmt)
        except QueryError:
            break
        lines += ["|".join(_cell(con, v) for v in row) + "\n" for row in rows]
    return "".join(lines)


def _cell(con: sqlite3.Connection, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):  # SQLite's own real-to-text conversion, as the shell prints it
        return con.execute("SELECT CAST(? AS TEXT)", (value,)).fetchone()[0]
    if isinstance(value, bytes):  # printed as a C string: up to the first NUL byte
        return value.split(b"\0")[0].decode("utf-8", errors="replace")
    return str(value).split("\0")[0]


def _limit_memory(memory_limit: int) -> None:
    try:
        import resource
    except ImportError:  # not on Windows: SQLite's heap limit below still applies
        resource = None
    if resource is not None:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    sqlite3.connect(":memory:").execute(f"PRAGMA hard_heap_limit = {memory_limit // 2}")


def _serve(conn: Any, memory_limit: int) -> None:
    """Worker loop: runs ``job(send, *args, time_limit)`` per request; ``send`` reports progress."""
    _limit_memory(memory_limit)
    conn.send(("ready", None))
    while True:
        try:
            job, args = conn.recv()
        except EOFError:
            return
        try:
            conn.send(("done", job(lambda *msg: conn.send(msg), *args)))
        except MemoryError:
            conn.send(("error", "MemoryError: over the memory limit"))
        except Exception:  # a bug, not a query's fault: the caller raises it
            import traceback

            conn.send(("bug", traceback.format_exc()))


def _pipe_ends(read_fd: int, write_fd: int) -> tuple[Any, Any]:
    from multiprocessing.connection import Connection

    return Connection(os.dup(read_fd), writable=False), Connection(os.dup(write_fd), readable=False)


class _Duplex:
    """One reading and one writing connection used as one."""

    def __init__(self, recv: Any, send: Any) -> None:
        self.recv, self.send = recv.recv, send.send


class Sandbox:
    """A worker process that runs jobs under a deadline and a memory cap, one at a time."""

    def __init__(self, memory_limit: int = MEMORY_LIMIT) -> None:
        self.memory_limit = memory_limit
        self._proc: Any = None
        self._recv: Any = None
        self._send: Any = None
        atexit.register(self.close)

    def _start(self) -> None:
        """A fresh interpreter (no parent memory, no forked threads) that imports modules from
        where the caller does (its ``sys.path``), so jobs resolve to the same code."""
        paths = [str(Path(__file__).resolve().parents[3]), *(p for p in sys.path if p and Path(p).is_dir())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
        self._proc = subprocess.Popen([sys.executable, "-m", __name__, str(self.memory_limit)], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._recv, self._send = _pipe_ends(self._proc.stdout.fileno(), self._proc.stdin.fileno())
        try:  # a worker that cannot start would otherwise look like a query that failed
            ready = self._recv.poll(STARTUP) and self._recv.recv() == ("ready", None)
        except (EOFError, ConnectionError):
            ready = False
        if not ready:
            self.close()
            raise RuntimeError(f"the SQL worker ({sys.executable} -m {__name__}) did not start; see its error above")

    def run(self, job: Callable[..., Any], *args: Any, time_limit: float) -> tuple[dict[str, Any], str | None]:
        """Run ``job(send, *args, time_limit)`` in the worker. ``job`` must be a module-level function (it is
        sent by name); it may call ``send(tag, value)`` to report results as they come, so that a
        time-out keeps what was finished. Returns ``(reported, failure)``: the values sent (the
        return value under ``"done"``) and ``None`` when the job finished, else why it did not
        ("time limit", "memory limit or crash", or a memory error)."""
        if self._proc is None or self._proc.poll() is not None:
            self.close()
            self._start()
        try:
            self._send.send((job, (*args, time_limit)))
        except (BrokenPipeError, ConnectionError):
            self.close()
            return {}, "memory limit or crash"
        progress: dict[str, Any] = {}
        end = time.monotonic() + time_limit + GRACE
        try:
            while time.monotonic() < end:
                if self._recv.poll(max(0.0, end - time.monotonic())):
                    tag, value = self._recv.recv()
                    progress[tag] = value
                    if tag == "done":
                        return progress, None
                    if tag == "error":
                        return progress, value
                    if tag == "bug":
                        raise RuntimeError(f"the SQL worker failed:\n{value}")
        except (EOFError, ConnectionError):
            self.close()
            return progress, "memory limit or crash"
        self.close()
        return progress, "time limit"

    def close(self) -> None:
        """Kill the worker (the next ``run`` starts a new one)."""
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            for end in (self._recv, self._send, self._proc.stdin, self._proc.stdout):
                end.close()
        self._proc = self._recv = self._send = None


if __name__ == "__main__":  # the worker: requests on stdin, answers on stdout
    _serve_ends = _pipe_ends(0, 1)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # a stray print cannot corrupt the answers
    _serve(_Duplex(*_serve_ends), int(sys.argv[1]))
