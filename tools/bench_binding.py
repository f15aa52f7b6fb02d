"""What the Python binding costs an insert of responses into the store's own schema.

Run from the repository root:
    .venv/bin/python tools/bench_binding.py [--responses N] [--devices D] [--rounds R]

The synthetic syncs of tools/bench_report.py go into the store's responses table (its
indexes and checks, as migrated by deskpulse), one transaction and FULL commit per sync,
three ways, taking turns round by round:

- **sqlite3, as before**: the stdlib module, each row bound as store_batch bound it up to
  December 2026: flags as Python bools and the two interval columns as None (17 values);
- **sqlite3, as now**: flags as ints, the interval columns left to their default (15);
- **apsw** (when importable; it is no dependency of deskpulse: `pip install apsw` in a
  throwaway venv), the same 15 values, on the SQLite it bundles;
- **multi-row VALUES** (store/sqlite/bulk.py, what store_batch uses since issue 16's third
  pass): the same 15 values, ROWS_PER_STATEMENT rows per statement;
- **one JSON value**: the batch bound as ONE text, `json.dumps` of the rows without the
  device and sync (bound once each), expanded by SQLite with
  `INSERT ... SELECT ?, value->>0, ... FROM json_each(?)`; the encoding is timed too;
- **SQLite alone**: the same rows copied by `INSERT ... SELECT` from a temporary table
  filled before the clock starts: no binding at all, what any way of getting the rows in
  from Python would still pay (the schema's B-trees, checks and the commit).

It prints CPU time per response (this machine is shared: wall-clock time mostly measures
the other jobs and the disk's fsyncs) and each way's ratio to "sqlite3, as now".
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_report import bare_rows, synthetic_syncs

from deskpulse.store import open_store
from deskpulse.store.sqlite import bulk

COLUMNS = ("device_id, seq, rating, scale, told_next, latency_ds, rapid, closed, boot, "
           "uptime_s, device_wall, wall, time_source, config_version, sync_id")
INSERT_HEAD = f"INSERT INTO responses ({COLUMNS})"
ON_CONFLICT = "ON CONFLICT (device_id, seq) DO NOTHING"
INSERT_15 = f"{INSERT_HEAD} VALUES ({', '.join('?' * 15)}) {ON_CONFLICT}"
# WHERE true: without it SQLite would read ON CONFLICT as a join's ON.
INSERT_JSON = (f"{INSERT_HEAD} SELECT ?1, "
               f"{', '.join(f'value ->> {i}' for i in range(13))}, ?3 "
               f"FROM json_each(?2) WHERE true {ON_CONFLICT}")
INSERT_17 = """INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (device_id, seq) DO NOTHING"""
ANCHOR = "sqlite3, as now (ints, 15 values)"
CHECKSUM = ("SELECT count(*), sum(seq), sum(rating), sum(latency_ds), sum(wall), "
            "count(time_source), sum(sync_id), count(DISTINCT device_id) FROM responses")
"""Every way must store the same rows: compared after each round."""
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
           "PRAGMA cache_size = -65536")


def store_schema(path: Path) -> list[str]:
    """The store's tables and indexes, as deskpulse creates and migrates them."""
    store = open_store(path)
    conn: sqlite3.Connection = store.connection  # type: ignore[attr-defined]
    statements = [sql for (sql,) in conn.execute(
        "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")]
    store.close()
    return statements


def old_rows(device_id: str, responses: Sequence[Any], sync_id: int) -> list[tuple[Any, ...]]:
    """A row as store_batch bound it before: bools for the flags, None for the interval."""
    return [(*row[:6], bool(row[6]), bool(row[7]), *row[8:], None, None)
            for row in bare_rows(device_id, responses, sync_id)]


Rows = list[tuple[Any, ...]]
Writer = Callable[[Any, Rows], Any]
"""Inserts one batch's rows on a connection (inside the transaction being timed)."""


def by_executemany(insert: str) -> Writer:
    return lambda conn, rows: conn.executemany(insert, rows)


def by_values(conn: sqlite3.Connection, rows: Rows) -> int:
    return bulk.insert_rows(conn, INSERT_HEAD, rows, 15, ON_CONFLICT)


