"""What only the PostgreSQL engine has: URLs, its schema version and partitions, and
exactly-once storage and replay protection held by the database across connections (as
several `deskpulse serve` processes would hold them). The shared contract is
test_store.py; these run on the throwaway cluster of tests/pg_cluster.py."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import another_writer_holding
from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.protocol.signing import Nonce
from deskpulse.store import open_store, rollups
from deskpulse.store.base import DeviceFacts, PushCheck, PushRefused, StoreError
from deskpulse.store.postgres import PostgresStore, schema
from deskpulse.store.sqlite import SqliteStore
from deskpulse.store.sqlite import schema as sqlite_schema

T0 = 1_780_000_000  # 2026-05-28T20:26:40Z
STATUS = {"board": "esp32-devkitc-ssd1680"}
KEY = bytes(range(32))


def answer(seq: int, *, wall: int | None = None, boot: int = 1,
           uptime: int | None = None) -> Response:
    return Response(seq=seq, rating=4, scale=4, told_next="yes", latency_s=1.5, rapid=False,
                    closed=False, boot=boot, uptime_s=uptime if uptime is not None else seq,
                    wall=wall, config_version=1)


@pytest.fixture
def store(pg_url: str) -> Iterator[PostgresStore]:
    opened = open_store(pg_url)
    assert isinstance(opened, PostgresStore)
    yield opened
    opened.close()


# -- choosing the engine ------------------------------------------------------------------


def test_the_db_value_chooses_the_engine(pg_url: str, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(pg_url.replace("postgresql://", "postgres://", 1)) as store:
        assert isinstance(store, PostgresStore)
    with open_store(f"sqlite://{tmp_path}/a.db") as store:
        assert isinstance(store, SqliteStore) and (tmp_path / "a.db").exists()
    monkeypatch.setenv("DESKPULSE_DB", pg_url)
    with open_store() as store:
        assert isinstance(store, PostgresStore)
    assert cli.main(["devices", "add", "desk-1", "--server", "http://pc:8080",
                     "-o", str(tmp_path / "desk-1.json")]) == 0
    with open_store(pg_url) as store:
        assert store.registered_ids() == {"desk-1"}


@pytest.mark.parametrize("url", [
    "postgresql://ann:s3cret@127.0.0.1:notaport/db",  # not a URL libpq reads
    "postgresql://ann:s3cret@127.0.0.1:1/db",  # nothing listens there
    "postgresql://ann:s3cret@/db?host=/nonexistent/folder",
    "mysql://ann:s3cret@host/db",  # not an engine deskpulse has
])
def test_a_bad_url_is_one_line_without_its_password(url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(StoreError) as failed:
        open_store(url)
    message = str(failed.value)
    assert "s3cret" not in message and "\n" not in message
    assert cli.main(["devices", "--db", url]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("deskpulse: ") and err.count("\n") == 1
    assert "s3cret" not in out + err and "Traceback" not in err


def test_a_missing_database_and_an_empty_one(pg_cluster: Any, pg_url: str) -> None:
    with pytest.raises(StoreError, match="does not exist"):
        open_store(pg_cluster.url("no_such_database"))
    with pytest.raises(DeskPulseError, match="no deskpulse database"):
        open_store(pg_url, create=False)  # an empty database is not created for a reader
    with open_store(pg_url) as store:
        assert store.schema_version() == schema.SCHEMA_VERSION


# -- schema -------------------------------------------------------------------------------


def test_both_engines_are_at_the_same_schema_version() -> None:
    # A new SQLite migration needs its PostgreSQL twin (store/postgres/schema.py).
    assert schema.SCHEMA_VERSION == sqlite_schema.SCHEMA_VERSION


def test_the_same_tables_and_columns_as_sqlite(store: PostgresStore, tmp_path: Path) -> None:
    with open_store(tmp_path / "s.db") as lite:
        assert isinstance(lite, SqliteStore)
        tables = [name for (name,) in lite.connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        expected = {t: [row[1] for row in lite.connection.execute(f"PRAGMA table_info({t})")]
                    for t in tables}
    found = {t: [name for (name,) in store.connection.execute(
        """SELECT column_name FROM information_schema.columns WHERE table_name = %s
           ORDER BY ordinal_position""", (t,))] for t in tables}
    # Their order may differ where SQLite rebuilt a table to keep a small column before a
    # large one (a month rollup's responses before its 2 KB counts, read without them).
    assert {t: sorted(c) for t, c in found.items()} == {
        t: sorted(c) for t, c in expected.items()}
    sqlite_months = expected["rollup_months"]
    assert sqlite_months.index("responses") < sqlite_months.index("counts")


def test_a_database_from_a_newer_deskpulse_is_refused(store: PostgresStore,
                                                      pg_url: str) -> None:
    store.connection.execute("UPDATE deskpulse_schema SET version = version + 1")
    with pytest.raises(DeskPulseError, match="newer than this deskpulse"):
        open_store(pg_url)


# -- partitions ---------------------------------------------------------------------------


def partitions_of(store: PostgresStore, device_id: str) -> dict[int, str]:
    return dict(store.connection.execute(
        "SELECT seq, tableoid::regclass::text FROM responses WHERE device_id = %s",
        (device_id,)).fetchall())


def test_responses_live_in_their_months_partition_and_move_with_their_boot(
        store: PostgresStore) -> None:
    june = 1_780_600_000  # 2026-06-04
    store.store_batch("desk-1", [answer(1, wall=T0), answer(2, wall=june),
                                 answer(3, boot=2, uptime=100)], [], STATUS, "serial")
    assert partitions_of(store, "desk-1") == {
        1: "responses_2026_05", 2: "responses_2026_06", 3: "responses_unknown"}
    # Boot 2's first anchor places record 3 in July; boot 1's anchor corrects its clock
    # by days, moving record 2 back into May.
    july = 1_783_000_000
    store.store_batch("desk-1", [], [Anchor(2, 100, july, 1), Anchor(1, 2, T0 + 2, 1)],
                      STATUS, "serial")
    assert partitions_of(store, "desk-1") == {
        1: "responses_2026_05", 2: "responses_2026_05", 3: "responses_2026_07"}
    assert store.count_time_unknown() == 0
    assert [r["wall"] for r in store.responses_of("desk-1")] == [T0 + 1, T0 + 2, july]


def test_a_partition_made_by_a_refused_batch_is_made_again(store: PostgresStore) -> None:
    store.store_batch("desk-1", [answer(1, wall=T0)], [], STATUS, "serial")
    august = 1_786_000_000
    with pytest.raises(DeskPulseError):  # record 1 differs from the stored one
        store.store_batch("desk-1", [answer(2, wall=august), answer(1, wall=T0 + 1)], [],
                          STATUS, "serial")
    assert store.store_batch("desk-1", [answer(2, wall=august)], [], STATUS, "serial") == (1, 0)
    assert partitions_of(store, "desk-1")[2] == "responses_2026_08"


def test_an_error_only_the_server_finds_undoes_its_part_alone(store: PostgresStore) -> None:
    """A part sends its batch's statements in pipeline mode, so some errors arrive only
    when the server answers (here a number out of BIGINT's range): that part is undone,
    the group's other parts are committed."""
    with store.group_commit():
        with store.part():
            store.store_batch("desk-1", [answer(1, wall=T0)], [], STATUS, "wifi")
        with pytest.raises(StoreError), store.part():
            store.store_batch("desk-1", [answer(2, uptime=2**64)], [], STATUS, "wifi")
        assert store.group_intact()
        with store.part():
            store.store_batch("desk-2", [answer(1, wall=T0)], [], STATUS, "wifi")
    assert store.response_counts() == {"desk-1": 1, "desk-2": 1}
    assert store.connection.execute(
        "SELECT count(*), sum(new) FROM syncs WHERE device_id = 'desk-1'").fetchone() == (1, 1)


def test_anchors_sent_again_unchanged_still_place_new_records(store: PostgresStore) -> None:
    """A kiosk sends its anchors with every push; the batch does not write them again
    when they are stored as they are, and its records are placed by them all the same,
    and moved when an anchor sent again says something new."""
    anchor = Anchor(boot=1, uptime_s=10, wall=T0, source=2)
    store.store_batch("desk-1", [answer(1, uptime=20)], [anchor], STATUS, "wifi")
    store.store_batch("desk-1", [answer(2, uptime=30)], [anchor], STATUS, "wifi")
    walls = dict(store.connection.execute(
        "SELECT seq, wall FROM responses WHERE device_id = 'desk-1'").fetchall())
    assert walls == {1: T0 + 10, 2: T0 + 20}
    store.store_batch("desk-1", [answer(3, uptime=40)], [anchor._replace(wall=T0 + 100)],
                      STATUS, "wifi")
    walls = dict(store.connection.execute(
        "SELECT seq, wall FROM responses WHERE device_id = 'desk-1'").fetchall())
    assert walls == {1: T0 + 110, 2: T0 + 120, 3: T0 + 130}


# -- several processes on one database ----------------------------------------------------


def race(pg_url: str, work: Callable[[PostgresStore, int], Any], writers: int = 4
         ) -> list[Any]:
    """Run work(store, i) in `writers` threads at once, each on its own connection (as
    many serve processes would); return what each returned or raised."""
    stores = [open_store(pg_url) for _ in range(writers)]
    results: list[Any] = [None] * writers
    start = threading.Barrier(writers)

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = work(stores[i], i)  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 -- reported to the test
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for opened in stores:
        opened.close()
    return results


def test_the_same_batch_from_several_writers_is_stored_once(pg_url: str) -> None:
    batch = [answer(seq, wall=T0 + seq) for seq in range(1, 51)]

    def store_twice(store: PostgresStore, i: int) -> list[tuple[int, int]]:
        out = []
        for _ in range(2):
            with store.group_commit():
                with store.part():
                    out.append(store.store_batch("desk-1", batch, [], STATUS, "wifi"))
                with store.part():
                    out.append(store.store_batch(f"own-{i}", batch[:5], [], STATUS, "wifi"))
        return out

    results = race(pg_url, store_twice)
    assert not [r for r in results if isinstance(r, Exception)], results
    shared = [pair for result in results for pair in result[::2]]
    assert sorted(shared) == [(0, 50)] * 7 + [(50, 0)]
    with open_store(pg_url) as after:
        assert after.response_counts() == {"desk-1": 50, **{f"own-{i}": 5 for i in range(4)}}
        months = after.month_rollups(["desk-1"], 0, 1 << 40)
        counted = sum(int(np.frombuffer(row[4], rollups.BLOB)[:rollups.COUNTS].sum())
                      for row in months)
        assert counted == 50  # the rollups counted each response once too


def test_a_nonce_is_accepted_once_across_writers(pg_url: str) -> None:
    with open_store(pg_url) as first:
        first.set_key("desk-1", KEY, replace=False,
                      facts=DeviceFacts("desk-1", None, None, None))
    check = PushCheck(KEY, Nonce(1, 7))

    def push(store: PostgresStore, i: int) -> tuple[int, int]:
        return store.store_batch("desk-1", [answer(i + 1, wall=T0 + i)], [], STATUS, "wifi",
                                 push=check)

    results = race(pg_url, push)
    accepted = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if isinstance(r, PushRefused)]
    assert accepted == [(1, 0)] and len(refused) == 3, results
    assert {r.problem for r in refused} == {"replayed"}
    with open_store(pg_url) as after:
        assert after.response_counts() == {"desk-1": 1}


