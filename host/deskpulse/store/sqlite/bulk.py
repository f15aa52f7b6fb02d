"""Many rows into SQLite in few statements: multi-row VALUES instead of executemany.

The stdlib module's `executemany` runs one statement per row: for each row it steps and
resets the statement and walks its own per-row loop. One statement of ROWS_PER_STATEMENT
rows pays that once for all of them: 1.2x on the responses table's insert alone
(tools/bench_binding.py, which also measures the whole batch bound as one JSON value
expanded by `json_each`: slower than either), though only about 0.2 of store_batch's
6.2 µs per response (docs/benchmarks.md, third pass of issue 16 item 8).

What SQLite checks and does for each row (constraints, the conflict clause, triggers,
indexes) is the same either way, and a row it refuses fails the whole statement, so the
caller's transaction or savepoint takes the batch back as before.

Not for every insert: the rollup rows (a blob of counts each) went slower this way
(0.38 -> 0.50 µs per response stored, tools/bench_ingest.py --timers), so they stay on
executemany.
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Sequence
from typing import Any

ROWS_PER_STATEMENT = 128
"""Rows per statement: measured best among 32, 128, 256 and 512 on the responses table
(512 was back near executemany)."""


@functools.lru_cache(maxsize=64)
def _statement(head: str, width: int, rows: int, tail: str) -> str:
    one = f"({', '.join('?' * width)})"
    return f"{head} VALUES {', '.join([one] * rows)} {tail}"


def insert_rows(conn: sqlite3.Connection, head: str, rows: Sequence[Sequence[Any]],
                width: int, tail: str = "") -> int:
    """Run `head VALUES (...), (...), ... tail` for every row of `rows` (each `width`
    values, in the columns `head` names); return how many rows SQLite changed, as
    executemany's rowcount would. The rows go in groups of ROWS_PER_STATEMENT, and what
    is left in power-of-two groups, so an insert has at most eight statement texts and
    they all stay in the connection's statement cache."""
    if rows and set(map(len, rows)) != {width}:
        # One short row would shift every value after it into the wrong column.
        raise ValueError(f"insert_rows: rows must have {width} values each")
    values = list(itertools.chain.from_iterable(rows))
    changed = 0
    whole = len(rows) // ROWS_PER_STATEMENT * ROWS_PER_STATEMENT
    if whole:
        step = ROWS_PER_STATEMENT * width
        cur = conn.executemany(
            _statement(head, width, ROWS_PER_STATEMENT, tail),
            [values[start:start + step] for start in range(0, whole * width, step)])
        changed += max(cur.rowcount, 0)
    done, group = whole, ROWS_PER_STATEMENT // 2
    while done < len(rows):
        if len(rows) - done >= group:
            cur = conn.execute(_statement(head, width, group, tail),
                               values[done * width:(done + group) * width])
            changed += max(cur.rowcount, 0)
            done += group
        group //= 2
    return changed
