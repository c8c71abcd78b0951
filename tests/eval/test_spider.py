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


def test_a_broken_reference_is_undecided_not_a_crash(db_dir):
    assert spider.score("SELECT 1", _ex("SELECT nothing FROM nowhere"), db_dir=db_dir) == {"execution": None}


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