def test_a_batch_that_waited_for_the_device_sees_what_the_holder_committed(
        pg_url: str) -> None:
    """The batch's reads are one server-side function whose first query waits for the
    device's lock: its later queries must see the rows committed meanwhile (a fresh
    snapshot each), so the same batch is found stored, not stored twice in two months'
    partitions."""
    batch = [answer(seq, wall=T0 + seq) for seq in range(1, 21)]
    entered = threading.Event()
    waited: list[Any] = []

    def wait_then_store() -> None:
        with open_store(pg_url) as waiter:
            entered.wait(10)
            waited.append(waiter.store_batch("desk-1", batch, [], STATUS, "wifi"))

    thread = threading.Thread(target=wait_then_store)
    with open_store(pg_url) as holder:
        with holder.group_commit():
            assert holder.store_batch("desk-1", batch, [], STATUS, "wifi") == (20, 0)
            thread.start()
            entered.set()
            # The waiter is blocked on the device's row until this group commits.
            thread.join(0.5)
            assert thread.is_alive() and not waited
        thread.join(30)
        assert waited == [(0, 20)]
        assert holder.response_counts() == {"desk-1": 20}


def test_a_refused_push_does_not_lose_the_batch_function(pg_url: str) -> None:
    """The server-side function is made inside the first batch's savepoint; a refused
    push rolls that back, and the next batch on the same connection makes it again."""
    with open_store(pg_url) as first:
        first.set_key("desk-1", KEY, replace=False,
                      facts=DeviceFacts("desk-1", None, None, None))
    with open_store(pg_url) as store, store.group_commit():
        with pytest.raises(PushRefused), store.part():
            store.store_batch("desk-1", [answer(1, wall=T0)], [], STATUS, "wifi",
                              push=PushCheck(bytes(32), Nonce(1, 1)))
        with store.part():
            assert store.store_batch("desk-1", [answer(1, wall=T0)], [], STATUS, "wifi",
                                     push=PushCheck(KEY, Nonce(1, 1))) == (1, 0)


