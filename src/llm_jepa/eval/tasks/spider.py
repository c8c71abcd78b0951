"""Spider: English -> SQL, scored by executing both queries on the example's database.

The database is ``DB_DIR/DB_ID/DB_ID.sqlite`` with ``db_id`` taken from the user message
(``For db_id:[NAME]``); a ``db_id`` that is not a plain folder name (absolute, ``..``, a path
separator) is a data error, so nothing outside ``DB_DIR`` is ever opened. Generated SQL is
untrusted and runs in :mod:`llm_jepa.eval.tasks._sql_sandbox` (read-only, a worker process with a
hard deadline of ``time_limit`` seconds and a memory cap, for the whole comparison of an example).

``execution``: compared as the official Spider (test-suite) evaluation does: the same number of
rows and columns; the generated query's columns may come in any order; rows match as multisets
(order ignored) unless the reference query has ``ORDER BY``, when they must match as lists. A
generation with no statement (empty or only comments) is wrong; one that fails, is denied, or runs
past the time or memory limit is wrong. An example whose reference query fails (or times out) is
excluded from ``execution`` and reported as such in the summary.

``exact_output`` (option ``exact_output=True`` or ``reference_compatible=True``): the paper's
released comparison: the text the ``sqlite3`` shell prints for each query
(:func:`~llm_jepa.eval.tasks._sql_sandbox.cli_output`) must be identical. Like the released code it
counts every example (a failing reference prints nothing) and credits a generation that prints
nothing when the reference prints nothing; unlike it, the queries run read-only in the sandbox.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from ._sql_sandbox import QueryError, Sandbox, cli_output, fetch, open_read_only, statements

__all__ = ["NAME", "PRIMARY", "db_id", "db_path", "check", "score", "results_match", "run_query", "QueryError"]

NAME = "spider"
PRIMARY = "execution"
SYSTEM_PROMPTS = ("Convert natural language to SQL.",)
_DB_ID = re.compile(r"For db_id:\[([^\]]+)\]")
SEARCH_BUDGET = 20_000  # column-pair checks before column matching gives up (undecided)


def matches(example) -> bool:
    return example.system in SYSTEM_PROMPTS


def db_id(example) -> str:
    """The example's database name; a name that could leave ``--db-dir`` is a data error."""
    where = f"{example.source[0]}:{example.source[1]}: field 'messages.user.content'"
    m = _DB_ID.search(example.user)
    if not m:
        raise ValueError(f"{where}: no 'For db_id:[...]'")
    name = m.group(1)
    if name in (".", "..") or any(c in name for c in "/\\\0") or Path(name).is_absolute():
        raise ValueError(f"{where}: db_id {name!r} is not a plain database folder name")
    return name


def db_path(db_dir: str | Path, name: str) -> Path:
    return Path(db_dir) / name / f"{name}.sqlite"


def check(examples: list, *, db_dir: str | Path | None = None, **_) -> None:
    """Fail before any generation if a db_id is unsafe or a database is missing."""
    if db_dir is None:
        raise ValueError("spider needs --db-dir DIR holding DB_ID/DB_ID.sqlite (the databases are not bundled)")
    names = {db_id(ex) for ex in examples}
    missing = sorted(str(db_path(db_dir, n)) for n in names if not db_path(db_dir, n).is_file())
    if missing:
        raise FileNotFoundError(f"{len(missing)} Spider database(s) missing, e.g. {missing[0]}")


def run_query(path: str | Path, sql: str, time_limit: float = 5.0, memory_limit: int | None = None) -> list[tuple]:
    """Rows of one statement ``sql`` on the database at ``path``, in the sandbox (a worker of its
    own when ``memory_limit`` is given)."""
    box = _sandbox() if memory_limit is None else Sandbox(memory_limit)
    try:
        progress, failure = box.run(_rows_job, str(path), sql, time_limit=time_limit)
    finally:
        if memory_limit is not None:
            box.close()
    if failure is not None:
        raise QueryError(failure)
    rows, error = progress["done"]
    if error is not None:
        raise QueryError(error)
    return rows


def _ordered(sql: str) -> bool:
    return re.search(r"\border\s+by\b", sql, flags=re.IGNORECASE) is not None


def _freeze(counter: Counter) -> frozenset:
    return frozenset(counter.items())


def results_match(got: list[tuple], want: list[tuple], ordered: bool, budget: int = SEARCH_BUDGET) -> bool | None:
    """Official Spider execution comparison: some column order of ``got`` gives ``want``, as lists
    of rows if ``ordered`` (the reference has ORDER BY), else as multisets of rows. ``None`` when
    the search for a column order exceeds ``budget`` (never seen on real queries).

    No permutation is enumerated. Ordered rows: a column order exists iff the two multisets of
    column sequences are equal. Multisets of rows: the row multisets, ignoring column order, must
    be equal; then a generated column can only stand for a reference column with the same values
    in the same kinds of rows (``_signatures``); identical generated columns are interchangeable
    and tried once; a partial assignment is kept only while every pair of assigned columns holds
    the same multiset of value pairs as in the reference."""
    if len(got) != len(want):
        return False
    if not want:
        return True
    width = len(want[0])
    if any(len(r) != width for r in got) or any(len(r) != width for r in want):
        return False
    g_cols, w_cols = list(zip(*got, strict=True)), list(zip(*want, strict=True))
    if ordered:
        return Counter(g_cols) == Counter(w_cols)
    g_bags, w_bags = [_freeze(Counter(r)) for r in got], [_freeze(Counter(r)) for r in want]
    if Counter(g_bags) != Counter(w_bags):
        return False
    return _assign(g_cols, w_cols, g_bags, w_bags, got, want, budget)


