"""What the engines do for the alerts' read of many kiosks (Store.negative_marks with
`device_ids`): each kiosk's time range from the (device_id, wall) index, in the order the
alert windows need, never a scan of every response nor a sort of all the rows read."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from deskpulse.protocol.batch import Response
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.postgres import PostgresStore
from deskpulse.store.postgres import queries as postgres_queries

START = 1_780_000_000
KIOSKS = [f"kiosk-{k}" for k in range(6)]


def fill(store: Store) -> None:
    """Six kiosks, each with a response every 10 minutes for two days (a month edge on
    PostgreSQL is not needed: every partition is read the same way)."""
    for device_id in KIOSKS:
        store.store_batch(device_id, [
            Response(seq=i + 1, rating=1 + i % 5, scale=5, told_next="yes", latency_s=1.0,
                     rapid=False, closed=False, boot=1, uptime_s=i + 1,
                     wall=START + 600 * i, config_version=1)
            for i in range(288)], [], {}, "serial")


def sqlite_plan(tmp_path: Path, since: int | None, until: int | None) -> list[str]:
    """The plan of the one statement the read of four kiosks runs."""
    store = open_store(tmp_path / "deskpulse.db")
    fill(store)
    conn: sqlite3.Connection = store.connection  # type: ignore[attr-defined]
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    marks = list(store.negative_marks(since=since, until=until, device_id=None, location=None,
                                      include_flagged=False, negative_ratings=(1, 2),
                                      device_ids=KIOSKS[1:5]))
    conn.set_trace_callback(None)
    assert {m[0] for m in marks} == set(KIOSKS[1:5])
    (statement,) = [s for s in statements if "FROM responses" in s]
    plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {statement}")]
    store.close()
    return plan


def test_on_sqlite_each_kiosk_is_a_range_of_the_device_wall_index(tmp_path: Path) -> None:
    # Without bounds, `wall IS NOT NULL` is the range (NULL sorts first).
    for since, until, probe in ((START + 3600, START + 7200, "wall>? AND wall<?"),
                                (START + 3600, None, "wall>?"), (None, None, "wall>?")):
        plan = sqlite_plan(tmp_path / f"{since}-{until}", since, until)
        responses = [step for step in plan if step.split()[1] == "r"]
        assert responses == [
            f"SEARCH r USING INDEX responses_by_device_wall (device_id=? AND {probe})"], plan
        assert not any("TEMP B-TREE" in step for step in plan), plan


def test_on_postgresql_each_partition_is_an_index_scan_of_the_kiosks(pg_url: str) -> None:
    with open_store(pg_url) as store:
        assert isinstance(store, PostgresStore)
        fill(store)
        store.connection.execute("ANALYZE")
        statement, params = postgres_queries.negative_marks(
            START + 3600, START + 7200, None, None, False, (1, 2), KIOSKS[1:5])
        # The tables are small enough for a scan to be cheaper: forbid it, so that the plan
        # shows whether the index can serve the read at all (as it does at any size).
        store.connection.execute("SET enable_seqscan = off")
        store.connection.execute("SET enable_bitmapscan = off")
        plan = [line for (line,) in store.connection.execute(
            f"EXPLAIN (COSTS OFF) {statement}", params)]  # type: ignore[arg-type]
    nodes = [line.strip().removeprefix("->").strip() for line in plan]
    scans = [n for n in nodes if re.match(r"(Index|Index Only|Seq) Scan", n)]
    assert scans and all(n.startswith("Index Scan using responses_") for n in scans), plan
    conditions = [n for n in nodes if n.startswith("Index Cond:")]
    assert len(conditions) == len(scans), plan
    assert all("device_id = ANY" in c and "wall >=" in c and "wall <" in c
               for c in conditions), plan
    # Only rows of one (kiosk, second) are sorted by seq: the index gives the rest in order.
    assert "Sort" not in nodes, plan
    assert any(n.startswith("Presorted Key: r.device_id, r.wall") for n in nodes), plan