def test_a_failed_part_leaves_no_statement_that_psycopg_only_meant_to_prepare(
        store: PostgresStore) -> None:
    """A statement whose PREPARE was queued in the pipeline behind one that failed was
    never prepared by the server; psycopg 3.3 counts it as prepared all the same, and
    its every later use failed (a writer after a deadlock: all its pushes 503)."""
    conn = store.connection
    conn.execute("CREATE TABLE scratch (x integer)")
    insert = "INSERT INTO scratch VALUES (%s)"
    with store.group_commit():
        # A first failure: psycopg forgets its prepared statements when it first sees
        # the part's ROLLBACK, not when it sees it again.
        with pytest.raises(StoreError), store.part():
            conn.execute("SELECT 1 / %s", (0,)).fetchall()
        for x in range(5):  # psycopg prepares a statement at its sixth use
            conn.execute(insert, (x,))
        with pytest.raises(StoreError, match="division by zero"), store.part():
            failing = conn.execute("SELECT 1 / %s", (0,))
            conn.execute(insert, (5,))  # its PREPARE goes out behind the failure
            failing.fetchall()
        assert store.group_intact()
        conn.execute(insert, (6,))
    assert conn.execute("SELECT array_agg(x ORDER BY x) FROM scratch").fetchone() == (
        [0, 1, 2, 3, 4, 6],)


