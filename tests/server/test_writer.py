"""The server's writer commits the pushes that queued up together, one savepoint each:
a refused push is undone alone, the others are stored, and nothing is answered before
the commit."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import pickle
import re
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from test_serve_instances import _at_once
from test_server import (
    PATIENCE,
    STATUS,
    LoadResult,
    _check_exactly_once,
    _push_until_acked,
    make_responses,
    register,
)

from deskpulse.errors import DeskPulseError
from deskpulse.server import writer
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import base, open_store
from deskpulse.store.base import Store
from deskpulse.store.sqlite import SqliteStore


def store(conn: sqlite3.Connection, device_id: str, first_seq: int, rating: int = 3) -> Any:
    return conn.store_batch(device_id, make_responses(first_seq, 5, rating=rating), [],
                          STATUS, "wifi")


def refuse(conn: sqlite3.Connection, device_id: str) -> None:
    def guard(conn: sqlite3.Connection) -> None:
        raise DeskPulseError("replayed")

    conn.store_batch(device_id, make_responses(1, 5), [], STATUS, "wifi", guard=guard)


def half_done_then_fail(conn: sqlite3.Connection, device_id: str) -> None:
    """A job that writes, then fails outside store_batch's own savepoint."""
    store(conn, device_id, 1)
    raise RuntimeError("failed after writing")


def stored(conn: Store) -> dict[str, list[int]]:
    return {device_id: [r["seq"] for r in conn.responses_of(device_id)]
            for device_id in sorted(conn.response_counts())}


@pytest.fixture
def conn(tmp_path: Path) -> Any:
    conn = open_store(tmp_path / "host.db")
    yield conn
    conn.close()


@pytest.fixture
def any_conn(db_target: str) -> Any:
    """On every engine: the group commit is the writer's, the savepoints the engine's."""
    conn = open_store(db_target)
    yield conn
    conn.close()


def test_a_group_is_stored_in_one_commit_and_a_refused_push_alone_is_undone(
        any_conn: Store) -> None:
    conn = any_conn
    replies = writer._run_group(conn, [
        (1, store, ("a", 1)),
        (2, refuse, ("b",)),
        (3, half_done_then_fail, ("c",)),
        (4, store, ("a", 6)),
        (5, store, ("a", 1, 1)),  # clashes with job 1's records, stored just before
    ])
    assert [(job, ok) for job, ok, _ in replies] == [
        (1, True), (2, False), (3, False), (4, True), (5, False)]
    assert replies[0][2] == (5, 0) and replies[3][2] == (5, 0)
    assert isinstance(replies[4][2], base.ConflictError)
    assert not conn.group_intact()  # no transaction left open
    assert stored(conn) == {"a": list(range(1, 11))}
    # Two syncs recorded for "a": the refused and failed pushes left no trace at all.
    assert [(f.device_id, len(conn.copy_rows("syncs", f.device_id, None, 99)))
            for f in conn.device_facts()] == [("a", 2)]
    if isinstance(conn, SqliteStore):  # the group turned its key checks off, and back on
        assert conn.connection.execute("PRAGMA foreign_keys").fetchone()[0] == 1


_locked_times: dict[str, int] = {}


def locked_then_store(conn: Store, device_id: str, first_seq: int, times: int) -> Any:
    """Writes, then meets a lock held too long (as a deadlock's victim does) the first
    `times` times it runs; then stores."""
    store(conn, device_id, first_seq)
    left = _locked_times.setdefault(device_id, times)
    if left:
        _locked_times[device_id] = left - 1
        raise base.StoreError(f"{device_id} stayed locked", busy=True)
    return (5, 0)


def test_a_job_that_met_a_lock_runs_again_once_after_the_jobs_before_it_commit(
        any_conn: Store) -> None:
    conn = any_conn
    _locked_times.clear()
    replies = writer._run_group(conn, [
        (1, store, ("a", 1)),
        (2, locked_then_store, ("b", 1, 1)),  # locked once: stored when run again
        (3, store, ("a", 6)),
        (4, locked_then_store, ("c", 1, 2)),  # locked twice: refused as busy
        (5, store, ("a", 11)),
    ])
    assert sorted((job, ok) for job, ok, _ in replies) == [
        (1, True), (2, True), (3, True), (4, False), (5, True)]
    refused = next(error for job, _, error in replies if job == 4)
    assert isinstance(refused, base.StoreError) and refused.busy
    assert stored(conn) == {"a": list(range(1, 16)), "b": [1, 2, 3, 4, 5]}
    # The locked attempts left nothing: one sync of "b", none of "c".
    assert {f.device_id: len(conn.copy_rows("syncs", f.device_id, None, 99))
            for f in conn.device_facts()} == {"a": 3, "b": 1}
    assert not conn.group_intact()


