"""Benchmark `deskpulse db copy`: a store's SQLite file moving up to PostgreSQL, and to
another SQLite file.

Run from the repository root:  .venv/bin/python tools/bench_copy.py [--responses N] [--json]

A source SQLite file of N responses (default 300,000) from --devices kiosks (default 60),
stored by `store_batch` in pushes of 50 with the kiosk's NTP anchor, is copied by
`store.copy.copy_store` (what `deskpulse db copy` runs) into:

- a new database on a throwaway PostgreSQL 15 cluster with a server's durability
  (tools/bench_pg.py), beside the **anchor**: the same responses COPYed in chunks of the
  copy's size, one commit each, into a bare table with only its key
  (`bench_pg.bare_insert_rate`), the floor of any way to move these rows there;
- a new SQLite file.

Each copy is checked: the destination's report equals the source's. Responses per second
of wall-clock time include everything the copy does (the merge checks, syncs, anchors,
the rollups rebuilt per kiosk).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import bench_pg

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports.figures import build_report
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.copy import CHUNK_ROWS, copy_store

WALL_BASE = 1_780_000_000
STATUS = {"boot": 1, "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0",
          "log": {"stored": 50, "unacked": 0, "dropped": 0, "corrupt": 0, "fs_fill": 0.01}}


def fill(store: Store, responses: int, devices: int) -> None:
    per_device = responses // devices
    for device in range(devices):
        device_id = f"store{device // 4:02d}-desk{device % 4}"
        for first in range(1, per_device + 1, 50):
            batch = [Response(seq=seq, rating=1 + (seq * 7 + device) % 5, scale=5,
                              told_next=("yes", "no", "no_answer")[seq % 3],
                              latency_s=1 + seq % 40 / 10, rapid=seq % 19 == 0,
                              closed=False, boot=1, uptime_s=300 * seq,
                              wall=WALL_BASE + 300 * seq, config_version=1)
                     for seq in range(first, min(first + 50, per_device + 1))]
            store.store_batch(device_id, batch, [Anchor(1, 10, WALL_BASE + 10, 2)], STATUS,
                              "wifi", now=WALL_BASE + 300 * first)


def timed_copy(source: Store, destination: Store) -> float:
    start = time.perf_counter()
    copy_store(source, destination)
    elapsed = time.perf_counter() - start
    if build_report(destination) != build_report(source):
        raise SystemExit("bench_copy: the copy's report differs from the source's")
    return elapsed


def bench(responses: int, devices: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-copy-") as tmp, \
            open_store(Path(tmp) / "store.db") as source:
        fill(source, responses, devices)
        stored = sum(source.response_counts().values())
        with open_store(Path(tmp) / "copy.db") as destination:
            sqlite_s = timed_copy(source, destination)
        with bench_pg.durable_cluster() as cluster:
            with open_store(cluster.new_database()) as destination:
                postgres_s = timed_copy(source, destination)
                version = bench_pg.server_version(destination.connection)  # type: ignore[attr-defined]
            rows = [(facts.device_id, [row for row in source.copy_rows(
                "responses", facts.device_id, None, 1 << 30)]) for facts in source.device_facts()]
            chunks = [(device_id, _as_responses(part[i:i + CHUNK_ROWS]))
                      for device_id, part in rows for i in range(0, len(part), CHUNK_ROWS)]
            floor = bench_pg.bare_insert_rate(cluster.new_database(), chunks)
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, {version}",
        "responses": stored, "devices": devices,
        "to_postgresql_per_s": round(stored / postgres_s),
        "bare_copy_floor_per_s": round(floor),
        "to_postgresql_over_floor": round(stored / postgres_s / floor, 3),
        "to_sqlite_per_s": round(stored / sqlite_s),
    }


def _as_responses(rows: list[tuple[Any, ...]]) -> list[Response]:
    """The copied rows as the Responses bare_insert_rate takes (the same values)."""
    return [Response(seq=r[1], rating=r[2], scale=r[3], told_next=r[4], latency_s=r[5] / 10,
                     rapid=bool(r[6]), closed=bool(r[7]), boot=r[8], uptime_s=r[9],
                     wall=r[10], config_version=r[13]) for r in rows]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--responses", type=int, default=300_000)
    parser.add_argument("--devices", type=int, default=60)
    parser.add_argument("--json", action="store_true", help="print the raw figures")
    args = parser.parse_args(argv)
    r = bench(args.responses, args.devices)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"machine: {r['machine']}\n{r['responses']:,} responses of {r['devices']} kiosks\n\n"
          "| copy | responses/s |\n|---|---:|\n"
          f"| deskpulse db copy, SQLite to PostgreSQL | {r['to_postgresql_per_s']:,} |\n"
          f"| bare COPY of the same rows in the same chunks (floor) | "
          f"{r['bare_copy_floor_per_s']:,} |\n"
          f"| deskpulse db copy, SQLite to SQLite | {r['to_sqlite_per_s']:,} |\n\n"
          f"to PostgreSQL / floor: {r['to_postgresql_over_floor']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
