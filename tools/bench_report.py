"""Benchmark ingest and `deskpulse report` on a large synthetic database.

Run from the repository root:
    .venv/bin/python tools/bench_report.py [--responses N] [--devices D] [--json]

N synthetic responses (default 1,000,000; the recorded figures use 10,000,000) from D
kiosks (default 500) over two years are stored through `db.store_batch`, the function
`deskpulse sync` and the WiFi server call, in batches of 1000-4000 responses per call with
a FULL-sync commit each. Every batch brings the anchor of its sync (the host sets the
clock), which usually agrees with the boot's previous one; now and then a kiosk boots with
its clock a year ahead or three days behind, stamps its responses so until the next sync
corrects it, and the host moves them (docs/time.md). Then the report over the whole range
is computed two ways:

- **rollups**: `report.build_report`, from the rollup rows kept at ingest;
- **raw scan (anchor)**: `report.build_report_raw`, one GROUP BY over the responses with
  each instant placed in its device's zone by zoneinfo; and, as a floor for any raw
  design, the bare SQL GROUP BY of the counts without any local time.

Both reports must be identical; the script checks it. Only the time spent inside
store_batch counts as ingest (generating the synthetic responses does not).

With `--db postgresql://...` (an empty database) the same runs on PostgreSQL, beside a bare
COPY floor on that server (tools/bench_pg.py, which can also start a throwaway cluster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import bench_pg

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports import figures as report
from deskpulse.store import open_store

START = 1_730_419_200  # 2024-11-01T00:00Z
DAYS = 730
ZONES = ("Europe/Berlin", "Europe/London", "America/New_York", "America/Chicago",
         "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney", "Asia/Kolkata", None)
ZONE_HOURS = {"Europe/Berlin": 1, "Europe/London": 0, "America/New_York": -5,
              "America/Chicago": -6, "America/Los_Angeles": -8, "Asia/Tokyo": 9,
              "Australia/Sydney": 10, "Asia/Kolkata": 5, None: 0}
OPEN, CLOSE = 8, 18  # local opening hours of the synthetic desks (standard time)


class Kiosk:
    """One synthetic kiosk: customers during opening hours, an occasional reboot whose
    first few responses wait for a time anchor (a tenth of those never get one)."""

    def __init__(self, index: int, total: int, rng: random.Random) -> None:
        self.device_id = f"kiosk-{index:04d}"
        self.zone = ZONES[index % len(ZONES)]
        self.location = f"store-{index // 10:02d}"
        self.left = total
        self.rng = rng
        self.scale = rng.choice((3, 4, 5, 5))
        self.mood = rng.uniform(0.3, 0.9)  # how happy this desk's customers are
        self.told_share = rng.uniform(0.4, 0.9)
        self.seq = 0
        self.boot = 1
        self.uptime = 0
        self.wall = START + rng.randrange(3600)
        self.blind = 0
        self.anchored = True
        self.skew = 0  # how wrong the device's clock is, until a sync sets it
        self.mean_gap = DAYS * (CLOSE - OPEN) * 3600 / total

    def batch(self, size: int) -> tuple[list[Response], list[Anchor]]:
        rng, out, anchors = self.rng, [], []
        shift = ZONE_HOURS[self.zone] * 3600
        for _ in range(min(size, self.left)):
            step = int(rng.expovariate(1 / self.mean_gap)) + 1
            self.wall += step
            self.uptime += step
            hour = (self.wall + shift) % 86400 // 3600
            if not OPEN <= hour < CLOSE:  # closed: jump to the next opening
                jump = ((OPEN - hour) % 24) * 3600
                self.wall += jump
                self.uptime += jump
            if self.blind:
                self.blind -= 1
                if not self.blind and self.anchored:
                    anchors.append(Anchor(self.boot, self.uptime, self.wall, 1))
            elif rng.random() < 0.002:
                self.boot += 1
                self.uptime = rng.randrange(10, 100)
                if rng.random() < 0.3:
                    self.blind = rng.randint(1, 30)
                    self.anchored = rng.random() < 0.9
                elif rng.random() < 0.05:  # a PC with a wrong date set the clock
                    self.skew = rng.choice((365 * 86400, -3 * 86400))
            self.seq += 1
            happy = rng.random() < self.mood
            rating = (rng.randint((self.scale + 1) // 2 + 1, self.scale) if happy
                      else rng.randint(1, (self.scale + 1) // 2))
            told = rng.random()
            out.append(Response(
                seq=self.seq, rating=rating, scale=self.scale,
                told_next="no_answer" if told > 0.9 else
                ("yes" if told < 0.9 * self.told_share else "no"),
                latency_s=rng.randrange(5, 120) / 10, rapid=rng.random() < 0.03,
                closed=rng.random() < 0.02, boot=self.boot, uptime_s=self.uptime,
                wall=None if self.blind else self.wall + self.skew, config_version=1))
        self.left -= len(out)
        if self.anchored:  # the sync sets the clock: its anchor comes with the batch
            anchors.append(Anchor(self.boot, self.uptime, self.wall, 1))
            self.skew = 0
        return out, anchors


def synthetic_syncs(total: int, devices: int, seed: int
                    ) -> tuple[list[Kiosk], Iterator[tuple[Kiosk, list[Response], list[Anchor]]]]:
    """Kiosks, and their syncs in rounds (every kiosk sends its next 1000-4000 responses
    per round), so that time advances across the whole fleet as in real life."""
    rng = random.Random(seed)
    kiosks = [Kiosk(i, total // devices + (i < total % devices), rng) for i in range(devices)]

    def syncs() -> Iterator[tuple[Kiosk, list[Response], list[Anchor]]]:
        while any(k.left for k in kiosks):
            for k in kiosks:
                if k.left:
                    yield (k, *k.batch(rng.randint(1000, 4000)))

    return kiosks, syncs()


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


BARE_TABLE = """CREATE TABLE responses (
    device_id TEXT, seq INTEGER, rating INTEGER, scale INTEGER, told_next TEXT,
    latency_ds INTEGER, rapid INTEGER, closed INTEGER, boot INTEGER, uptime_s INTEGER,
    device_wall INTEGER, wall INTEGER, time_source TEXT, config_version INTEGER,
    sync_id INTEGER, PRIMARY KEY (device_id, seq)) WITHOUT ROWID"""


def bare_rows(device_id: str, responses: Sequence[Response], sync_id: int
              ) -> list[tuple[Any, ...]]:
    """The first 15 columns of the responses table, bound as store_batch binds them."""
    return [(device_id, r.seq, r.rating, r.scale, r.told_next, round(r.latency_s * 10),
             int(r.rapid), int(r.closed), r.boot, r.uptime_s, r.wall, r.wall,
             None if r.wall is None else "device", r.config_version, sync_id)
            for r in responses]


def batch_rate(total: int, devices: int, seed: int,
               write: Callable[[str, list[Response], int], None]) -> tuple[float, float]:
    """Responses per second of wall-clock time, and of CPU time, of `write(device_id,
    responses, sync_id)` (one transaction) for every sync of the synthetic kiosks."""
    _, syncs = synthetic_syncs(total, devices, seed)
    spent = cpu = 0.0
    stored = 0
    for sync_id, (kiosk, responses, _) in enumerate(syncs):
        start, cpu_start = time.perf_counter(), time.process_time()
        write(kiosk.device_id, responses, sync_id)
        spent += time.perf_counter() - start
        cpu += time.process_time() - cpu_start
        stored += len(responses)
    return stored / spent, stored / cpu


def bare_insert_rate(total: int, devices: int, seed: int, path: Path) -> tuple[float, float]:
    """The floor under store_batch: the same batches as plain rows into a table with only
    its key (no index, check, foreign key, rollup or duplicate test), one FULL commit per
    batch as store_batch does."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA cache_size = -65536")
    conn.execute(BARE_TABLE)

    def write(device_id: str, responses: list[Response], sync_id: int) -> None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(
            "INSERT INTO responses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            bare_rows(device_id, responses, sync_id))
        conn.execute("COMMIT")

    try:
        return batch_rate(total, devices, seed, write)
    finally:
        conn.close()


def ingest(conn: Any, total: int, devices: int, seed: int) -> tuple[int, int, float, float]:
    """Store the synthetic kiosks' syncs through `store_batch`: (stored, calls, wall
    seconds, CPU seconds) spent inside it. tools/bench_report_cli.py builds its cached
    databases with it too."""
    kiosks, syncs = synthetic_syncs(total, devices, seed)
    for k in kiosks:  # as `deskpulse devices add` would, before any sync
        conn.describe_device(k.device_id, location=k.location, time_zone=k.zone,
                             create=True, now=START)
    status = {"board": "esp32-devkitc-ssd1680", "firmware": "bench"}
    ingest_wall = ingest_cpu = 0.0
    stored = calls = 0
    for kiosk, responses, anchors in syncs:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        new, _ = conn.store_batch(kiosk.device_id, responses, anchors, status, "wifi")
        ingest_wall += time.perf_counter() - wall0
        ingest_cpu += time.process_time() - cpu0
        stored += new
        calls += 1
    return stored, calls, ingest_wall, ingest_cpu


def run(total: int, devices: int, seed: int, path: Path | str) -> dict[str, Any]:
    conn = open_store(path)
    stored, calls, ingest_wall, ingest_cpu = ingest(conn, total, devices, seed)
    sizes = {table: conn.connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
             for table in ("responses", "rollup_days", "rollup_months")}
    if isinstance(path, Path):
        conn.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    figures: dict[str, Any] = {
        "responses": stored, "devices": devices, "store_batch_calls": calls,
        "ingest_s": ingest_wall, "ingest_cpu_s": ingest_cpu,
        "ingest_per_s": stored / ingest_wall, "ingest_cpu_per_s": stored / ingest_cpu,
        "db_bytes": path.stat().st_size if isinstance(path, Path)
        else bench_pg.database_bytes(conn.connection), "rows": sizes,
    }
    fast, first = timed(report.build_report, conn)
    repeats = [timed(report.build_report, conn)[1] for _ in range(3)]
    figures["report_rollups_first_s"] = first
    figures["report_rollups_s"] = min(repeats)
    month, figures["report_one_month_s"] = timed(
        report.build_report, conn, since="2025-06-01", until="2025-07-01")
    _, figures["report_odd_range_s"] = timed(
        report.build_report, conn, since="2025-02-03T10:17", until="2026-01-09T15:45")
    sel = report.select(conn)
    _, figures["report_clock_corrected_s"] = timed(
        report.add_clock_corrected, conn, sel, report.Tally(sel.kinds))
    figures["clock_corrected"] = fast["clock_corrected"]["responses"]
    figures["clock_corrected_devices"] = len(fast["clock_corrected"]["devices"])
    slow, figures["report_raw_s"] = timed(report.build_report_raw, conn)
    figures["reports_identical"] = (json.dumps(fast, sort_keys=True)
                                    == json.dumps(slow, sort_keys=True))
    odd_raw = report.build_report_raw(conn, since="2025-02-03T10:17", until="2026-01-09T15:45")
    odd = report.build_report(conn, since="2025-02-03T10:17", until="2026-01-09T15:45")
    figures["odd_range_identical"] = (json.dumps(odd, sort_keys=True)
                                      == json.dumps(odd_raw, sort_keys=True))
    _, figures["sql_group_by_s"] = timed(lambda: conn.connection.execute(
        """SELECT device_id, scale, rating, told_next, rapid, closed, count(*)
           FROM responses GROUP BY device_id, scale, rating, told_next, rapid, closed"""
    ).fetchall())
    figures["report_speedup_vs_raw"] = figures["report_raw_s"] / figures["report_rollups_s"]
    figures["report_speedup_vs_sql_group_by"] = (figures["sql_group_by_s"]
                                                 / figures["report_rollups_s"])
    figures["month_responses"] = month["responses"]
    figures["whole_range_responses"] = fast["responses"]
    conn.close()
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=1_000_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", help="keep the database here (default: a temporary file), "
                        "or an empty PostgreSQL database: postgresql://...")
    parser.add_argument("--floor-sample", type=int, default=1_000_000,
                        help="responses for the bare-insert floor (the same density of "
                             "responses per kiosk as the main run)")
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    url = args.db if args.db and args.db.startswith(("postgresql://", "postgres://")) else None
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-") as scratch:
        path = Path(args.db) if args.db else Path(scratch) / "bench.db"
        if url is None and path.exists():
            raise SystemExit(f"{path} exists: give a new file")
        figures = run(args.responses, args.devices, args.seed, url or path)
        sample = min(args.responses, args.floor_sample)
        figures["bare_insert_responses"] = sample
        floor_devices = max(1, args.devices * sample // args.responses)
        if url is not None:
            _, floor_syncs = synthetic_syncs(sample, floor_devices, args.seed)
            figures["bare_insert_per_s"] = bench_pg.bare_insert_rate(
                url, ((k.device_id, responses) for k, responses, _ in floor_syncs))
        else:
            figures["bare_insert_per_s"], figures["bare_insert_cpu_per_s"] = (
                bare_insert_rate(sample, floor_devices, args.seed, Path(scratch) / "bare.db"))
    engine = f"SQLite {sqlite3.sqlite_version}"
    if url is not None:
        with open_store(url) as store:
            engine = bench_pg.server_version(store.connection)  # type: ignore[attr-defined]
    figures["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
                          f"{platform.python_version()}, {engine}")
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    f = figures
    print(f"{f['responses']:,} responses from {f['devices']} kiosks, "
          f"{f['store_batch_calls']:,} store_batch calls ({f['machine']})")
    print(f"ingest: {f['ingest_s']:.1f} s, {f['ingest_per_s']:,.0f} responses/s "
          f"({f['ingest_cpu_per_s']:,.0f}/s of CPU time); database "
          f"{f['db_bytes'] / 2**20:,.0f} MiB; rollup rows: {f['rows']['rollup_days']:,} "
          f"days, {f['rows']['rollup_months']:,} months")
    print(f"floor: bare inserts of the same batches (no index, check or rollup): "
          f"{f['bare_insert_per_s']:,.0f} responses/s over {f['bare_insert_responses']:,}")
    print(f"whole-range report, rollups:       {f['report_rollups_s']:.3f} s "
          f"(first call {f['report_rollups_first_s']:.3f} s)")
    print(f"whole-range report, raw scan:      {f['report_raw_s']:.3f} s "
          f"({f['report_speedup_vs_raw']:,.0f}x the rollups)")
    print(f"bare SQL GROUP BY, no local time:  {f['sql_group_by_s']:.3f} s "
          f"({f['report_speedup_vs_sql_group_by']:,.0f}x the rollups)")
    print(f"one month (rollups): {f['report_one_month_s']:.3f} s; "
          f"2025-02-03T10:17..2026-01-09T15:45 (rollups + raw edges): "
          f"{f['report_odd_range_s']:.3f} s")
    print(f"clock corrected: {f['clock_corrected']:,} responses of "
          f"{f['clock_corrected_devices']} kiosks, counted in "
          f"{f['report_clock_corrected_s']:.4f} s (part of the report)")
    print(f"reports identical to the raw scan: whole range {f['reports_identical']}, "
          f"odd range {f['odd_range_identical']}")
    return 0 if f["reports_identical"] and f["odd_range_identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