def test_when_the_commit_fails_every_job_fails(conn: sqlite3.Connection,
                                               tmp_path: Path) -> None:
    # Another connection holds the write lock: the writer's BEGIN IMMEDIATE waits, then
    # fails; no job may be answered as stored.
    other = open_store(tmp_path / "host.db")
    conn.connection.execute("PRAGMA busy_timeout = 50")
    other.connection.execute("BEGIN IMMEDIATE")
    try:
        replies = writer._run_group(conn, [(1, store, ("a", 1)), (2, store, ("b", 1))])
    finally:
        other.connection.execute("ROLLBACK")
        other.close()
    assert [(job, ok) for job, ok, _ in replies] == [(1, False), (2, False)]
    assert all(isinstance(error, writer.StorageUnavailable) for _, _, error in replies)
    assert all("not committed: database is locked" in str(error) for _, _, error in replies)
    assert stored(conn) == {}


def stop_growing(conn: sqlite3.Connection) -> None:
    """The database may not grow from here on, as on a full disk."""
    pages = conn.connection.execute("PRAGMA page_count").fetchone()[0]
    conn.connection.execute(f"PRAGMA max_page_count = {pages}")


def store_many(conn: sqlite3.Connection, device_id: str) -> Any:
    return conn.store_batch(device_id, make_responses(1, 400), [], STATUS, "wifi")


def test_a_full_disk_fails_every_job_of_the_group_even_those_done_before(
        conn: sqlite3.Connection) -> None:
    # SQLite rolls the whole transaction back on a full disk: job 1, done in it before
    # the disk filled, is gone too and must not be answered as stored; job 4 must not
    # slip into a transaction of its own.
    replies = writer._run_group(conn, [
        (1, store, ("a", 1)), (2, stop_growing, ()), (3, store_many, ("b",)),
        (4, store, ("c", 1))])
    assert [(job, ok) for job, ok, _ in replies] == [(1, False), (2, False), (3, False),
                                                      (4, False)]
    assert all(isinstance(error, writer.StorageUnavailable)
               and "database or disk is full" in str(error) for _, _, error in replies)
    assert not conn.connection.in_transaction
    assert stored(conn) == {}


def test_a_lone_store_batch_still_commits_by_itself(conn: sqlite3.Connection,
                                                    tmp_path: Path) -> None:
    assert store(conn, "a", 1) == (5, 0)
    other = open_store(tmp_path / "host.db")
    try:
        assert stored(other) == {"a": [1, 2, 3, 4, 5]}
    finally:
        other.close()


