import hashlib
import sqlite3

import pytest

from llm_jepa.data import example_from_row
from llm_jepa.eval.tasks import spider


@pytest.fixture
def db_dir(tmp_path):
    d = tmp_path / "dbs" / "shop"
    d.mkdir(parents=True)
    con = sqlite3.connect(d / "shop.sqlite")
    con.executescript("CREATE TABLE item(id INTEGER, name TEXT, price REAL);"
                      "INSERT INTO item VALUES (1,'pen',2.0),(2,'ink',5.0),(3,'pad',2.0);")
    con.commit()
    con.close()
    return tmp_path / "dbs"


def _ex(sql, question="How many items?"):
    return example_from_row({"messages": [
        {"role": "system", "content": "Convert natural language to SQL."},
        {"role": "user", "content": f"For db_id:[shop]\n\n{question}"},
        {"role": "assistant", "content": sql}]})


def _digest(db_dir):
    return hashlib.sha256((db_dir / "shop" / "shop.sqlite").read_bytes()).hexdigest()


@pytest.mark.parametrize("attack", [
    "DROP TABLE item", "UPDATE item SET price = 0", "DELETE FROM item", "INSERT INTO item VALUES (9,'x',1)",
    "ATTACH DATABASE 'evil.sqlite' AS evil", "PRAGMA writable_schema = ON",
    "SELECT 1; DROP TABLE item",
])
def test_generated_writes_fail_and_leave_the_database_byte_identical(db_dir, attack, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = _digest(db_dir)
    got = spider.score(attack, _ex("SELECT count(*) FROM item"), db_dir=db_dir)
    assert got["execution"] is False
    assert _digest(db_dir) == before
    assert not (tmp_path / "evil.sqlite").exists()


def test_runaway_recursive_query_is_stopped_by_the_time_limit(db_dir):
    import time

    runaway = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    t = time.monotonic()
    with pytest.raises(spider.QueryError):
        spider.run_query(db_dir / "shop" / "shop.sqlite", runaway, time_limit=0.3)
    assert time.monotonic() - t < 5
    assert spider.score(runaway, _ex("SELECT count(*) FROM item"), db_dir=db_dir, time_limit=0.3)["execution"] is False


def test_order_insensitive_unless_the_reference_orders(db_dir):
    unordered = _ex("SELECT name FROM item WHERE price = 2.0")
    assert spider.score("SELECT name FROM item WHERE price = 2.0 ORDER BY name DESC", unordered,
                        db_dir=db_dir)["execution"] is True
    ordered = _ex("SELECT name FROM item ORDER BY price, name")
    assert spider.score("SELECT name FROM item ORDER BY price, name DESC", ordered, db_dir=db_dir)["execution"] is False
    assert spider.score("SELECT name FROM item ORDER BY price, name", ordered, db_dir=db_dir)["execution"] is True
    # multiset: a duplicate row matters
    assert spider.score("SELECT name FROM item UNION ALL SELECT 'pen'", _ex("SELECT name FROM item"),
                        db_dir=db_dir)["execution"] is False


def test_columns_may_come_in_another_order_as_in_the_official_evaluation(db_dir):
    e = _ex("SELECT name, price FROM item")
    assert spider.score("SELECT price, name FROM item", e, db_dir=db_dir)["execution"] is True
    ordered = _ex("SELECT id, name FROM item ORDER BY id DESC")
    assert spider.score("SELECT name, id FROM item ORDER BY id DESC", ordered, db_dir=db_dir)["execution"] is True
    assert spider.score("SELECT name, id FROM item ORDER BY id", ordered, db_dir=db_dir)["execution"] is False
    # the right columns, but rows paired wrongly: not a match under any column order
    assert spider.score("SELECT a.name, b.price FROM item a JOIN item b ON a.id = b.id % 3 + 1", e,
                        db_dir=db_dir)["execution"] is False
    # a column too many or too few
    assert spider.score("SELECT name, price, id FROM item", e, db_dir=db_dir)["execution"] is False
    assert spider.score("SELECT name FROM item", e, db_dir=db_dir)["execution"] is False


@pytest.mark.parametrize("got,want,ordered,ok", [
    ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], False, True),
    ([(1, "a"), (2, "b")], [("a", 1), ("b", 2)], True, True),
    ([(1, "a"), (2, "b")], [("b", 2), ("a", 1)], True, False),
    ([(1, 1), (2, 2)], [(1, 1), (2, 2)], False, True),  # identical columns: any order works
    ([(1, 2), (2, 1)], [(1, 1), (2, 2)], False, False),  # same column values, wrong pairing
    ([(1, 2, 2)], [(2, 1, 2)], False, True),  # a duplicated value column is used once per place
    ([(1, 2, 3)], [(2, 2, 1)], False, False),  # ... and never twice
    ([], [], True, True), ([(1,)], [], False, False), ([(1,), (1,)], [(1,)], False, False),
])
def test_results_match_cases(got, want, ordered, ok):
    assert spider.results_match(got, want, ordered) is ok


