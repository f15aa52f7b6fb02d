"""Benchmark `Store.store_batch` against the bare-insert floor measured in the same run.

Run from the repository root:
    .venv/bin/python tools/bench_ingest.py [--responses N] [--devices D] [--db PATH|URL]
                                           [--profile] [--json]

The synthetic kiosks of tools/bench_report.py (anchors at every sync, reboots, clocks a
year off now and then, responses waiting for a time) send their syncs in rounds of
1000-4000 responses per kiosk; each sync is one `store_batch` call with its own commit.
The default, 1,000,000 responses from 50 kiosks, is 20,000 responses per kiosk: the
density of the recorded 10,000,000-from-500 run, so each batch touches as many rollup rows.
Only the time inside `store_batch` counts; generating the responses does not.

Beside it, measured in the same run with the same batches:

- **floor**: the rows alone, into a table that has only its primary key (no index, check,
  foreign key, duplicate test or rollup), one commit per batch, on the same engine;
- **schema insert** (SQLite): the same rows into the store's own responses table (its
  indexes and checks), nothing else: what the schema itself costs before any of
  store_batch's work.

`--interleaved` (SQLite) measures store_batch's way of inserting the responses against
the way before it: two new stores take the same syncs in turns, sync by sync, in one
process, one inserting through store/sqlite/bulk.py's multi-row statements, the other
through executemany (a statement per row); on a shared machine whose load moves a
process's CPU rate by 5-8% between runs, that is the comparison that holds.

`--db` takes a file path (SQLite) or a URL (`postgresql://...`) for `open_store`; the
store there must be new (the kiosks are registered first). Without it a temporary SQLite
file is used. `--profile` runs the ingest under cProfile (slower) and prints CPU time per
response for each phase (cProfile on CPU time).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib
import json
import os
import platform
import pstats
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from bench_report import (
    BARE_TABLE,
    START,
    Kiosk,
    bare_insert_rate,
    bare_rows,
    batch_rate,
    synthetic_syncs,
)

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.store import open_store
from deskpulse.store.base import Store

STATUS = {"board": "esp32-devkitc-ssd1680", "firmware": "bench"}


def is_url(db: str) -> bool:
    return "://" in db


def ingest(store: Store, kiosks: Sequence[Kiosk],
           syncs: Iterator[tuple[Kiosk, list[Response], list[Anchor]]],
           profile: cProfile.Profile | None = None) -> dict[str, float]:
    """Register the kiosks (as `deskpulse devices add` would), then store every sync."""
    for k in kiosks:
        store.describe_device(k.device_id, location=k.location, time_zone=k.zone,
                              create=True, now=START)
    wall = cpu = 0.0
    stored = calls = 0
    server_start = server_cpu_s(store)
    for kiosk, responses, anchors in syncs:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        if profile is not None:
            profile.enable()
        new, _ = store.store_batch(kiosk.device_id, responses, anchors, STATUS, "wifi")
        if profile is not None:
            profile.disable()
        wall += time.perf_counter() - wall0
        cpu += time.process_time() - cpu0
        stored += new
        calls += 1
    figures = {"responses": stored, "calls": calls, "wall_s": wall, "cpu_s": cpu,
               "per_s": stored / wall, "cpu_per_s": stored / cpu}
    server_end = server_cpu_s(store)
    if server_start is not None and server_end is not None:
        figures["server_cpu_s"] = server_end - server_start
    return figures


def server_cpu_s(store: Store) -> float | None:
    """CPU seconds used so far by the PostgreSQL backend serving `store`, read from /proc
    where the server runs on this machine (bench_pg.py's throwaway cluster): the server's
    share of store_batch, which this process's CPU time leaves out. None on SQLite, or
    where it cannot be read."""
    conn = getattr(store, "connection", None)
    if conn is None or isinstance(conn, sqlite3.Connection):
        return None
    (pid,) = conn.execute("SELECT pg_backend_pid()").fetchone()
    try:
        after_name = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(after_name[11]) + int(after_name[12])) / os.sysconf("SC_CLK_TCK")


def schema_insert_rate(total: int, devices: int, seed: int, path: Path
                       ) -> tuple[float, float]:
    """The same rows into the SQLite store's own responses table and nothing else (its
    indexes and checks; foreign keys off as inside store_batch), a commit per batch.
    Responses per second of wall-clock time, and of CPU time."""
    store = open_store(path)
    conn: sqlite3.Connection = store.connection  # type: ignore[attr-defined]
    conn.execute("PRAGMA foreign_keys = OFF")
    # The first 15 columns; the interval columns start NULL (as store_batch leaves them).
    names = [d[0] for d in conn.execute("SELECT * FROM responses LIMIT 0").description][:15]
    insert = f"INSERT INTO responses ({', '.join(names)}) VALUES ({', '.join('?' * 15)})"

    def write(device_id: str, responses: list[Response], sync_id: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, bare_rows(device_id, responses, sync_id))
        conn.execute("COMMIT")

    try:
        return batch_rate(total, devices, seed, write)
    finally:
        store.close()


def postgres_bare_rate(total: int, devices: int, seed: int, url: str
                       ) -> tuple[float, float]:
    """The floor on PostgreSQL: the same rows into a scratch table with only the key,
    `executemany` and a commit per batch; the table is dropped afterwards. Responses per
    second of wall-clock time, and of this process's CPU time (the server's is not in it)."""
    import psycopg  # type: ignore[import-not-found]  # only for a postgresql:// --db

    insert = f"INSERT INTO bench_bare VALUES ({', '.join(['%s'] * 15)})"
    with psycopg.connect(url) as conn:
        conn.execute(BARE_TABLE.replace("CREATE TABLE responses", "CREATE TABLE bench_bare")
                     .replace(" WITHOUT ROWID", ""))
        conn.commit()

        def write(device_id: str, responses: list[Response], sync_id: int) -> None:
            with conn.cursor() as cur:
                cur.executemany(insert, bare_rows(device_id, responses, sync_id))
            conn.commit()

        try:
            return batch_rate(total, devices, seed, write)
        finally:
            conn.execute("DROP TABLE bench_bare")
            conn.commit()


def insert_by_executemany(conn: sqlite3.Connection, head: str, rows: Sequence[Any],
                          width: int, tail: str = "") -> int:
    """bulk.insert_rows's job done as store_batch did it before: a statement per row."""
    cur = conn.executemany(f"{head} VALUES ({', '.join('?' * width)}) {tail}", rows)
    return max(cur.rowcount, 0)


