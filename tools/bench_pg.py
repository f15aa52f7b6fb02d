"""What tools/bench_report.py needs to run on PostgreSQL (`--db postgresql://...`): the
bare-insert floor with COPY, the database's size, and the server's version. Also runnable
alone to start a throwaway cluster for the benchmark:

    .venv/bin/python tools/bench_pg.py -- tools/bench_report.py --responses 1000000

starts a PostgreSQL 15 cluster (tests/pg_cluster.py, durability settings as a server's
defaults: fsync and synchronous_commit on), creates an empty database, runs the given
script with `--db URL` added, and stops the cluster.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

BARE_COLUMNS = ("device_id, seq, rating, scale, told_next, latency_ds, rapid, closed, boot, "
                "uptime_s, device_wall, wall, time_source, config_version, sync_id")


def bare_insert_rate(url: str, batches: Iterable[tuple[str, list[Any]]]) -> float:
    """The floor under store_batch on PostgreSQL: the same batches COPYed as plain rows into
    an unpartitioned table with only its key (no index, check, rollup or duplicate test),
    one commit per batch as store_batch does. Responses per second of wall-clock time."""
    import psycopg

    spent = 0.0
    stored = 0
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS bare_responses")
        conn.execute(
            """CREATE TABLE bare_responses (
                   device_id TEXT, seq BIGINT, rating SMALLINT, scale SMALLINT,
                   told_next TEXT, latency_ds INTEGER, rapid SMALLINT, closed SMALLINT,
                   boot BIGINT, uptime_s BIGINT, device_wall BIGINT, wall BIGINT,
                   time_source TEXT, config_version BIGINT, sync_id BIGINT,
                   PRIMARY KEY (device_id, seq))""")
        for sync_id, (device_id, responses) in enumerate(batches):
            rows = [(device_id, r.seq, r.rating, r.scale, r.told_next, round(r.latency_s * 10),
                     int(r.rapid), int(r.closed), r.boot, r.uptime_s, r.wall, r.wall,
                     None if r.wall is None else "device", r.config_version, sync_id)
                    for r in responses]
            start = time.perf_counter()
            with conn.transaction(), conn.cursor().copy(
                    f"COPY bare_responses ({BARE_COLUMNS}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            spent += time.perf_counter() - start
            stored += len(rows)
        conn.execute("DROP TABLE bare_responses")
    return stored / spent


def database_bytes(conn: Any) -> int:
    return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def server_version(conn: Any) -> str:
    return "PostgreSQL " + str(conn.execute("SHOW server_version").fetchone()[0]).split()[0]


def durable_cluster() -> Any:
    """A throwaway PostgreSQL 15 cluster (tests/pg_cluster.PgCluster, not started) with a
    server's durability: a benchmark measures a server as deployed, so the tests'
    shortcuts (fsync, synchronous_commit, full_page_writes off) are left out. SystemExit
    with the reason where none can be started."""
    sys.path.insert(0, str(REPO / "tests"))
    from pg_cluster import SETTINGS, PgCluster, missing_reason

    reason = missing_reason()
    if reason is not None:
        raise SystemExit(reason)
    durable = tuple(s for s in SETTINGS if not s.startswith(
        ("fsync", "synchronous_commit", "full_page_writes")))
    return PgCluster(settings=durable + ("shared_buffers=256MB", "max_wal_size=4GB"))


def main(argv: list[str]) -> int:
    script = argv[argv.index("--") + 1:] if "--" in argv else argv
    cluster = durable_cluster()
    with cluster:
        url = cluster.new_database()
        return subprocess.call([sys.executable, *script, "--db", url])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