def test_a_writer_whose_server_died_after_the_commit_stops_without_a_word(
        conn: sqlite3.Connection, tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # The server (the pipe's other end) is killed while the writer commits its push:
    # the answer has nobody to go to. The push is stored; the kiosk will send it again.
    server_end, writer_end = multiprocessing.Pipe()
    server_end.send_bytes(pickle.dumps((1, store, ("front-1", 1))))
    server_end.close()
    writer._writer_main(writer_end, tmp_path / "host.db")
    assert stored(conn) == {"front-1": [1, 2, 3, 4, 5]}
    assert "Traceback" not in capfd.readouterr().err


# -- two writers (PostgreSQL's servers run two) -------------------------------------------


def writer_pid(conn: Store) -> int:
    return os.getpid()


def test_a_devices_jobs_go_to_one_writer_and_the_devices_spread_over_both(
        tmp_path: Path) -> None:
    database = writer.WriterProcess(tmp_path / "host.db", writers=2)
    devices = [f"desk-{n}" for n in range(12)]

    async def ask() -> tuple[list[int], dict[str, set[int]]]:
        everywhere = await database.run_on_each(writer_pid)
        by_device = {d: {await database.run(writer_pid, device=d) for _ in range(3)}
                     for d in devices}
        return everywhere, by_device

    try:
        everywhere, by_device = asyncio.run(ask())
    finally:
        database.close()
    assert len(set(everywhere)) == 2
    assert all(len(pids) == 1 for pids in by_device.values()), by_device
    assert set().union(*by_device.values()) == set(everywhere)


@pytest.mark.parametrize(("option", "writers"), [((), 2), (("--writers", "3"), 3)])
def test_the_writers_of_one_server_store_every_push_once(
        pg_url: str, tmp_path: Path, option: tuple[str, ...], writers: int) -> None:
    # One server on PostgreSQL runs two writers (or --writers), each committing its own
    # groups: kiosks pushing at once through all, and replays raced against their
    # original, store each push once; every writer did work and said so when it stopped.
    conn = open_store(pg_url)
    devices, batches, size = 12, 5, 50
    kiosks = [register(conn, tmp_path, f"k{n:02d}") for n in range(devices)]  # type: ignore[arg-type]
    server = ServeProcess(pg_url, extra_args=option)
    try:
        result, lock = LoadResult(), threading.Lock()
        threads = [threading.Thread(target=_push_until_acked,
                                    args=(server.url, k, batches, size, result, lock))
                   for k in kiosks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(PATIENCE)
        assert not any(t.is_alive() for t in threads)
        replays = [_at_once([server.url, server.url], kiosk,
                            make_responses(1 + batches * size, size), same_nonce=True)
                   for kiosk in kiosks[:4]]
    finally:
        server.stop()
    assert result.failures == []
    assert sum(a.new for a in result.answers) == devices * batches * size
    for answers in replays:
        assert sorted(a.status for a in answers) == [200, 409], answers
    _check_exactly_once(conn, kiosks[4:], batches * size)  # type: ignore[arg-type]
    _check_exactly_once(conn, kiosks[:4], (batches + 1) * size)  # type: ignore[arg-type]
    jobs = [int(m[1]) for line in server.log
            if (m := re.search(r"writer \d+ stopped after (\d+) jobs", line))]
    assert len(jobs) == writers and min(jobs) > 0, server.log
    assert not any("Traceback" in line for line in server.log), server.log
    conn.close()


def store_in_month(conn: Store, device_id: str, month: int, first_seq: int) -> Any:
    """Five responses of `device_id` in the month'th month after September 2017."""
    wall = 1_504_224_000 + month * 31 * 86400
    return conn.store_batch(device_id, [
        replace(r, wall=wall + r.seq) for r in make_responses(first_seq, 5)], [], STATUS,
        "wifi")


def test_writers_that_need_the_same_new_months_at_once_store_every_push(
        pg_url: str) -> None:
    # Three writers' groups want the same months that no partition holds yet. Made
    # inside the groups, attaching one waited for the others' groups while they waited
    # for it: deadlocks, and pushes refused. Made between groups, all are stored.
    open_store(pg_url).close()
    failures: list[str] = []

    def write(n: int) -> None:
        store = open_store(pg_url)
        store.retried_in_groups = True  # as the writer process sets it
        try:
            for group in range(8):
                replies = writer._run_group(store, [
                    (job, store_in_month, (f"w{n}-d{job}", group * 3 + (job + n) % 3,
                                           1 + 5 * group))
                    for job in range(3)])
                failures.extend(str(error) for _, ok, error in replies if not ok)
        finally:
            store.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    with open_store(pg_url) as conn:
        assert conn.response_counts() == {f"w{n}-d{job}": 40 for n in range(3)
                                          for job in range(3)}


def test_a_batch_of_a_month_not_made_waits_for_the_next_group(pg_url: str) -> None:
    with open_store(pg_url) as conn:
        conn.retried_in_groups = True  # as the writer process sets it
        replies = writer._run_group(conn, [
            (1, store, ("a", 1)),
            (2, store_in_month, ("b", 40, 1)),  # a month with no partition yet
            (3, store, ("a", 6)),
        ])
        assert [(job, ok) for job, ok, _ in replies] == [(1, True), (2, True), (3, True)]
        assert conn.response_counts() == {"a": 10, "b": 5}
        # In a group, the month was not made by the batch but between the groups.
        with pytest.raises(base.StoreError, match="partitions made first") as wanted, \
                conn.group_commit(), conn.part():
            store_in_month(conn, "b", 41, 6)
        assert wanted.value.busy
        assert conn.response_counts() == {"a": 10, "b": 5}