def interleaved(total: int, devices: int, seed: int, scratch: Path) -> dict[str, float]:
    """Responses per CPU second of store_batch with each way of inserting the responses,
    taking turns sync by sync on two new SQLite stores fed the same syncs."""
    from deskpulse.store.sqlite import bulk

    ways: dict[str, Callable[..., int]] = {
        "multi-row VALUES": bulk.insert_rows, "executemany": insert_by_executemany}
    stores: dict[str, Store] = {}
    feeds = []
    cpu = dict.fromkeys(ways, 0.0)
    stored = dict.fromkeys(ways, 0)
    try:
        for way in ways:
            stores[way] = open_store(scratch / f"interleaved-{len(stores)}.db")
            kiosks, syncs = synthetic_syncs(total, devices, seed)
            for k in kiosks:
                stores[way].describe_device(k.device_id, location=k.location,
                                            time_zone=k.zone, create=True, now=START)
            feeds.append(syncs)
        for number, turn in enumerate(zip(*feeds, strict=True)):
            # Each way goes first in every other turn: the second of a turn measured
            # faster by itself (its batch was generated last, still in the CPU's caches).
            order = list(zip(ways.items(), turn, strict=True))
            for (way, insert), (kiosk, responses, anchors) in (
                    order if number % 2 else order[::-1]):
                bulk.insert_rows = insert  # type: ignore[assignment]
                start = time.process_time()
                new, _ = stores[way].store_batch(kiosk.device_id, responses, anchors,
                                                 STATUS, "wifi")
                cpu[way] += time.process_time() - start
                stored[way] += new
    finally:
        bulk.insert_rows = ways["multi-row VALUES"]  # type: ignore[assignment]
        for store in stores.values():
            store.close()
    if len(set(stored.values())) != 1:
        raise SystemExit(f"the two ways stored different counts: {stored}")
    return {way: stored[way] / cpu[way] for way in ways}


# The phases of store_batch, as (label, module path suffix, function, caller); a caller
# narrows a function called from several places to the calls from that one. Both engines
# name their modules and functions alike (store/<engine>/ingest.py, rollup_tables.py);
# the lines marked SQLite exist only there.
PHASES = (
    ("store_batch, all of it", "/ingest.py", "store_batch", None),
    ("  BEGIN and COMMIT (SQLite)", "sqlite/schema.py", "transaction", None),
    ("  INSERT of responses, anchors (SQLite)", "~",
     "<method 'executemany' of 'sqlite3.Connection' objects>", "_store"),
    ("  building the rows (Python)", "/ingest.py", "<listcomp>", "_store"),
    ("  duplicate check (stored namesakes)", "/ingest.py", "_stored_namesakes", None),
    ("  placement by new anchors", "/ingest.py", "_place", None),
    ("  intervals of unplaced responses", "/ingest.py", "_bound_unplaced", None),
    ("  the batch's changes as arrays", "store/rollups.py", "from_columns", None),
    ("  rollups, all of it", "/rollup_tables.py", "apply", None),
    ("    deltas (numpy)", "store/rollups.py", "deltas", None),
    ("      of which local time", "deskpulse/timezones.py", "local", None),
    ("    reading and writing rollup rows", "/rollup_tables.py", "_apply_table", None),
)


