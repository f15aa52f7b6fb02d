"""A device clock that was wrong does not outrank the host's time anchors (docs/time.md):
records are placed by the latest anchor of their boot, the rollups and the report follow,
the report says how many records the anchors corrected, and migration 4 fixes databases
stored by the older rule."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response
from deskpulse.reports import figures as report
from deskpulse.store import base, open_store, rollups
from deskpulse.store.sqlite import rollup_tables, schema

STATUS: dict[str, Any] = {"board": "esp32-devkitc-ssd1680", "firmware": "0.1.0"}
DAY = 86400
YEAR = 365 * DAY
TRUE_START = int(datetime(2026, 11, 2, 9, 0, tzinfo=UTC).timestamp())  # a Monday, 09:00


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "deskpulse.db")
    yield c
    c.close()


def stamped(seq: int, uptime: int, skew: int, *, boot: int = 1, rating: int = 5,
            known: bool = True) -> Response:
    """A response at TRUE_START + uptime that the device stamped `skew` seconds off."""
    return Response(seq=seq, rating=rating, scale=5, told_next="yes", latency_s=1.0,
                    rapid=False, closed=False, boot=boot, uptime_s=uptime,
                    wall=TRUE_START + uptime + skew if known else None, config_version=1)


def truth(uptime: int) -> Anchor:
    """A host anchor of boot 1 with the right time."""
    return Anchor(1, uptime, TRUE_START + uptime, 1)


def placed(conn: sqlite3.Connection, device_id: str = "front-1") -> dict[int, tuple[Any, ...]]:
    return {r["seq"]: (r["wall"], r["time_source"], r["device_wall"])
            for r in conn.responses_of(device_id)}


def recount_equal(conn: sqlite3.Connection, device_id: str = "front-1") -> None:
    with schema.transaction(conn.connection):
        zone = rollup_tables.ensure_zone(conn.connection, device_id)
        days, months = rollups.deltas(
            zone, rollup_tables.changes_of_device(conn.connection, device_id))
        assert rollup_tables.read_rows(conn.connection, device_id) == {
            table: {k: tuple(v.tolist()) for k, v in rows.items() if v.any()}
            for table, rows in (("rollup_days", days), ("rollup_months", months))}


def trend_days(rep: dict[str, Any]) -> dict[str, int]:
    return {day["date"]: day["responses"] for day in rep["trend"]}


def test_a_clock_a_year_ahead_is_overruled_by_a_later_anchor(conn: sqlite3.Connection) -> None:
    # A PC with a wrong date set the clock; the kiosk stamped three customers a year ahead
    # and synced them before any anchor of this boot reached the host.
    wrong = [stamped(1, 100, YEAR), stamped(2, 3700, YEAR), stamped(3, 7300, YEAR)]
    conn.store_batch("front-1", wrong, [], STATUS, "serial")
    assert {s: p[1] for s, p in placed(conn).items()} == {1: "device", 2: "device",
                                                          3: "device"}
    assert trend_days(report.build_report(conn)) == {"2027-11-02": 3}
    # The next sync sets the clock right: its anchor places the whole boot.
    conn.store_batch("front-1", [stamped(4, 9000, 0)], [truth(9000)], STATUS, "serial")
    assert placed(conn) == {
        1: (TRUE_START + 100, "anchor", TRUE_START + 100 + YEAR),
        2: (TRUE_START + 3700, "anchor", TRUE_START + 3700 + YEAR),
        3: (TRUE_START + 7300, "anchor", TRUE_START + 7300 + YEAR),
        4: (TRUE_START + 9000, "anchor", TRUE_START + 9000),
    }
    recount_equal(conn)
    rep = report.build_report(conn)
    assert trend_days(rep) == {"2026-11-02": 4}
    assert rep["heatmap"]["responses"][0][9:12] == [1, 1, 2]  # Monday 09, 10, 11 (two)
    assert rep["clock_corrected"] == {
        "tolerance_s": base.CLOCK_TOLERANCE_S, "responses": 3, "largest_s": YEAR,
        "devices": [{"device_id": "front-1", "name": None, "responses": 3,
                     "largest_s": YEAR}]}
    assert report.build_report_raw(conn) == rep


def test_records_stamped_after_the_anchor_arrived_are_placed_by_it_too(
        conn: sqlite3.Connection) -> None:
    # The anchor is already stored; the clock was three days behind all along.
    conn.store_batch("front-1", [], [truth(50)], STATUS, "serial")
    conn.store_batch("front-1", [stamped(1, 100, -3 * DAY), stamped(2, 200, -3 * DAY)],
                   [], STATUS, "serial")
    assert placed(conn) == {1: (TRUE_START + 100, "anchor", TRUE_START + 100 - 3 * DAY),
                            2: (TRUE_START + 200, "anchor", TRUE_START + 200 - 3 * DAY)}
    assert conn.latest_sync("front-1").time_unknown == 0  # type: ignore[union-attr]


def test_a_clock_three_days_back_counts_on_the_right_days(conn: sqlite3.Connection) -> None:
    back = -3 * DAY
    conn.store_batch("front-1", [stamped(1, 60, back, rating=1),
                                     stamped(2, DAY + 60, back, rating=2),
                                     stamped(3, 2 * DAY + 60, back, known=False)],
                   [], STATUS, "serial")
    before = report.build_report(conn)
    assert trend_days(before) == {"2026-10-30": 1, "2026-10-31": 1}
    assert before["time_unknown"] == 1
    # Later syncs in the same boot: a right anchor, then one that agrees with it.
    conn.store_batch("front-1", [], [truth(3 * DAY)], STATUS, "serial")
    conn.store_batch("front-1", [stamped(4, 3 * DAY + 10, 0)], [truth(3 * DAY + 600)],
                   STATUS, "serial")
    recount_equal(conn)
    after = report.build_report(conn)
    assert trend_days(after) == {"2026-11-02": 1, "2026-11-03": 1, "2026-11-04": 1,
                                 "2026-11-05": 1}
    assert after["time_unknown"] == 0
    assert after["clock_corrected"]["responses"] == 2
    assert after["clock_corrected"]["largest_s"] == 3 * DAY
    # A range over the true days sees them; one over the days the device claimed does not.
    assert report.build_report(conn, since="2026-11-02", until="2026-11-04")[
        "clock_corrected"]["responses"] == 2
    wrong_days = report.build_report(conn, since="2026-10-30", until="2026-11-01")
    assert wrong_days["responses"] == 0 and wrong_days["clock_corrected"]["responses"] == 0
    assert report.clock_corrected_line(after) == (
        "clock corrected: 2 responses of front-1 were stamped up to 3 days off by the device "
        "clock; placed by the host's time anchors")


def test_a_clock_correction_moves_records_placed_by_an_earlier_anchor(
        conn: sqlite3.Connection) -> None:
    # A wrong anchor (the clock set a year ahead), then the host corrects it.
    conn.store_batch("front-1", [stamped(1, 100, YEAR), stamped(2, 200, YEAR)],
                   [Anchor(1, 50, TRUE_START + 50 + YEAR, 1)], STATUS, "serial")
    assert placed(conn)[1][:2] == (TRUE_START + 100 + YEAR, "anchor")
    assert report.build_report(conn)["clock_corrected"]["responses"] == 0
    conn.store_batch("front-1", [], [truth(300)], STATUS, "serial")
    assert placed(conn)[1][:2] == (TRUE_START + 100, "anchor")
    recount_equal(conn)
    assert trend_days(report.build_report(conn)) == {"2026-11-02": 2}


def test_within_the_tolerance_nothing_is_reported(conn: sqlite3.Connection) -> None:
    off = base.CLOCK_TOLERANCE_S
    conn.store_batch("front-1", [stamped(1, 100, off), stamped(2, 200, -off),
                                     stamped(3, 300, off + 1)], [truth(400)], STATUS, "serial")
    rep = report.build_report(conn)
    assert rep["clock_corrected"]["responses"] == 1
    assert rep["clock_corrected"]["largest_s"] == off + 1


def test_a_boot_without_an_anchor_keeps_the_device_time(conn: sqlite3.Connection) -> None:
    conn.store_batch("front-1", [stamped(1, 100, YEAR, boot=2), stamped(2, 10, 0)],
                   [truth(20)], STATUS, "serial")
    assert placed(conn)[1] == (TRUE_START + 100 + YEAR, "device", TRUE_START + 100 + YEAR)
    assert placed(conn)[2][1] == "anchor"


def test_an_anchor_that_agrees_rewrites_nothing(conn: sqlite3.Connection) -> None:
    records = [stamped(seq, seq * 60, 0) for seq in range(1, 201)]
    conn.store_batch("front-1", records, [truth(12_000)], STATUS, "serial")
    assert {p[1] for p in placed(conn).values()} == {"anchor"}
    rollup_rows = conn.connection.execute("SELECT count(*) FROM rollup_days").fetchone()[0]
    before = conn.connection.total_changes
    # A later sync: its anchor has the same offset (wall - uptime) as the last one.
    conn.store_batch("front-1", [], [truth(20_000)], STATUS, "serial")
    # The device row, the sync row and its counts, the anchor: nothing of the 200.
    assert conn.connection.total_changes - before == 4
    before = conn.connection.total_changes
    conn.store_batch("front-1", [], [Anchor(1, 30_000, TRUE_START + 30_000 + 5, 1)],
                   STATUS, "serial")  # five seconds of correction moves all 200
    assert conn.connection.total_changes - before >= 4 + 200
    assert conn.connection.execute("SELECT count(*) FROM rollup_days").fetchone()[0] == rollup_rows
    recount_equal(conn)


def test_receipt_anchors_place_only_a_boot_without_anchors_of_its_own(
        conn: sqlite3.Connection) -> None:
    def receipt(uptime: int, delay: int) -> Anchor:
        # The server's clock at receipt: the network's delay makes it a little late.
        return Anchor(1, uptime, TRUE_START + uptime + delay, RECEIPT_SOURCE)

    # A kiosk whose clock was never set: the receipt is all there is, and it places.
    conn.store_batch("front-1", [stamped(1, 100, 0, known=False)], [receipt(110, 1)],
                   STATUS, "wifi")
    assert placed(conn)[1] == (TRUE_START + 101, "anchor", None)
    # The kiosk took the server's time and sends that anchor: it outranks every receipt.
    records = [stamped(seq, seq * 60, 0) for seq in range(2, 202)]
    conn.store_batch("front-1", records, [truth(150), receipt(12_200, 2)], STATUS, "wifi")
    assert {p[0] - TRUE_START - 60 * s for s, p in placed(conn).items() if s > 1} == {0}
    assert placed(conn)[1][0] == TRUE_START + 100
    before = conn.connection.total_changes
    # Pushes every 30 s, each receipt off by another second or two: nothing moves, and
    # no more receipt rows pile up.
    for n, delay in enumerate((1, 3, 0, 2)):
        conn.store_batch("front-1", [], [truth(150), receipt(12_300 + 30 * n, delay)],
                       STATUS, "wifi")
    # Per push: the device row, the sync row and its counts, the device anchor sent again.
    assert conn.connection.total_changes - before == 4 * 4
    assert conn.connection.execute("SELECT count(*) FROM anchors WHERE source = ?",
                        (RECEIPT_SOURCE,)).fetchone() == (1,)
    recount_equal(conn)


def version_3_database(path: Path) -> None:
    """A database as deskpulse wrote it before migration 4: device stamps kept even
    where an anchor of the boot says otherwise, rollups built on those stamps."""
    old = sqlite3.connect(path, isolation_level=None)
    for statements in schema.MIGRATIONS[:3]:
        for statement in statements:
            old.execute(statement)
    old.execute("PRAGMA user_version = 3")
    old.executemany("INSERT INTO devices (device_id, first_seen) VALUES (?, 0)",
                    [("front-1",), ("back-2",)])
    old.execute("INSERT INTO syncs (device_id, at, transport, received, new, duplicates, "
                "time_unknown, status) VALUES ('front-1', 0, 'serial', 5, 5, 0, 0, '{}')")
    rows = [
        # front-1, boot 1: the clock a year ahead, stamps kept; seq 3 placed by the anchor
        ("front-1", 1, 1, 100, TRUE_START + 100 + YEAR, TRUE_START + 100 + YEAR, "device"),
        ("front-1", 2, 1, 200, TRUE_START + 200 + YEAR, TRUE_START + 200 + YEAR, "device"),
        ("front-1", 3, 1, 250, None, TRUE_START + 250, "anchor"),
        # front-1, boot 2: no anchor, the stamp stands; then one without any time
        ("front-1", 4, 2, 10, TRUE_START + DAY, TRUE_START + DAY, "device"),
        ("front-1", 5, 2, 20, None, None, None),
        # back-2: its clock agreed with its anchor; only the label changes
        ("back-2", 1, 1, 100, TRUE_START + 100, TRUE_START + 100, "device"),
    ]
    old.executemany(
        "INSERT INTO responses VALUES (?, ?, 4, 5, 'yes', 10, 0, 0, ?, ?, ?, ?, ?, 1, 1)",
        rows)
    old.executemany("INSERT INTO anchors VALUES (?, 1, ?, ?, 1)", [
        ("front-1", 50, TRUE_START + 50 + YEAR), ("front-1", 300, TRUE_START + 300),
        ("back-2", 50, TRUE_START + 50)])
    # The rollups as version 3 built them; today's code also writes the month rows'
    # responses (a later migration's column), which version 3 did not have.
    old.execute("ALTER TABLE rollup_months ADD COLUMN responses INTEGER")
    for device_id in ("front-1", "back-2"):
        columns = zip(*old.execute(
            "SELECT wall, rating, scale, told_next, rapid, closed FROM responses "
            "WHERE device_id = ?", (device_id,)), strict=True)
        rollup_tables.apply(old, device_id, "UTC", rollups.Changes.from_columns(*columns))
        old.execute("INSERT INTO rollup_zones VALUES (?, 'UTC')", (device_id,))
    old.execute("ALTER TABLE rollup_months DROP COLUMN responses")
    old.close()


def test_migration_4_re_places_stored_records_and_their_rollups(tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    version_3_database(path)
    conn = open_store(path)
    try:
        assert conn.schema_version() == schema.SCHEMA_VERSION >= 4
        assert placed(conn) == {
            1: (TRUE_START + 100, "anchor", TRUE_START + 100 + YEAR),
            2: (TRUE_START + 200, "anchor", TRUE_START + 200 + YEAR),
            3: (TRUE_START + 250, "anchor", None),
            4: (TRUE_START + DAY, "device", TRUE_START + DAY),
            5: (None, None, None),
        }
        assert placed(conn, "back-2") == {1: (TRUE_START + 100, "anchor", TRUE_START + 100)}
        # Only the device whose records moved is recounted.
        assert rollup_tables.stale_devices(conn.connection) == ["front-1"]
        rep = report.build_report(conn)
        assert trend_days(rep) == {"2026-11-02": 4, "2026-11-03": 1}
        assert rep["clock_corrected"]["devices"] == [
            {"device_id": "front-1", "name": None, "responses": 2, "largest_s": YEAR}]
        recount_equal(conn)
        recount_equal(conn, "back-2")
        indexes = {row[1] for row in conn.connection.execute("PRAGMA index_list(responses)")}
        assert "responses_clock_corrected" in indexes
        # Migration 14 put the boots table in place of the boot index.
        assert not {"responses_placeable", "responses_by_boot"} & indexes
        # Ingest carries on under the new rule.
        conn.store_batch("front-1", [stamped(6, 30, YEAR, boot=2)],
                       [Anchor(2, 40, TRUE_START + DAY + 30, 1)], STATUS, "serial")
        assert placed(conn)[4][:2] == (TRUE_START + DAY, "anchor")
        assert placed(conn)[5][:2] == (TRUE_START + DAY + 10, "anchor")
        recount_equal(conn)
    finally:
        conn.close()