def test_a_broken_reference_is_excluded_with_its_reason(db_dir):
    got = spider.score("SELECT 1", _ex("SELECT nothing FROM nowhere"), db_dir=db_dir)
    assert got["execution"] is None and got["excluded"] == {"execution": "reference query failed"}
    assert "syntax error" in got["detail"]


def test_exact_output_option_is_stricter(db_dir):
    e = _ex("SELECT name FROM item WHERE price = 2.0")
    got = spider.score("SELECT name FROM item WHERE price = 2.0 ORDER BY name", e, db_dir=db_dir,
                       exact_output=True)
    assert got == {"execution": True, "exact_output": False}


def test_missing_database_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="shop.sqlite"):
        spider.check([_ex("SELECT 1")], db_dir=tmp_path)
    with pytest.raises(ValueError, match="--db-dir"):
        spider.check([_ex("SELECT 1")])


# --- issue 11: bounded comparison and sandbox; issue 12: empty generations, released comparison ---


def test_twelve_column_results_match_without_enumerating_permutations():
    """12 columns with the same values in every column: 12! orders looked alike to the old search."""
    import time

    rows = 40
    want = [tuple([r] * 12) for r in range(rows)]
    alternate = [tuple(r if c % 2 == 0 else (r + 1) % rows for c in range(12)) for r in range(rows)]
    shuffled = [tuple((r * 7 + c) % rows for c in range(12)) for r in range(rows)]
    target = [tuple((r * 7 + c) % rows for c in (5, 3, 11, 0, 1, 2, 4, 6, 7, 8, 9, 10)) for r in range(rows)]
    t = time.monotonic()
    assert spider.results_match(alternate, want, ordered=False) is False
    assert spider.results_match(want[::-1], want, ordered=False) is True
    assert spider.results_match(shuffled[::-1], target, ordered=False) is True
    assert spider.results_match(shuffled, target, ordered=True) is True
    assert spider.results_match(shuffled[::-1], target, ordered=True) is False
    assert time.monotonic() - t < 1.0


def test_twelve_column_query_scores_in_under_a_second(db_dir):
    import time

    cols = ", ".join(f"{'id' if c % 2 else 'price'} AS c{c}" for c in range(12))
    swapped = ", ".join(f"{'price' if c % 2 else 'id'} AS c{c}" for c in range(12))
    gold = _ex(f"SELECT {cols} FROM item")
    spider.score("SELECT 1", gold, db_dir=db_dir)  # start the worker outside the timing
    t = time.monotonic()
    assert spider.score(f"SELECT {swapped} FROM item", gold, db_dir=db_dir)["execution"] is True
    assert spider.score(f"SELECT {swapped.replace('price', 'price + 1', 1)} FROM item", gold,
                        db_dir=db_dir)["execution"] is False
    assert time.monotonic() - t < 1.0


@pytest.mark.parametrize("generation", ["", "   ", "-- nothing here", "/* a comment */ ;", ";"])
def test_a_generation_without_a_statement_is_wrong_even_when_the_reference_returns_no_rows(db_dir, generation):
    empty_result = _ex("SELECT name FROM item WHERE price > 100")
    assert spider.score(generation, empty_result, db_dir=db_dir)["execution"] is False
    assert spider.score("SELECT name FROM item WHERE id = 99", empty_result, db_dir=db_dir)["execution"] is True


def test_an_over_long_value_is_stopped_by_sqlite_limits_and_counts_as_wrong(db_dir):
    import time

    huge = "SELECT replace(hex(zeroblob(25000000)), '0', 'aaaaaaaaaa')"
    t = time.monotonic()
    with pytest.raises(spider.QueryError, match="too big|[Mm]emory"):  # SQLite's length limit or the memory cap
        spider.run_query(db_dir / "shop" / "shop.sqlite", huge)
    got = spider.score(f"{huge} FROM item", _ex("SELECT count(*) FROM item"), db_dir=db_dir)
    assert got["execution"] is False and "excluded" not in got
    assert time.monotonic() - t < 5