def test_a_device_locked_by_another_writer_is_a_busy_store_error(pg_url: str) -> None:
    waiter = open_store(pg_url, busy_timeout_ms=50)
    with another_writer_holding(pg_url, lambda holder: holder.store_batch(
            "desk-1", [answer(1)], [], STATUS, "serial")):
        with pytest.raises(StoreError) as held:
            waiter.store_batch("desk-1", [answer(2)], [], STATUS, "serial")
        assert held.value.busy and "another program holds" in str(held.value)
        # Another device is not held up.
        assert waiter.store_batch("desk-2", [answer(1)], [], STATUS, "serial") == (1, 0)
    waiter.close()
    with open_store(pg_url) as after:
        assert after.response_counts() == {"desk-1": 1, "desk-2": 1}


def test_a_lost_connection_is_a_store_error_also_while_rows_are_read(
        store: PostgresStore, pg_url: str) -> None:
    store.store_batch("desk-1", [answer(seq, wall=T0 + seq) for seq in range(1, 4)], [],
                      STATUS, "serial")
    rows = store.export_rows("desk-1", None, None, include_flagged=True)
    with open_store(pg_url) as other:
        other.connection.execute(  # type: ignore[attr-defined]
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name = 'deskpulse' AND pid != pg_backend_pid()")
    with pytest.raises(StoreError, match="PostgreSQL server|failed"):
        list(rows)
    with pytest.raises(StoreError):
        store.response_counts()
    with pytest.raises(StoreError), store.group_commit():
        pass


def test_without_postgresql_the_cluster_says_why(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import pg_cluster

    monkeypatch.setattr(pg_cluster, "BIN", tmp_path)
    reason = pg_cluster.missing_reason()
    assert reason is not None and "make postgres" in reason and str(tmp_path) in reason
