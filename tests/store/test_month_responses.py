"""Each month rollup row's number of responses, kept beside its counters (the migration
MONTH_RESPONSES of both engines): a report sums it for the kinds it does not count instead
of reading their 2 KB rows. It must equal the sum of the row's counts after ingest, after
the migration of a database from before it, and after `deskpulse db copy`, on both
engines, and the reports must not change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from test_boots import postgres_before_boots, sqlite_before_boots
from test_copy import busy_kiosk, serial_kiosk, two_stores  # noqa: F401  (a fixture)
from test_store import STATUS, T0, answer, store  # noqa: F401  (store: a fixture)

from deskpulse.protocol.batch import Anchor
from deskpulse.reports.figures import build_report, build_report_raw
from deskpulse.store import open_store, rollups
from deskpulse.store.base import LATEST, Store
from deskpulse.store.copy import copy_store
from deskpulse.store.postgres import PostgresStore
from deskpulse.store.postgres import schema as pg_schema
from deskpulse.store.sqlite import SqliteStore, rollup_tables
from deskpulse.store.sqlite import schema as sqlite_schema

EVERY_KIND = (0, 1, 2, 3)
MONTH_VERSION = sqlite_schema.MIGRATIONS.index(rollup_tables.MONTH_RESPONSES) + 1


def from_counters(db: Store, device_ids: list[str]) -> Counter[tuple[str, int, int, bool]]:
    """Per (device, scale, kind, time unknown): the responses the month rows' counters
    hold, added up here."""
    out: Counter[tuple[str, int, int, bool]] = Counter()
    for device_id, month, scale, kind, blob in db.month_rollups(device_ids, 0, LATEST):
        counts = np.frombuffer(blob, rollups.BLOB)[:rollups.COUNTS]
        out[device_id, scale, kind, month == rollups.TIME_UNKNOWN] += int(counts.sum())
    return out


def stored(db: Store, device_ids: list[str], first: int = 0, last: int = LATEST,
           kinds: tuple[int, ...] = EVERY_KIND) -> Counter[tuple[str, int, int, bool]]:
    return Counter({(device_id, scale, kind, unknown): n for device_id, scale, kind, unknown, n
                    in db.month_responses(device_ids, first, last, kinds=kinds)})


def flagged_kiosks(db: Store) -> list[str]:
    """Two kiosks with every kind (rapid, closed, both), responses without a time and a
    boot that an anchor moves to another month (its rows go down and up)."""
    db.describe_device("desk-1", time_zone="Europe/Paris", create=True)
    batch = [answer(seq, rating=1 + seq % 4, wall=T0 + 86400 * 9 * seq, uptime=100 * seq,
                    rapid=seq % 3 == 0, told=("yes", "no", "no_answer")[seq % 3])
             for seq in range(1, 13)]
    batch += [answer(13, wall=None, boot=2, uptime=10), answer(14, wall=None, boot=2,
                                                                 uptime=20, rapid=True)]
    db.store_batch("desk-1", batch, [], STATUS, "serial", now=T0)
    # Boot 3 stamped a month early, then placed by its anchor.
    early = [answer(20 + i, wall=T0 - 31 * 86400 + i, boot=3, uptime=50 + i,
                    rapid=i % 2 == 1) for i in range(4)]
    db.store_batch("desk-1", early, [], STATUS, "serial", now=T0 + 1000)
    db.store_batch("desk-1", [], [Anchor(3, 60, T0 + 2000, 1)], STATUS, "serial",
                      now=T0 + 2000)
    serial_kiosk(db, "desk-2", 150)  # rapid every 11th, closed every 13th
    return ["desk-1", "desk-2"]


def test_after_ingest_each_rows_responses_are_its_counters_sum(
        store: Store) -> None:  # noqa: F811
    kiosks = flagged_kiosks(store)
    store.refresh_rollups(kiosks)
    expected = from_counters(store, kiosks)
    assert {kind for _, _, kind, _ in expected} == set(EVERY_KIND)
    assert any(unknown for *_, unknown in expected)
    assert stored(store, kiosks) == expected
    # The kinds and months asked for only, and one device among others.
    assert stored(store, ["desk-2"], kinds=(1, 3)) == Counter(
        {key: n for key, n in expected.items() if key[0] == "desk-2" and key[2] in (1, 3)})
    assert set(stored(store, kiosks, 0, 0)) == {key for key in expected if key[3]}
    assert stored(store, ["nobody"]) == Counter()


# -- the migration of a database from before it ---------------------------------------------


def sqlite_before_the_column(db: SqliteStore) -> None:
    """Back to the table of migration 3 and the version before MONTH_RESPONSES (and so
    before the migrations after it)."""
    sqlite_before_boots(db)
    conn = db.connection
    with sqlite_schema.transaction(conn):
        conn.execute("ALTER TABLE rollup_months RENAME TO kept")
        months = next(s for s in rollup_tables.SCHEMA if "rollup_months" in s)
        conn.execute(months)
        conn.execute("INSERT INTO rollup_months SELECT device_id, month, scale, kind, counts "
                     "FROM kept")
        conn.execute("DROP TABLE kept")
        conn.execute(f"PRAGMA user_version = {MONTH_VERSION - 1}")
    columns = [row[1] for row in conn.execute("PRAGMA table_info(rollup_months)")]
    assert columns == ["device_id", "month", "scale", "kind", "counts"]


def postgres_before_the_column(db: PostgresStore) -> None:
    postgres_before_boots(db)
    with db.connection.transaction():
        db.connection.execute("ALTER TABLE rollup_months DROP COLUMN responses")
        db.connection.execute("UPDATE deskpulse_schema SET version = %s",
                              (MONTH_VERSION - 1,))


def reopened(db: Store, request: pytest.FixtureRequest) -> Store:
    """`db` as it was before MONTH_RESPONSES, then opened again (and so migrated)."""
    if isinstance(db, SqliteStore):
        sqlite_before_the_column(db)
        db.close()
        return open_store(db.location)
    assert isinstance(db, PostgresStore)
    postgres_before_the_column(db)
    db.close()
    return open_store(request.getfixturevalue("pg_url"))


def test_the_migration_fills_the_rows_there_are(
        store: Store, request: pytest.FixtureRequest) -> None:  # noqa: F811
    kiosks = flagged_kiosks(store)
    store.refresh_rollups(kiosks)
    reports = [build_report(store), build_report(store, include_flagged=True)]
    expected = from_counters(store, kiosks)
    migrated = reopened(store, request)
    try:
        assert migrated.schema_version() == (sqlite_schema.SCHEMA_VERSION
                                             if isinstance(migrated, SqliteStore)
                                             else pg_schema.SCHEMA_VERSION)
        assert stored(migrated, kiosks) == expected
        assert [build_report(migrated),
                build_report(migrated, include_flagged=True)] == reports
        # Kept from then on by the ingest.
        serial_kiosk(migrated, "desk-2", 40, first=151)
        assert stored(migrated, kiosks) == from_counters(migrated, kiosks) != expected
        assert build_report(migrated) == build_report_raw(migrated)
    finally:
        migrated.close()


def test_sqlite_keeps_the_column_before_the_counters(tmp_path: Path) -> None:
    """So that reading it stays on a row's first page, short of the counters' overflow."""
    with open_store(tmp_path / "store.db") as db:
        assert isinstance(db, SqliteStore)
        columns = [row[1] for row in db.connection.execute(
            "PRAGMA table_info(rollup_months)")]
    assert columns.index("responses") < columns.index("counts")


def test_the_migration_of_a_big_counter(tmp_path: Path) -> None:
    """Every byte of every counter weighs what it should: counts near 2**32 (no kiosk
    gets there, but the sum in SQL must not depend on that)."""
    with open_store(tmp_path / "store.db") as db:
        assert isinstance(db, SqliteStore)
        sqlite_before_the_column(db)
        counts = np.zeros(rollups.MONTH_WIDTH, np.int64)
        counts[:rollups.COUNTS] = [2**32 - 1 - 977 * i for i in range(rollups.COUNTS)]
        db.connection.execute(
            "INSERT INTO rollup_months VALUES ('big', 2026 * 12, 5, 1, ?)",
            (counts.astype(rollups.BLOB).tobytes(),))
    with open_store(tmp_path / "store.db") as db:
        assert stored(db, ["big"]) == Counter(
            {("big", 5, 1, False): int(counts.sum())})


# -- `deskpulse db copy` --------------------------------------------------------------------


def test_a_copy_has_the_same_responses_per_row(
        two_stores: tuple[Store, Store]) -> None:  # noqa: F811
    source, destination = two_stores
    busy_kiosk(source)
    kiosks = flagged_kiosks(source)
    copy_store(source, destination, chunk_rows=50)
    devices = ["desk-a", *kiosks]
    source.refresh_rollups(devices)
    destination.refresh_rollups(devices)
    expected = from_counters(source, devices)
    assert stored(destination, devices) == from_counters(destination, devices) == expected
    assert build_report(destination) == build_report(source)

