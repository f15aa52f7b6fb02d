"""Benchmark the server's writer alone: the store work of signed pushes (server/push.py
`store_push`, as the writer process runs it) in group commits of --group jobs, each in
its own part, in this one process; no HTTP, no pickling, no other process's CPU.

Run from the repository root:

    .venv/bin/python tools/bench_writer.py [--db postgresql|sqlite] [--group 8] [--stats]

Prints the CPU per batch of this process (the writer's share of tools/bench_serve.py)
and, on PostgreSQL, of the database server's processes; the same batches stored on
SQLite in the same run are the anchor. With --stats the PostgreSQL cluster loads
pg_stat_statements and the time the server spent in each statement is listed per batch:
where the database's share goes. Compare code before and after a change by running it
with PYTHONPATH=<the other tree>/host.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench_serve import STATUS, WALL_BASE, _cpu_seconds, _process_tree, register_kiosks

from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor
from deskpulse.protocol.signing import Nonce
from deskpulse.server.push import response_rows, store_push
from deskpulse.store import open_store

_STATS = ("shared_preload_libraries=pg_stat_statements",)


def jobs_for(db: str | Path, folder: Path, devices: int, batches: int) -> list[tuple[Any, ...]]:
    """store_push's arguments for `batches` 50-response pushes of `devices` kiosks."""
    kiosks = register_kiosks(db, devices, folder)
    jobs = []
    for n in range(batches):
        kiosk = kiosks[n % len(kiosks)]
        responses, _ = kiosk.next_batch(50)
        kiosk.count += 1
        last = responses[-1]
        anchors = [Anchor(kiosk.boot, 12, WALL_BASE + 12, 2),
                   Anchor(kiosk.boot, last.uptime_s + 1, int(time.time()), RECEIPT_SOURCE)]
        jobs.append((kiosk.device_id, kiosk.key, Nonce(kiosk.boot, kiosk.count), STATUS,
                     anchors, response_rows(responses)))
    return jobs


def run(db: str | Path, folder: Path, devices: int, batches: int, group: int,
        database_pid: int | None, stats: bool) -> dict[str, Any]:
    jobs = jobs_for(db, folder, devices, batches)
    warm = min(devices, len(jobs) // 2)  # each kiosk's first push (anchor, rollups)
    store = open_store(db)

    def store_all(part: list[tuple[Any, ...]]) -> None:
        for first in range(0, len(part), group):
            with store.group_commit():
                for job in part[first:first + group]:
                    with store.part():
                        store_push(store, *job)

    try:
        store_all(jobs[:warm])
        if stats:
            store.connection.execute(  # type: ignore[attr-defined]
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            store.connection.execute("SELECT pg_stat_statements_reset()")  # type: ignore[attr-defined]
        server = _process_tree(database_pid) if database_pid is not None else []
        cpu, server_cpu = time.process_time(), sum(map(_cpu_seconds, server))
        start = time.perf_counter()
        store_all(jobs[warm:])
        elapsed = time.perf_counter() - start
        timed = len(jobs) - warm
        out: dict[str, Any] = {
            "batches": timed,
            "writer_cpu_ms": 1000 * (time.process_time() - cpu) / timed,
            "database_cpu_ms": 1000 * (sum(map(_cpu_seconds, server)) - server_cpu) / timed,
            "wall_ms": 1000 * elapsed / timed,
        }
        if stats:
            out["statements"] = [
                (calls, 1000 * total / timed, text) for calls, total, text in
                store.connection.execute(  # type: ignore[attr-defined]
                    """SELECT calls, total_exec_time + total_plan_time,
                              left(regexp_replace(query, '\\s+', ' ', 'g'), 90)
                       FROM pg_stat_statements WHERE calls >= %s
                       ORDER BY 2 DESC LIMIT 12""", (timed // 20,))]
        return out
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--group", type=int, default=8, help="pushes per group commit")
    parser.add_argument("--stats", action="store_true",
                        help="PostgreSQL: the server's time per statement")
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-writer-") as tmp:
        folder = Path(tmp)
        if args.db == "postgresql":
            from bench_pg import durable_cluster

            cluster = durable_cluster()
            if args.stats:
                cluster.settings += _STATS
            with cluster:
                postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
                (folder / "postgresql").mkdir()
                results["postgresql"] = run(cluster.new_database(), folder / "postgresql",
                                            args.devices,
                                            args.batches, args.group, postmaster, args.stats)
        (folder / "sqlite").mkdir()
        results["sqlite"] = run(folder / "sqlite" / "anchor.db", folder / "sqlite",
                                args.devices, args.batches, args.group, None, False)
    timed = args.batches - min(args.devices, args.batches // 2)
    print(f"{timed} pushes of 50 responses from {args.devices} kiosks, {args.group} per "
          "group commit (each kiosk's first push not timed)")
    for engine, r in results.items():
        print(f"{engine}: writer CPU {r['writer_cpu_ms']:.3f} ms per push, database server "
              f"{r['database_cpu_ms']:.3f}, wall {r['wall_ms']:.3f}")
    if "postgresql" in results:
        pg, lite = results["postgresql"], results["sqlite"]
        print(f"PostgreSQL / SQLite, writer CPU: {pg['writer_cpu_ms'] / lite['writer_cpu_ms']:.2f}"
              f"; with the database server's: "
              f"{(pg['writer_cpu_ms'] + pg['database_cpu_ms']) / lite['writer_cpu_ms']:.2f}")
        for calls, us, text in pg.get("statements", []):
            print(f"  {us:7.1f} µs per push  {calls:6d} calls  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