def phase_times(profile: cProfile.Profile) -> list[tuple[str, float]]:
    """Cumulative CPU seconds of each phase found in the profile."""
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out = []
    for label, module, name, caller in PHASES:
        total = 0.0
        for (filename, _, function), (_, _, _, cumulative, callers) in stats.items():
            if function != name or not filename.endswith(module):
                continue
            if caller is None:
                total += cumulative
            else:
                total += sum(c[3] for (_, _, f), c in callers.items() if f == caller)
        if total:
            out.append((label, total))
    return out


# What `--timers` wraps with a CPU timer: (label, module of deskpulse.store.<engine>,
# function). The sync's functions look these up in their module when they call them, so
# replacing the module's attribute times every call.
TIMED = (
    ("_store: the sync inside its transaction", "ingest", "_store"),
    ("  duplicate check (stored namesakes)", "ingest", "_stored_namesakes"),
    ("  placement by new anchors", "ingest", "_place"),
    ("  intervals of unplaced responses", "ingest", "_bound_unplaced"),
    ("  the boots' spans (boots table)", "ingest", "widen_boots"),
    ("  the device's zone (rollups)", "rollup_tables", "ensure_zone"),
    ("  rollups, all of it", "rollup_tables", "apply"),
    ("    deltas (numpy)", "rollup_tables", "deltas"),
    ("    reading and writing rollup rows", "rollup_tables", "_apply_table"),
)

ARRAYS = "  the batch's changes as arrays"


