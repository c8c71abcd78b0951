"""Spider: English -> SQL, scored by executing both queries on the example's database.

The database is ``DB_DIR/DB_ID/DB_ID.sqlite`` with ``db_id`` taken from the user message
(``For db_id:[NAME]``). Generated SQL is untrusted: databases are opened read-only (SQLite URI
``mode=ro``), ``PRAGMA query_only`` is set, an authorizer denies everything but reading (so
``DROP``, ``UPDATE``, ``ATTACH``, ``PRAGMA`` fail), and a progress handler stops any query that runs
past ``time_limit`` seconds.

``execution``: compared as the official Spider (test-suite) evaluation does: the same number of
rows and columns; the generated query's columns may come in any order (every column permutation
consistent with the values is tried); rows match as multisets (order ignored) unless the
reference query has ``ORDER BY``, when they must match as lists. ``exact_output`` (option
``exact_output=True``): the paper's stricter comparison, identical row lists with columns in order.
"""

from __future__ import annotations

import re
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

NAME = "spider"
PRIMARY = "execution"
SYSTEM_PROMPTS = ("Convert natural language to SQL.",)
_DB_ID = re.compile(r"For db_id:\[([^\]]+)\]")
_ALLOWED = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, getattr(sqlite3, "SQLITE_RECURSIVE", 33)}


class QueryError(Exception):
    pass


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def db_id(example) -> str:
    m = _DB_ID.search(example.user)
    if not m:
        raise ValueError(f"{example.source[0]}:{example.source[1]}: field 'messages.user.content': no 'For db_id:[...]'")
    return m.group(1)


def db_path(db_dir: str | Path, name: str) -> Path:
    return Path(db_dir) / name / f"{name}.sqlite"


def check(examples: list, *, db_dir: str | Path | None = None, **_) -> None:
    """Fail before any generation if a database is missing."""
    if db_dir is None:
        raise ValueError("spider needs --db-dir DIR holding DB_ID/DB_ID.sqlite (the databases are not bundled)")
    missing = sorted({str(db_path(db_dir, db_id(ex))) for ex in examples if not db_path(db_dir, db_id(ex)).is_file()})
    if missing:
        raise FileNotFoundError(f"{len(missing)} Spider database(s) missing, e.g. {missing[0]}")


def _authorize(action, *args):
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def run_query(path: str | Path, sql: str, time_limit: float = 5.0) -> list[tuple]:
    """Rows of ``sql`` on the database at ``path``, read-only, within ``time_limit`` seconds."""
    con = sqlite3.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True)
    try:
        con.execute("PRAGMA query_only = ON")
        con.set_authorizer(_authorize)
        deadline = time.monotonic() + time_limit
        con.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        return con.execute(sql).fetchall()
    except (sqlite3.Error, sqlite3.Warning, ValueError) as e:  # includes interrupted and denied queries
        raise QueryError(str(e)) from None
    finally:
        con.close()


def _ordered(sql: str) -> bool:
    return re.search(r"\border\s+by\b", sql, flags=re.IGNORECASE) is not None


def _rows_equal(got: list[tuple], want: list[tuple], ordered: bool) -> bool:
    return got == want if ordered else Counter(got) == Counter(want)


def _column_orders(got: list[tuple], want: list[tuple]) -> Iterator[tuple[int, ...]]:
    """Orders of ``got``'s columns worth trying: reference column j can only come from a generated
    column holding the same multiset of values (necessary for any match, ordered or not)."""
    width = len(want[0])
    got_cols = [Counter(r[i] for r in got) for i in range(width)]
    want_cols = [Counter(r[j] for r in want) for j in range(width)]
    candidates = [[i for i in range(width) if got_cols[i] == want_cols[j]] for j in range(width)]

    def extend(prefix: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
        if len(prefix) == width:
            yield prefix
            return
        for i in candidates[len(prefix)]:
            if i not in prefix:  # each generated column is used once
                yield from extend(prefix + (i,))

    return extend(())


def results_match(got: list[tuple], want: list[tuple], ordered: bool) -> bool:
    """Official Spider execution comparison: any column order of ``got``; multisets of rows unless
    ``ordered`` (the reference has ORDER BY)."""
    if len(got) != len(want):
        return False
    if not want:
        return True
    if len({len(r) for r in got}) != 1 or len(got[0]) != len(want[0]):
        return False
    for perm in _column_orders(got, want):
        if _rows_equal([tuple(r[i] for i in perm) for r in got], want, ordered):
            return True
    return False


def score(generation: str, example, *, db_dir: str | Path | None = None, time_limit: float = 5.0,
          exact_output: bool = False, **_) -> dict[str, bool | None]:
    if db_dir is None:
        raise ValueError("spider needs db_dir (--db-dir)")
    path = db_path(db_dir, db_id(example))
    try:
        want = run_query(path, example.assistant, time_limit)
    except QueryError:  # a broken reference decides nothing (counted as undecided in the summary)
        return {"execution": None, **({"exact_output": None} if exact_output else {})}
    try:
        got = run_query(path, generation.strip(), time_limit)
    except QueryError:
        got = None
    out: dict[str, bool | None] = {
        "execution": got is not None and results_match(got, want, _ordered(example.assistant))
    }
    if exact_output:
        out["exact_output"] = got is not None and got == want
    return out