def by_json(conn: sqlite3.Connection, rows: Rows) -> Any:
    # The device (first value) and the sync (last) are the same for every row of a sync.
    return conn.execute(INSERT_JSON, (rows[0][0], json.dumps(
        [row[1:14] for row in rows], separators=(",", ":")), rows[0][14]))


def stage(conn: sqlite3.Connection, rows: Rows) -> None:
    """Untimed: the batch into a temporary table for `from_stage`."""
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS staged AS SELECT * FROM responses WHERE 0")
    conn.execute("DELETE FROM temp.staged")
    conn.executemany(f"INSERT INTO temp.staged ({COLUMNS}) VALUES ({', '.join('?' * 15)})",
                     rows)


def from_stage(conn: sqlite3.Connection, rows: Rows) -> Any:
    return conn.execute(f"{INSERT_HEAD} SELECT {COLUMNS} FROM temp.staged WHERE true "
                        f"{ON_CONFLICT}")


def cpu_per_response(conn: Any, batches: list[Rows], write: Writer,
                     prepare: Writer | None = None) -> float:
    spent = 0.0
    for rows in batches:
        if prepare is not None:
            prepare(conn, rows)
        start = time.process_time()
        conn.execute("BEGIN IMMEDIATE")
        write(conn, rows)
        conn.execute("COMMIT")
        spent += time.process_time() - start
    return spent / sum(map(len, batches)) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=300_000)
    parser.add_argument("--devices", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    try:
        import apsw  # type: ignore[import-not-found]
    except ImportError:
        apsw = None
    _, syncs = synthetic_syncs(args.responses, args.devices, 1)
    syncs = list(syncs)
    new = [bare_rows(k.device_id, responses, i) for i, (k, responses, _) in enumerate(syncs)]
    old = [old_rows(k.device_id, responses, i) for i, (k, responses, _) in enumerate(syncs)]
    results: dict[str, list[float]] = {}
    stored: dict[str, set[tuple[Any, ...]]] = {}
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as scratch:
        schema = store_schema(Path(scratch) / "schema.db")
        for round_ in range(args.rounds):
            ways: list[tuple[str, Any, list[Rows], Writer, Writer | None]] = [
                ("sqlite3, as before (bools, 2 NULLs)", sqlite3, old, by_executemany(INSERT_17),
                 None),
                (ANCHOR, sqlite3, new, by_executemany(INSERT_15), None),
                (f"multi-row VALUES, {bulk.ROWS_PER_STATEMENT} rows", sqlite3, new, by_values,
                 None),
                ("one JSON value, json_each", sqlite3, new, by_json, None),
                ("SQLite alone (INSERT ... SELECT)", sqlite3, new, from_stage, stage)]
            if apsw is not None:
                ways.append((f"apsw {apsw.apsw_version()}", apsw, new,
                             by_executemany(INSERT_15), None))
            for way, (name, module, batches, write, prepare) in enumerate(ways):
                path = Path(scratch) / f"round{round_}-way{way}.db"
                if module is sqlite3:
                    conn: Any = sqlite3.connect(path, isolation_level=None)
                else:
                    conn = apsw.Connection(str(path))
                for statement in (*PRAGMAS, *schema):
                    conn.execute(statement)
                results.setdefault(name, []).append(
                    cpu_per_response(conn, batches, write, prepare))
                stored.setdefault(name, set()).add(conn.execute(CHECKSUM).fetchone())
                conn.close()
    anchor = min(results[ANCHOR])
    print(f"{args.responses:,} responses from {args.devices} kiosks into the store's schema, "
          f"{len(syncs)} commits, best of {args.rounds} rounds (CPU time; stdlib SQLite "
          f"{sqlite3.sqlite_version}{'' if apsw else '; apsw not installed'}):")
    if len(set.union(*stored.values())) != 1:
        raise SystemExit(f"the ways stored different rows: {stored}")
    for name, figures in results.items():
        best = min(figures)
        print(f"  {name:<38} {best:5.2f} µs/response  {1e6 / best:>9,.0f}/s  "
              f"x{anchor / best:.2f} of sqlite3 as now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
