"""store/sqlite/bulk.py: many rows in multi-row statements, exactly as executemany would
store them (SQLite only; the store's contract tests cover store_batch on every engine)."""

from __future__ import annotations

import sqlite3

import pytest

from deskpulse.store.sqlite import bulk

HEAD = "INSERT INTO t (k, v, note)"
SKIP_TAKEN = "ON CONFLICT (k) DO NOTHING"


def table() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER NOT NULL CHECK (v >= 0), "
                 "note TEXT)")
    return conn


@pytest.mark.parametrize("count", [*range(0, 2 * bulk.ROWS_PER_STATEMENT + 2),
                                   5 * bulk.ROWS_PER_STATEMENT - 1])
def test_every_count_of_rows_is_stored_once_in_order(count: int) -> None:
    conn = table()
    rows = [(k, k * 7, None if k % 3 else f"n{k}") for k in range(count)]
    assert bulk.insert_rows(conn, HEAD, rows, 3, SKIP_TAKEN) == count
    assert conn.execute("SELECT k, v, note FROM t ORDER BY k").fetchall() == rows


def test_rows_already_there_are_not_counted() -> None:
    conn = table()
    bulk.insert_rows(conn, HEAD, [(k, 1, "old") for k in range(0, 300, 2)], 3)
    changed = bulk.insert_rows(conn, HEAD, [(k, 2, "new") for k in range(300)], 3, SKIP_TAKEN)
    assert changed == 150
    assert conn.execute("SELECT count(*), sum(v), count(DISTINCT note) FROM t").fetchone() == (
        300, 150 * 1 + 150 * 2, 2)


def test_a_refused_row_fails_its_statement_and_the_transaction_takes_all_back() -> None:
    conn = table()
    rows = [(k, -1 if k == 2 * bulk.ROWS_PER_STATEMENT + 5 else k, None) for k in range(300)]
    conn.execute("BEGIN")
    with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
        bulk.insert_rows(conn, HEAD, rows, 3)
    conn.execute("ROLLBACK")
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_a_row_of_the_wrong_width_is_refused_before_anything_is_written() -> None:
    conn = table()
    with pytest.raises(ValueError, match="3 values each"):
        bulk.insert_rows(conn, HEAD, [(1, 1, None), (2, 2), (3, 3, None, None)], 3)
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
