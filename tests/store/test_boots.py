"""The boots table (migration 14 of both engines): each (device, boot)'s span of seqs and
highest uptime, kept by ingest in place of an index of every response by boot. It must
equal what the responses say (a GROUP BY over them) after any batches (duplicates,
reboots, resent batches, anchors arriving late, boots whose seqs interleave), after the
migration of a database from before it, and after `deskpulse db copy`; and placement,
which reads a boot's responses through it, must put every response where its boot's
latest anchor says."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from test_copy import two_stores  # noqa: F401  (a fixture)
from test_store import STATUS, T0, store  # noqa: F401  (store: a fixture)

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports.figures import build_report, build_report_raw
from deskpulse.store import batches, open_store
from deskpulse.store.base import Store
from deskpulse.store.copy import copy_store
from deskpulse.store.postgres import PostgresStore
from deskpulse.store.postgres import schema as pg_schema
from deskpulse.store.sqlite import SqliteStore
from deskpulse.store.sqlite import schema as sqlite_schema

BOOTS_VERSION = next(number for number, steps in enumerate(sqlite_schema.MIGRATIONS, start=1)
                     if any("CREATE TABLE boots" in step for step in steps))
_OLD_BOOT_INDEX = "CREATE INDEX responses_by_boot ON responses(device_id, boot, uptime_s)"


def boots_table(db: Store) -> list[tuple[int, ...]]:
    return [tuple(row) for row in db.connection.execute(  # type: ignore[attr-defined]
        "SELECT device_id, boot, first_seq, last_seq, max_uptime_s FROM boots "
        "ORDER BY device_id, boot")]


def recounted(db: Store) -> list[tuple[int, ...]]:
    """What the boots table must hold, from the responses themselves."""
    return [tuple(row) for row in db.connection.execute(  # type: ignore[attr-defined]
        "SELECT device_id, boot, min(seq), max(seq), max(uptime_s) FROM responses "
        "GROUP BY device_id, boot ORDER BY device_id, boot")]


# -- a kiosk's life, and where its responses belong ---------------------------------------


@dataclass
class Life:
    """A kiosk's batches as its pushes send them, and a model of where each stored
    response belongs: its boot's latest own anchor places it (wall - uptime_s of the one
    with the highest uptime), else the device's own stamp stands."""

    device_id: str
    rng: random.Random
    seq: int = 1
    boot: int = 1
    uptime: int = 10
    sent: dict[int, Response] = field(default_factory=dict)
    anchors: dict[int, dict[int, int]] = field(default_factory=dict)  # boot: {uptime: wall}
    batches: list[tuple[list[Response], list[Anchor]]] = field(default_factory=list)

    def response(self, boot: int, uptime: int, seq: int) -> Response:
        rng = self.rng
        stamp = None if rng.random() < 0.3 else T0 + boot * 86_400 + uptime
        return Response(seq=seq, rating=rng.randint(1, 5), scale=5,
                        told_next=rng.choice(("yes", "no", "no_answer")),
                        latency_s=rng.randint(5, 90) / 10, rapid=rng.random() < 0.1,
                        closed=rng.random() < 0.1, boot=boot, uptime_s=uptime, wall=stamp,
                        config_version=1)

    def fresh(self, count: int, *, interleaved: bool = False) -> list[Response]:
        """`count` new responses; `interleaved`: alternately of the boot before this one,
        so that two boots' seqs interleave (a kiosk never does it, but placement must not
        depend on it)."""
        out = []
        for i in range(count):
            boot = self.boot - 1 if interleaved and i % 2 and self.boot > 1 else self.boot
            self.uptime += self.rng.randint(1, 600)
            out.append(self.response(boot, self.uptime + 1_000_000 * (boot != self.boot),
                                     self.seq))
            self.seq += 1
        return out

    def anchor(self, boot: int) -> Anchor:
        """A new anchor of `boot` at an uptime never anchored before (a copy refuses two
        stores whose anchors disagree at one uptime), its clock off by up to a day."""
        uptime = self.rng.randint(0, 3_000_000)
        while uptime in self.anchors.get(boot, {}):
            uptime += 1
        return Anchor(boot, uptime, T0 + boot * 86_400 + uptime
                      + self.rng.choice((0, 0, 3600, -86_400)), self.rng.choice((1, 2, 3)))

    def next_batch(self) -> tuple[list[Response], list[Anchor]]:
        rng = self.rng
        if rng.random() < 0.25:
            self.boot += 1
            self.uptime = rng.randint(1, 30)
        roll = rng.random()
        if roll < 0.2 and self.sent:  # resent: a part already stored, with some new ones
            old = sorted(self.sent)
            start = rng.randrange(len(old))
            batch = [self.sent[s] for s in old[start:start + rng.randint(1, 20)]]
            batch += self.fresh(rng.randint(0, 5))
        elif roll < 0.3:
            batch = self.fresh(rng.randint(2, 12), interleaved=True)
        else:
            batch = self.fresh(rng.randint(0, 40))
        if rng.random() < 0.15 and batch:
            batch = batch + batch[: rng.randint(1, len(batch))]  # duplicates inside
        anchors = []
        for _ in range(rng.choice((0, 0, 1, 2))):
            # Often a boot already stored: its responses move (a first anchor, late, or
            # a clock correction).
            anchors.append(self.anchor(rng.randint(max(1, self.boot - 4), self.boot)))
        self.keep(batch, anchors)
        return batch, anchors

    def keep(self, batch: list[Response], anchors: list[Anchor]) -> None:
        for r in batch:
            self.sent.setdefault(r.seq, r)
        for a in anchors:
            self.anchors.setdefault(a.boot, {})[a.uptime_s] = a.wall
        self.batches.append((batch, anchors))

    def late_anchors(self) -> list[Anchor]:
        """A new anchor for every boot sent: each moves its stored responses."""
        anchors = [self.anchor(boot) for boot in sorted({r.boot for r in self.sent.values()})]
        self.keep([], anchors)
        return anchors

    def expected_walls(self) -> dict[int, int | None]:
        out = {}
        for seq, r in self.sent.items():
            anchored = self.anchors.get(r.boot)
            if anchored:
                latest = max(anchored)
                out[seq] = r.uptime_s + anchored[latest] - latest
            else:
                out[seq] = r.wall
        return out


