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
  throwaway venv), the same 15 values, on the SQLite it bundles.

It prints CPU time per response (this machine is shared: wall-clock time mostly measures
the other jobs and the disk's fsyncs) and each way's ratio to "sqlite3, as now".
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench_report import bare_rows, synthetic_syncs

from deskpulse.store import open_store

INSERT_15 = """INSERT INTO responses (device_id, seq, rating, scale, told_next, latency_ds,
    rapid, closed, boot, uptime_s, device_wall, wall, time_source, config_version, sync_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, seq) DO NOTHING"""
INSERT_17 = """INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (device_id, seq) DO NOTHING"""
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


def cpu_per_response(batches: list[list[tuple[Any, ...]]], execute: Callable[[str], Any],
                     executemany: Callable[[str, list[tuple[Any, ...]]], Any],
                     insert: str) -> float:
    spent = 0.0
    for rows in batches:
        start = time.process_time()
        execute("BEGIN IMMEDIATE")
        executemany(insert, rows)
        execute("COMMIT")
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
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as scratch:
        schema = store_schema(Path(scratch) / "schema.db")
        for round_ in range(args.rounds):
            ways: list[tuple[str, Any, list[list[tuple[Any, ...]]], str]] = [
                ("sqlite3, as before (bools, 2 NULLs)", sqlite3, old, INSERT_17),
                ("sqlite3, as now (ints, 15 values)", sqlite3, new, INSERT_15)]
            if apsw is not None:
                ways.append((f"apsw {apsw.apsw_version()}", apsw, new, INSERT_15))
            for way, (name, module, batches, insert) in enumerate(ways):
                path = Path(scratch) / f"round{round_}-way{way}.db"
                if module is sqlite3:
                    conn: Any = sqlite3.connect(path, isolation_level=None)
                else:
                    conn = apsw.Connection(str(path))
                for statement in (*PRAGMAS, *schema):
                    conn.execute(statement)
                results.setdefault(name, []).append(
                    cpu_per_response(batches, conn.execute, conn.executemany, insert))
                conn.close()
    anchor = min(results["sqlite3, as now (ints, 15 values)"])
    print(f"{args.responses:,} responses from {args.devices} kiosks into the store's schema, "
          f"{len(syncs)} commits, best of {args.rounds} rounds (CPU time; stdlib SQLite "
          f"{sqlite3.sqlite_version}{'' if apsw else '; apsw not installed'}):")
    for name, figures in results.items():
        best = min(figures)
        print(f"  {name:<38} {best:5.2f} µs/response  {1e6 / best:>9,.0f}/s  "
              f"x{anchor / best:.2f} of sqlite3 as now")
    return 0


if __name__ == "__main__":
    sys.exit(main())