def test_memory_is_hard_capped_in_the_worker(db_dir):
    """Many modest rows (no single value over SQLite's length limit) pile up past a 200 MB cap:
    the worker fails with a memory error, the evaluating process is untouched."""
    import resource
    import time

    rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 2000000) " \
           "SELECT x, hex(randomblob(1000)) FROM c"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.monotonic()
    with pytest.raises(spider.QueryError, match="Memory|memory"):
        spider.run_query(db_dir / "shop" / "shop.sqlite", rows, time_limit=20, memory_limit=200 << 20)
    assert time.monotonic() - t < 15
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_a_runaway_query_is_killed_at_the_deadline_and_the_next_example_still_runs(db_dir):
    import time

    from llm_jepa.eval.tasks._sql_sandbox import Sandbox

    box = Sandbox()
    t = time.monotonic()
    progress, failure = box.run(_sleep_job, 30, time_limit=0.2)  # one long call no handler can interrupt
    assert progress == {"started": True} and failure == "time limit" and time.monotonic() - t < 3
    assert box.run(_sleep_job, 0, time_limit=2) == ({"started": True, "done": "slept 0"}, None)  # a new worker
    box.close()


def _sleep_job(send, seconds, time_limit):
    import time

    send("started", True)
    time.sleep(seconds)
    return f"slept {seconds}"


@pytest.mark.parametrize("odd", ["run#2", "100%", "what?", "a b"])
def test_database_paths_with_uri_characters_are_opened_read_only_in_place(tmp_path, odd, monkeypatch):
    import shutil

    src = tmp_path / "src"
    src.mkdir()
    con = sqlite3.connect(src / "shop.sqlite")
    con.executescript("CREATE TABLE item(id INTEGER); INSERT INTO item VALUES (1), (2);")
    con.commit()
    con.close()
    db_dir = tmp_path / odd / "db"
    (db_dir / "shop").mkdir(parents=True)
    shutil.copy(src / "shop.sqlite", db_dir / "shop" / "shop.sqlite")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    got = spider.score("SELECT count(*) FROM item", _ex("SELECT count(*) FROM item"), db_dir=db_dir)
    assert got == {"execution": True}
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # no stray file


@pytest.mark.parametrize("name", ["../shop", "/etc/shop", "a/../../b", "..", "sub/shop"])
def test_a_db_id_cannot_leave_the_db_dir(db_dir, name):
    bad = example_from_row({"messages": [
        {"role": "system", "content": "Convert natural language to SQL."},
        {"role": "user", "content": f"For db_id:[{name}]\n\nq"},
        {"role": "assistant", "content": "SELECT 1"}]}, ("spider.jsonl", 4))
    with pytest.raises(ValueError, match="spider.jsonl:4.*db_id"):
        spider.check([bad], db_dir=db_dir / "shop")


def _cli(db, sql):
    import subprocess

    return subprocess.run(["sqlite3", str(db), sql], capture_output=True, text=True).stdout


@pytest.mark.parametrize("sql", [
    "SELECT name, price FROM item", "SELECT price / 3.0, NULL, 1e100, -0.0, 'a|b' FROM item",
    "SELECT 1; SELECT name FROM item WHERE id = 2", "SELECT 1; SELECT nothing FROM nowhere; SELECT 2",
    "SELECT 'semi;colon' -- trailing; comment", "", "SELECT x'00ff41'", "SELECT 2.5e-7, 123456789012345678",
])
def test_exact_output_reproduces_the_sqlite3_shell_text(db_dir, sql):
    import shutil
    import time

    from llm_jepa.eval.tasks._sql_sandbox import cli_output, open_read_only

    if shutil.which("sqlite3") is None:
        pytest.skip("no sqlite3 shell to compare with")
    db = db_dir / "shop" / "shop.sqlite"
    con = open_read_only(db, time.monotonic() + 5)
    try:
        assert cli_output(con, sql) == _cli(db, sql)
    finally:
        con.close()


def test_exact_output_is_the_released_comparison(db_dir):
    e = _ex("SELECT name FROM item WHERE price = 2.0")
    got = spider.score("SELECT name FROM item WHERE price = 2.0 ORDER BY name", e, db_dir=db_dir,
                       exact_output=True)
    assert got == {"execution": True, "exact_output": False}  # rows in another order print other text
    # as in the released code: a failing reference prints nothing, so a generation printing nothing
    # matches it (and the example is counted), while execution excludes the example
    broken = spider.score("SELECT name FROM item WHERE id = 99", _ex("SELECT nothing FROM nowhere"),
                          db_dir=db_dir, reference_compatible=True)
    assert broken["exact_output"] is True and broken["execution"] is None


def test_a_worker_that_cannot_start_is_an_error_not_a_wrong_answer(monkeypatch):
    from llm_jepa.eval.tasks import _sql_sandbox

    monkeypatch.setattr(_sql_sandbox.sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="did not start"):
        _sql_sandbox.Sandbox().run(_sleep_job, 0, time_limit=1)