def live(db: Store, life: Life, batches: int, *, start: int = 0) -> None:
    """Push `batches` of the kiosk's life, checking the boots table after each."""
    for i in range(batches):
        responses, anchors = life.next_batch()
        db.store_batch(life.device_id, responses, anchors, STATUS, "wifi",
                       now=T0 + 100 * (start + i))
        assert boots_table(db) == recounted(db), (life.device_id, i)


def walls_of(db: Store, device_id: str) -> dict[int, int | None]:
    return {r["seq"]: r["wall"] for r in db.responses_of(device_id)}


def test_the_table_follows_every_batch_and_placement_follows_the_anchors(
        store: Store) -> None:  # noqa: F811
    seeds = range(3) if isinstance(store, SqliteStore) else range(1)
    for seed in seeds:
        life = Life(f"desk-{seed}", random.Random(seed))
        live(store, life, 30)
        assert walls_of(store, life.device_id) == life.expected_walls()
        store.store_batch(life.device_id, [], life.late_anchors(), STATUS, "wifi",
                          now=T0 + 10_000)
        assert boots_table(store) == recounted(store)
        assert walls_of(store, life.device_id) == life.expected_walls()
    assert {row[0] for row in boots_table(store)} == {f"desk-{s}" for s in seeds}
    assert build_report(store) == build_report_raw(store)  # the rollups moved with them


# -- a database from before it ------------------------------------------------------------


def sqlite_before_boots(db: SqliteStore) -> None:
    """Back to version BOOTS_VERSION - 1: the index by boot, no boots table."""
    conn = db.connection
    with sqlite_schema.transaction(conn):
        conn.execute("DROP TABLE boots")
        conn.execute(_OLD_BOOT_INDEX)
        conn.execute(f"PRAGMA user_version = {BOOTS_VERSION - 1}")


