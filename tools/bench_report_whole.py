"""The chain admin's whole-range report (every kiosk, no filters) on an existing database,
computed in-process by `figures.build_report`, as the report page, /api/report and
`deskpulse report --format json` compute it (issue 17): wall and CPU time, median of
--repeats after a first call. Beside it, in the same run, the anchor: every month rollup
row of the same kiosks read whole (84 MB for the 10M chain), what the report read before
issue 17's last change. Either engine (`--db FILE` or `--db postgresql://...`).

    .venv/bin/python tools/bench_report_whole.py --db .cache/bench-dashboard-10000000-500-1.db

To compare two versions of the code, run it from each checkout on its own copy of the
database (`PYTHONPATH=OTHER/host`): the newer one migrates the copy it opens.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import deskpulse
from deskpulse.reports import figures
from deskpulse.store import open_store
from deskpulse.store.base import LATEST


def _timed(fn: Callable[[], Any], repeats: int) -> dict[str, float]:
    """The first call's wall time, then the medians of `repeats` more, wall and CPU (this
    process's: the engine's work too on SQLite, the client's only on PostgreSQL)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return {"first_s": first, "wall_s": statistics.median(walls),
            "cpu_s": statistics.median(cpus)}


def measure(db: str, repeats: int) -> dict[str, Any]:
    opened = time.perf_counter()
    with open_store(db) as store:  # migrates a database from before, timed here
        open_s = time.perf_counter() - opened
        ids = [f.device_id for f in store.device_facts()]
        report = figures.build_report(store)
        return {
            "code": str(Path(deskpulse.__file__).parent),
            "open_s": open_s,
            "responses": report["responses"],
            "report": _timed(lambda: figures.build_report(store), repeats),
            "anchor: every month row read whole": _timed(
                lambda: store.month_rollups(ids, 0, LATEST), repeats),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    found = measure(args.db, args.repeats)
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({**found, "load": load}))
        return 0
    print(f"code {found['code']}; {found['responses']:,} responses counted; "
          f"open (and migrate) {found['open_s']:.3f} s; load average {load:.1f}")
    anchor = found["anchor: every month row read whole"]
    for name in ("report", "anchor: every month row read whole"):
        row = found[name]
        print(f"  {name:36s} first {row['first_s']:.3f} s  median wall {row['wall_s']:.3f} s"
              f"  CPU {row['cpu_s']:.3f} s  ({row['cpu_s'] / anchor['cpu_s']:.2f}x the "
              "anchor's CPU)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