@contextlib.contextmanager
def phase_timers(engine: str) -> Iterator[dict[str, float]]:
    """CPU seconds spent in each of TIMED's functions (and in building the changes'
    arrays) while the block runs; a timer costs about a microsecond per call, not per
    response, so the figures add up to the unprofiled total."""
    from deskpulse.store import rollups

    totals: dict[str, float] = {}

    def timed(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                totals[label] = totals.get(label, 0.0) + time.process_time() - start
        return run

    undo: list[tuple[Any, str, Any]] = []
    for label, module_name, name in TIMED:
        module = importlib.import_module(f"deskpulse.store.{engine}.{module_name}")
        if hasattr(module, name):
            undo.append((module, name, getattr(module, name)))
            setattr(module, name, timed(label, getattr(module, name)))
    from_columns = rollups.Changes.__dict__["from_columns"]
    undo.append((rollups.Changes, "from_columns", from_columns))
    rollups.Changes.from_columns = classmethod(  # type: ignore[method-assign]
        timed(ARRAYS, from_columns.__func__))
    try:
        yield totals
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def top_functions(profile: cProfile.Profile, count: int = 12) -> list[tuple[str, float]]:
    """The deskpulse functions with the most own CPU time (any engine)."""
    stats: dict[Any, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    rows = [(f"{Path(filename).name}:{function}" if filename != "~" else function, own)
            for (filename, _, function), (_, _, own, _, _) in stats.items()
            if "deskpulse" in filename or filename == "~"]
    return sorted(rows, key=lambda row: -row[1])[:count]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="a new store: a file path, or a URL such as "
                                     "postgresql://... (default: a temporary SQLite file)")
    parser.add_argument("--profile", action="store_true",
                        help="run the ingest under cProfile and print CPU time per phase")
    parser.add_argument("--timers", action="store_true",
                        help="time the phases of store_batch with CPU timers (cheap)")
    parser.add_argument("--interleaved", action="store_true",
                        help="SQLite: store_batch with multi-row VALUES against executemany, "
                             "sync by sync in turns")
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    # CPU time, not cProfile's default wall clock: waits for the disk and for the other
    # jobs on this shared machine would otherwise count in whichever phase they hit.
    profile = cProfile.Profile(time.process_time) if args.profile else None
    figures: dict[str, Any] = {"devices": args.devices}
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as scratch:
        target: str | Path = args.db or Path(scratch) / "ingest.db"
        if not is_url(str(target)) and Path(target).exists():
            raise SystemExit(f"{target} exists: give a new file")
        store = open_store(target)
        kiosks, syncs = synthetic_syncs(args.responses, args.devices, args.seed)
        engine = "postgres" if is_url(str(target)) else "sqlite"
        timers = phase_timers(engine) if args.timers else contextlib.nullcontext({})
        try:
            with timers as spent:
                figures["ingest"] = ingest(store, kiosks, syncs, profile)
        finally:
            store.close()
        if is_url(str(target)):
            figures["engine"] = str(target).split(":", 1)[0]
            figures["floor_per_s"], figures["floor_cpu_per_s"] = postgres_bare_rate(
                args.responses, args.devices, args.seed, str(target))
        else:
            figures["engine"] = f"SQLite {sqlite3.sqlite_version}"
            figures["floor_per_s"], figures["floor_cpu_per_s"] = bare_insert_rate(
                args.responses, args.devices, args.seed, Path(scratch) / "bare.db")
            figures["schema_insert_per_s"], figures["schema_insert_cpu_per_s"] = (
                schema_insert_rate(
                args.responses, args.devices, args.seed, Path(scratch) / "schema.db"))
            if args.interleaved:
                figures["interleaved_cpu_per_s"] = interleaved(
                    args.responses, args.devices, args.seed, Path(scratch))
    n = figures["ingest"]["responses"]
    if args.timers:
        order = [label for label, _, _ in TIMED]
        order.insert(order.index("  rollups, all of it"), ARRAYS)
        figures["timers_us"] = {label: spent[label] / n * 1e6 for label in order
                                if label in spent}
        inside = [us for label, us in figures["timers_us"].items()
                  if label.startswith("  ") and not label.startswith("    ")]
        figures["timers_us"]["  the rest: INSERTs, rows in Python"] = (
            figures["timers_us"].get(TIMED[0][0], 0.0) - sum(inside))
        figures["timers_us"]["outside _store (BEGIN, COMMIT, ...)"] = (
            figures["ingest"]["cpu_s"] - spent.get(TIMED[0][0], 0.0)) / n * 1e6
    if profile is not None:
        figures["phases_us"] = {label: seconds / n * 1e6
                                for label, seconds in phase_times(profile)}
        figures["top_functions_us"] = {name: seconds / n * 1e6
                                       for name, seconds in top_functions(profile)}
    figures["ratio_to_floor"] = figures["ingest"]["per_s"] / figures["floor_per_s"]
    figures["cpu_ratio_to_floor"] = figures["ingest"]["cpu_per_s"] / figures["floor_cpu_per_s"]
    figures["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                          f"{platform.python_version()}, {figures['engine']}")
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    f, i = figures, figures["ingest"]
    print(f"{n:,} responses from {f['devices']} kiosks in {i['calls']:,} store_batch calls "
          f"({f['machine']}{', profiled' if profile else ''})")
    print(f"{'':21} {'responses/s':>11} {'of CPU time':>12}   ingest / it (wall, CPU)")
    print(f"ingest, store_batch:  {i['per_s']:>11,.0f} {i['cpu_per_s']:>12,.0f}   "
          f"({i['wall_s']:.1f} s)")
    if "server_cpu_s" in i:
        print(f"  with the server backend's CPU: {n / (i['cpu_s'] + i['server_cpu_s']):,.0f} "
              f"responses per CPU second ({i['server_cpu_s'] / n * 1e6:.2f} µs of the "
              f"server's per response)")
    if "schema_insert_per_s" in f:
        print(f"schema insert alone:  {f['schema_insert_per_s']:>11,.0f} "
              f"{f['schema_insert_cpu_per_s']:>12,.0f}   "
              f"{i['per_s'] / f['schema_insert_per_s']:.2f}, "
              f"{i['cpu_per_s'] / f['schema_insert_cpu_per_s']:.2f}")
    print(f"floor, bare inserts:  {f['floor_per_s']:>11,.0f} {f['floor_cpu_per_s']:>12,.0f}   "
          f"{f['ratio_to_floor']:.2f}, {f['cpu_ratio_to_floor']:.2f}")
    if "interleaved_cpu_per_s" in f:
        rates = f["interleaved_cpu_per_s"]
        print("store_batch, two stores in turns, responses per CPU second:")
        for way, rate in rates.items():
            print(f"  {way:<20} {rate:>9,.0f}   x{rate / rates['executemany']:.3f}")
    if args.timers:
        print(f"CPU time per response, by phase (timers; store_batch "
              f"{i['cpu_s'] / n * 1e6:.2f} µs):")
        for label, us in f["timers_us"].items():
            print(f"  {label:<40} {us:6.2f} µs")
    if profile is not None:
        print("CPU time per response, by phase (cProfile, cumulative):")
        for label, us in f["phases_us"].items():
            print(f"  {label:<40} {us:6.2f} µs")
        print("functions with the most own time:")
        for name, us in f["top_functions_us"].items():
            print(f"  {name:<60} {us:6.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