def postgres_before_boots(db: PostgresStore) -> None:
    conn = db.connection
    with conn.transaction():
        conn.execute("DROP TABLE boots")
        conn.execute(_OLD_BOOT_INDEX)
        conn.execute("UPDATE deskpulse_schema SET version = %s", (BOOTS_VERSION - 1,))


def test_the_migration_fills_the_table_and_drops_the_index(
        store: Store, request: pytest.FixtureRequest) -> None:  # noqa: F811
    lives = [Life(f"desk-{seed}", random.Random(10 + seed)) for seed in range(2)]
    for life in lives:
        live(store, life, 15)
    expected = recounted(store)
    assert expected
    if isinstance(store, SqliteStore):
        sqlite_before_boots(store)
        store.close()
        migrated = open_store(store.location)
        indexes = {row[1] for row in migrated.connection.execute(  # type: ignore[attr-defined]
            "PRAGMA index_list(responses)")}
        version = sqlite_schema.SCHEMA_VERSION
    else:
        assert isinstance(store, PostgresStore)
        postgres_before_boots(store)
        store.close()
        migrated = open_store(request.getfixturevalue("pg_url"))
        indexes = {name for (name,) in migrated.connection.execute(  # type: ignore[attr-defined]
            "SELECT indexname FROM pg_indexes WHERE tablename = 'responses'")}
        version = pg_schema.SCHEMA_VERSION
    try:
        assert migrated.schema_version() == version >= BOOTS_VERSION
        assert "responses_by_boot" not in indexes
        assert boots_table(migrated) == expected
        # Ingest and placement carry on over the migrated table.
        for i, life in enumerate(lives):
            live(migrated, life, 5, start=100)
            migrated.store_batch(life.device_id, [], life.late_anchors(), STATUS, "wifi",
                                 now=T0 + 20_000 + i)
            assert walls_of(migrated, life.device_id) == life.expected_walls()
        assert boots_table(migrated) == recounted(migrated)
    finally:
        migrated.close()


# -- `deskpulse db copy` ------------------------------------------------------------------


def test_a_copy_keeps_the_table_also_of_a_kiosk_in_both_stores(
        two_stores: tuple[Store, Store]) -> None:  # noqa: F811
    """The destination had the first part of a kiosk's life; the source has all of it, and
    another kiosk the destination never saw."""
    source, destination = two_stores
    shared, other = Life("desk-m", random.Random(21)), Life("desk-o", random.Random(22))
    live(source, shared, 12)
    for i, (responses, anchors) in enumerate(shared.batches[:6]):
        destination.store_batch("desk-m", responses, anchors, STATUS, "wifi", now=T0 + 100 * i)
    live(source, other, 8)
    copy_store(source, destination, chunk_rows=7)
    assert boots_table(destination) == recounted(destination) == boots_table(source)
    for life in (shared, other):
        assert walls_of(destination, life.device_id) == life.expected_walls()


def test_the_spans_of_a_batch_are_those_of_each_boot() -> None:
    """batches.boot_spans against the plain definition, for boots in runs (a kiosk's
    batches) and in any order."""
    rng = random.Random(5)
    for case in range(200):
        count = rng.randint(1, 60)
        boots = [rng.randint(1, 4) for _ in range(count)]
        if case % 2:
            boots.sort()
        seqs = rng.sample(range(1, 500), count)
        uptimes = [rng.randint(0, 10**6) for _ in range(count)]
        expected = {boot: (boot, min(s for s, b in zip(seqs, boots, strict=True) if b == boot),
                           max(s for s, b in zip(seqs, boots, strict=True) if b == boot),
                           max(u for u, b in zip(uptimes, boots, strict=True) if b == boot))
                    for boot in set(boots)}
        spans = batches.boot_spans(seqs, boots, uptimes)
        assert sorted(spans) == sorted(expected.values()), (seqs, boots, uptimes)
    assert batches.boot_spans([], [], []) == []
