"""Benchmark the dashboard of `deskpulse serve` (docs/dashboard.md).

Run from the repository root:
    .venv/bin/python tools/bench_dashboard.py pages [--responses 10000000]
    .venv/bin/python tools/bench_dashboard.py live [--seconds 10] [--dashboards 200]

- **pages**: the server time of the overview page, the report page, /api/overview and
  /api/report (a chain admin, the whole range; and one store's manager's share) over a
  big database, beside `deskpulse report --format json` on the same database and
  selection (the command a manager would otherwise run). The database is the synthetic
  chain of tools/bench_report.py (500 kiosks over two years), placed in 50 stores of 5
  regions, built once and kept in .cache/ (building 10M responses takes minutes).
- **live**: kiosks push signed 50-response batches to a real `deskpulse serve` (the load
  generator of tools/bench_serve.py) for --seconds, first alone, then with --dashboards
  open /events streams: the push throughput of both runs, and the delay from a push's
  answer to the event on every stream.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import bench_report

from deskpulse.store import open_store

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
REGIONS = 5
CHAIN = "chain"
NOW = 1_793_199_600  # 2026-10-28T14:20Z, a Wednesday near the end of the synthetic range


def store_of(location: str) -> str:
    """The store path of a synthetic kiosk's location ("store-17")."""
    number = int(location.rsplit("-", 1)[1])
    return f"{CHAIN}/region-{number % REGIONS}/{location}"


def build_database(path: Path, total: int, devices: int, seed: int) -> dict[str, Any]:
    """The synthetic chain at `path` (made beside it, then renamed: an interrupted build
    leaves no half database behind)."""
    partial = path.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    start = time.perf_counter()
    with open_store(partial) as store:
        kiosks, syncs = bench_report.synthetic_syncs(total, devices, seed)
        store.add_site(CHAIN, "organisation")
        for region in range(REGIONS):
            store.add_site(f"{CHAIN}/region-{region}", "region")
        for k in kiosks:
            store.describe_device(k.device_id, location=k.location, time_zone=k.zone,
                                  create=True, now=bench_report.START)
            where = store_of(k.location)
            if where not in {s.path for s in store.sites()}:
                store.add_site(where, "store")
            store.assign_kiosk(k.device_id, where)
        status = {"board": "esp32-devkitc-ssd1680", "firmware": "bench",
                  "log": {"stored": 100, "unacked": 10, "dropped": 0, "corrupt": 0,
                          "fs_fill": 0.05}}
        stored = 0
        for kiosk, responses, anchors in syncs:
            new, _ = store.store_batch(kiosk.device_id, responses, anchors, status, "wifi",
                                       now=NOW - 3600)
            stored += new
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    os.replace(partial, path)
    return {"responses": stored, "build_s": time.perf_counter() - start}


def cached_database(total: int, devices: int, seed: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"bench-dashboard-{total}-{devices}-{seed}.db"
    if not path.exists():
        print(f"building {path} ({total:,} responses; minutes)...", file=sys.stderr)
        built = build_database(path, total, devices, seed)
        print(f"built: {built['responses']:,} responses in {built['build_s']:.0f} s",
              file=sys.stderr)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    build = sub.add_parser("build", help="only build (or find) the cached database")
    for p in (build,):
        p.add_argument("--responses", type=int, default=1_000_000)
        p.add_argument("--devices", type=int, default=500)
        p.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if args.what == "build":
        print(cached_database(args.responses, args.devices, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