def _signatures(cols: list[tuple], bags: list[frozenset]) -> list[frozenset]:
    """Per column, the multiset of (value, the row's values ignoring order): invariant under row
    order and column order, so a matching pair of columns must have equal signatures."""
    return [_freeze(Counter(zip(col, bags, strict=True))) for col in cols]


def _assign(g_cols, w_cols, g_bags, w_bags, got, want, budget) -> bool | None:
    g_sig, w_sig = _signatures(g_cols, g_bags), _signatures(w_cols, w_bags)
    classes: dict[tuple, list[int]] = {}  # identical generated columns: one class, used up to len times
    for i, col in enumerate(g_cols):
        classes.setdefault(col, []).append(i)
    reps = [idx[0] for idx in classes.values()]
    left = {i: len(idx) for i, idx in zip(reps, classes.values(), strict=True)}
    candidates = [[i for i in reps if g_sig[i] == w_sig[j]] for j in range(len(w_cols))]
    order = sorted(range(len(w_cols)), key=lambda j: len(candidates[j]))
    pairs: dict[tuple, Counter] = {}
    checks = 0
    target = Counter(want)

    def pair(cols: list[tuple], a: int, b: int, tag: str) -> Counter:
        key = (tag, a, b)
        if key not in pairs:
            pairs[key] = Counter(zip(cols[a], cols[b], strict=True))
        return pairs[key]

    def extend(k: int, chosen: dict[int, int]) -> bool:
        nonlocal checks
        if k == len(order):
            return Counter(tuple(r[chosen[j]] for j in range(len(w_cols))) for r in got) == target
        j = order[k]
        for i in candidates[j]:
            if not left[i]:
                continue
            checks += len(chosen)
            if checks > budget:
                raise _OverBudget
            if all(pair(g_cols, i, chosen[jj], "g") == pair(w_cols, j, jj, "w") for jj in chosen):
                left[i] -= 1
                chosen[j] = i
                if extend(k + 1, chosen):
                    return True
                del chosen[j]
                left[i] += 1
        return False

    try:
        return extend(0, {})
    except _OverBudget:
        return None


class _OverBudget(Exception):
    pass


def _rows_job(send, path: str, sql: str, time_limit: float) -> tuple[list[tuple] | None, str | None]:
    """Worker: rows of one statement, or the error."""
    import time

    con = open_read_only(path, time.monotonic() + time_limit)
    try:
        return fetch(con, sql), None
    except QueryError as e:
        return None, str(e)
    finally:
        con.close()


def _compare_job(send, path: str, gold: str, gen: str, ordered: bool, exact_output: bool, time_limit: float) -> None:
    """Worker: the whole comparison of one example, each result sent as soon as it is known
    (``gold``: the reference's error or None, then ``execution``, then ``exact_output``), so that
    a time-out is blamed on the query it interrupted and earlier results are kept."""
    import time

    con = open_read_only(path, time.monotonic() + time_limit)
    try:
        try:
            want, gold_error = fetch(con, gold), None
        except QueryError as e:
            want, gold_error = None, str(e)
        send("gold", gold_error)
        if gold_error is None:
            try:
                got = fetch(con, gen) if statements(gen) else None
            except QueryError:
                got = None
            send("execution", got is not None and results_match(got, want, ordered))
        if exact_output:
            send("exact_output", cli_output(con, gen) == cli_output(con, gold))
    finally:
        con.close()


_SANDBOX: Sandbox | None = None


def _sandbox() -> Sandbox:
    global _SANDBOX
    if _SANDBOX is None:
        _SANDBOX = Sandbox()
    return _SANDBOX


def score(generation: str, example, *, db_dir: str | Path | None = None, time_limit: float = 5.0,
          exact_output: bool = False, reference_compatible: bool = False, **_) -> dict[str, Any]:
    if db_dir is None:
        raise ValueError("spider needs db_dir (--db-dir)")
    exact_output = exact_output or reference_compatible
    gold, gen = example.assistant, generation.strip()  # the released code strips the generation too
    got, failure = _sandbox().run(_compare_job, str(db_path(db_dir, db_id(example))), gold, gen, _ordered(gold),
                                  exact_output, time_limit=time_limit)
    out: dict[str, Any] = {"execution": got.get("execution", False)}
    if exact_output:
        out["exact_output"] = got.get("exact_output", False)  # no output within the limits: wrong
    gold_error = got.get("gold", f"reference query stopped: {failure}")
    if gold_error is not None:  # the reference failed or did not finish: nothing to compare with
        out["execution"] = None
        out["excluded"] = {"execution": "reference query failed" if "gold" in got else "reference query stopped"}
        out["detail"] = gold_error
    elif out["execution"] is None:
        out["excluded"] = {"execution": "column matching exceeded its search bound"}
    elif failure is not None:
        out["detail"] = f"generated query stopped: {failure}"
    return out
