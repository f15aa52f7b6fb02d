"""What SQLite does for a sync: no statement of store_batch may read every response of the
kiosk (without statistics SQLite tends to pick the primary key, which makes every sync
slower as the kiosk's history grows)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.store import open_store

STATUS: dict[str, Any] = {"board": "esp32-devkitc-ssd1680", "firmware": "0.1.0"}
START = 1_780_000_000


def response(seq: int, boot: int, uptime: int, wall: int | None) -> Response:
    return Response(seq=seq, rating=4, scale=5, told_next="yes", latency_s=1.0, rapid=False,
                    closed=False, boot=boot, uptime_s=uptime, wall=wall, config_version=1)


def boot_batch(boot: int, first_seq: int, *, anchored: bool) -> tuple[list[Response],
                                                                     list[Anchor]]:
    """40 responses of one boot, an hour apart in uptime; with an anchor, or none (no
    time at all: they wait for an interval)."""
    start = START + boot * 100 * 3600
    out = [response(first_seq + i, boot, 60 + i * 3600,
                    start + 60 + i * 3600 if anchored else None) for i in range(40)]
    anchors = [Anchor(boot, 60 + 39 * 3600, start + 60 + 39 * 3600, 1)] if anchored else []
    return out, anchors


def plans_of_last_sync(tmp_path: Path) -> dict[str, list[str]]:
    """The query plan of every statement of a sync that brings responses without a time,
    a new boot's first anchor and a late first anchor of a stored boot (which moves its
    responses), after a history of boots with and without anchors."""
    store = open_store(tmp_path / "deskpulse.db")
    conn: sqlite3.Connection = store.connection  # type: ignore[attr-defined]
    seq = 1
    for boot in range(1, 8):
        responses, anchors = boot_batch(boot, seq, anchored=boot % 3 != 0)
        store.store_batch("front-1", responses, anchors, STATUS, "serial")
        seq += len(responses)
    blind, _ = boot_batch(8, seq, anchored=False)
    anchored, anchors = boot_batch(9, seq + len(blind), anchored=True)
    late = Anchor(6, 60, START + 6 * 100 * 3600 + 60, 1)  # boot 6 had none
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    store.store_batch("front-1", blind + anchored, [late, *anchors], STATUS, "serial")
    conn.set_trace_callback(None)
    plans = {}
    for sql in statements:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            plans[sql] = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}")]
    store.close()
    return plans


def test_no_statement_of_a_sync_reads_every_response_of_the_kiosk(tmp_path: Path) -> None:
    plans = plans_of_last_sync(tmp_path)
    assert any("wall IS NULL" in sql for sql in plans)  # the unplaced ones were bounded
    for sql, plan in plans.items():
        for step in plan:
            verb, table = step.split()[:2]  # "SEARCH r USING INDEX ...", "SCAN anchors"
            if table not in ("responses", "r"):
                continue  # the anchors, syncs and rollups of one kiosk are few rows
            assert verb == "SEARCH", (sql, plan)
            assert "USING PRIMARY KEY (device_id=?)" not in step, (sql, plan)


def test_a_boot_is_read_through_its_span_of_the_primary_key(tmp_path: Path) -> None:
    """Placement reads a boot's responses in its span of seqs (the boots table), and a
    boot's reach is one row of that table: no index of every response by boot."""
    plans = plans_of_last_sync(tmp_path)
    placing = [plan for sql, plan in plans.items()
               if "FROM responses" in sql and "AND boot = 6" in sql]  # (values shown)
    assert placing  # boot 6 was placed by its late anchor
    for plan in placing:
        assert plan == ["SEARCH responses USING PRIMARY KEY (device_id=? AND seq>? AND seq<?)"]
    reach = [plan for sql, plan in plans.items() if "max_uptime_s FROM boots" in sql]
    assert reach
    for plan in reach:
        assert plan == ["SEARCH boots USING PRIMARY KEY (device_id=? AND boot=?)"]
    assert not any("max(uptime_s)" in sql and "FROM responses" in sql for sql in plans)
