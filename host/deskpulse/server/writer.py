"""One process that does all of the aggregator's store work, fed from an event loop.

Storing a batch (Store.store_batch) is mostly Python work that holds the GIL. On a thread of
the server it took turns with the event loop's HTTP work on one core, and both waited
for each other at every SQLite call; in its own process it stores one batch while the
event loop reads and checks the next ones on another core.

`await writer.run(fn, *args)` sends fn (a module-level function) and its arguments,
pickled, over a pipe; the writer calls fn(store, *args) on its one open store, one job at
a time in arrival order (so the server's writes never contend for SQLite's lock among
themselves), and sends back the result or the exception. The jobs that arrived while it
worked are committed together (a group commit), and answered only after that commit.
Two threads of the parent move the bytes, so that a full pipe never blocks the event
loop. If the writer dies, every job in flight fails with WriterStopped and the next job
starts a new writer.

On PostgreSQL a server runs two writers (`writers`), each with its connection, and a
device's jobs always go to the same one (`run(..., device=...)`), so its pushes stay in
arrival order. One writer and its database connection take turns: the writer's Python
waits while the database server runs the batch's statements, and the other way round,
so one writer kept only about one of two cores busy (docs/benchmarks.md, "the PostgreSQL
push uses both cores"). Two overlap. Exactly-once and replay protection do not rest on
this routing: the database enforces them across writers as across servers. SQLite keeps
one writer: its one write lock would make two take turns.

When a writer stops it logs where its time went (WriterTimes): waiting for jobs, running
them, committing, answering. A transaction that cannot be had or committed (the lock held past the
busy timeout, a full disk, an I/O error) fails every job of its group with
StorageUnavailable: a state of the storage, which passes, not a fault of the jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import multiprocessing
import os
import pickle
import queue
import signal
import sys
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store.base import Store, StoreError

_T = TypeVar("_T")
_STOP = b""
MAX_GROUP = 64
"""Jobs committed together at most. Jobs must work inside the writer's transaction:
reads, and writes through Store.store_batch (which then joins the group's commit)."""


class StorageUnavailable(DeskPulseError):
    """The database cannot take writes right now; nothing of the job was committed."""


class WriterStopped(StorageUnavailable):
    """The writer process died before answering: the job may or may not be committed."""


@dataclass
class WriterTimes:
    """Where a writer's wall-clock time went, in seconds: whether the server's jobs wait
    for the writer or the writer for them, and inside it for what."""
    jobs: int = 0
    groups: int = 0
    waiting: float = 0.0
    """For the next job, with nothing to do."""
    working: float = 0.0
    """Running the jobs: its own CPU (`working_cpu`), the rest waiting for the database
    server's answers (or for a core)."""
    working_cpu: float = 0.0
    committing: float = 0.0
    answering: float = 0.0

    def summary(self) -> str:
        return (f"writer {os.getpid()} stopped after {self.jobs} jobs in {self.groups} groups: "
                f"{self.working:.3f} s running jobs ({self.working_cpu:.3f} s of it its own "
                f"CPU), {self.committing:.3f} s committing, {self.answering:.3f} s "
                f"answering, {self.waiting:.3f} s waiting for jobs")


def _writer_main(conn: Connection, db_path: str | os.PathLike[str] | None,
                 busy_timeout_ms: int | None = None) -> None:
    # Ctrl-C reaches the whole process group: the writer finishes what it was given and
    # stops when the server closes the pipe, never in the middle of a transaction.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    database: Store | None = None
    times = WriterTimes()
    try:
        database = open_store(db_path, busy_timeout_ms=busy_timeout_ms)
        database.retried_in_groups = True  # _run_group runs a busy job once more
        while True:
            started = time.perf_counter()
            group, stopping = _next_group(conn)
            times.waiting += time.perf_counter() - started
            replies = _run_group(database, group, times)
            started = time.perf_counter()
            for reply in replies:
                try:
                    message = pickle.dumps(reply)
                except Exception as exc:  # an unpicklable result or error
                    message = pickle.dumps((reply[0], False, DeskPulseError(repr(exc))))
                try:
                    conn.send_bytes(message)
                except OSError:
                    # The server died (killed, power cut) after the commit: nobody waits
                    # for these answers, and each kiosk sends its batch again.
                    return
            times.answering += time.perf_counter() - started
            if stopping:
                if times.jobs:
                    # The server's log has it (stderr is the server's): one line a writer.
                    print(f"INFO:     {times.summary()}", file=sys.stderr, flush=True)
                return
    finally:
        if database is not None:
            database.close()
        conn.close()


_Job = tuple[int, Callable[..., Any], tuple[Any, ...]]


def _next_group(conn: Connection) -> tuple[list[_Job], bool]:
    """The next job and those already waiting behind it (never waiting for more), up to
    MAX_GROUP; and whether the server is gone or asked the writer to stop."""
    group = []
    while len(group) < MAX_GROUP and (not group or conn.poll(0)):
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return group, True  # the server is gone
        if data == _STOP:
            return group, True
        group.append(pickle.loads(data))
    return group, False


def _run_group(database: Store, group: list[_Job], times: WriterTimes | None = None
               ) -> list[tuple[int, bool, Any]]:
    """Run the jobs in ONE transaction, each in a savepoint of it (a refused push is
    undone alone), and commit once: the commit, not the work, is the most of a small
    push's cost. Every reply waits for the commit; if it fails, every job fails.

    A job that found a row locked too long (StoreError `busy`: on PostgreSQL, another
    writer's or server's group; a deadlock, where the database undoes one side) ends its
    group early: the jobs before it are committed, which frees what they locked, and it
    runs again once, with the jobs after it, in the next group. Without that a kiosk's
    push got a 503 whenever two groups locked each other's rows, as two groups that
    both make a month's partition do (store/postgres/schema.py Partitions)."""
    times = times if times is not None else WriterTimes()
    replies: list[tuple[int, bool, Any]] = []
    retried: set[int] = set()
    while group:
        done, group = _commit_some(database, group, times, retried)
        replies += done
    return replies


def _commit_some(database: Store, group: list[_Job], times: WriterTimes, retried: set[int]
                 ) -> tuple[list[tuple[int, bool, Any]], list[_Job]]:
    """The replies of the jobs committed in one transaction, and the jobs left for the
    next one (from the first that met a lock, if it was not retried already)."""
    times.groups += 1
    started, started_cpu = time.perf_counter(), time.process_time()
    worked: float | None = None
    replies = []
    left: list[_Job] = []
    lost: Exception | None = None
    try:
        with database.group_commit():
            for index, (job_id, fn, args) in enumerate(group):
                try:
                    with database.part():
                        replies.append((job_id, True, fn(database, *args)))
                except Exception as exc:  # sent back and raised in the server
                    if not database.group_intact():
                        # The engine rolled the whole group back (a full disk, an I/O
                        # error): the jobs before this one are gone too.
                        lost = exc
                        raise
                    if isinstance(exc, StoreError) and exc.busy and job_id not in retried:
                        retried.add(job_id)
                        left = group[index:]
                        break
                    replies.append((job_id, False, exc))
            worked = time.perf_counter()
            times.working_cpu += time.process_time() - started_cpu
    except Exception as exc:
        reason = _first_cause(lost if lost is not None else exc)
        failed = [(job_id, False, StorageUnavailable(f"not committed: {reason}"))
                  for job_id, _, _ in group[:len(group) - len(left)]]
        times.jobs += len(failed)
        return failed, left
    finally:
        ended = time.perf_counter()
        times.working += (worked if worked is not None else ended) - started
        times.committing += ended - worked if worked is not None else 0.0
    times.jobs += len(replies)
    return replies, left


def _first_cause(exc: BaseException) -> BaseException:
    """The error that started it (a failed ROLLBACK hides the one that called for it)."""
    while exc.__context__ is not None:
        exc = exc.__context__
    return exc


class WriterProcess:
    """The writer processes and the two threads that talk to each (started on first use).

    `writers` processes, each with its own store connection (PostgreSQL only: see the
    module's docstring); a job given a `device` goes to that device's writer, any other
    to the first."""

    def __init__(self, db_path: str | os.PathLike[str] | None, *,
                 busy_timeout_ms: int | None = None, writers: int = 1) -> None:
        if writers < 1:
            raise ValueError("a server needs at least one writer")
        self.db_path = db_path
        self.busy_timeout_ms = busy_timeout_ms
        self.writers = writers
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._links: list[_Link | None] = [None] * writers

    def writer_of(self, device: str | None) -> int:
        """Which writer takes the jobs of this device (the same one every time)."""
        if device is None or self.writers == 1:
            return 0
        return zlib.crc32(device.encode()) % self.writers

    async def run(self, fn: Callable[..., _T], *args: Any, device: str | None = None) -> _T:
        return await self._run_on(self.writer_of(device), fn, args)

    async def run_on_each(self, fn: Callable[..., _T], *args: Any) -> list[_T]:
        """fn on every writer (which starts those not running yet)."""
        return list(await asyncio.gather(*(self._run_on(n, fn, args)
                                           for n in range(self.writers))))

    async def _run_on(self, n: int, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        loop = asyncio.get_running_loop()
        with self._lock:
            link = self._links[n]
            if link is None or not link.alive:
                link = self._links[n] = _Link(self.db_path, self.busy_timeout_ms)
        future: asyncio.Future[Any] = loop.create_future()
        link.submit(next(self._ids), fn, args, loop, future)
        return await future

    def pid(self, device: str | None = None) -> int | None:
        """The id of the writer process of this device's jobs, while it runs."""
        link = self._links[self.writer_of(device)]
        return link.pid if link is not None and link.alive else None

    def close(self) -> None:
        """Let the writers finish the jobs they were given, then end them."""
        stopped: list[_Link | None] = [None] * self.writers
        with self._lock:
            links, self._links = self._links, stopped
        for link in links:
            if link is not None:
                link.close()


class _Link:
    def __init__(self, db_path: str | os.PathLike[str] | None,
                 busy_timeout_ms: int | None) -> None:
        # forkserver: the writer is forked from a clean, single-threaded process that has
        # deskpulse imported already (forking the threaded server is unsafe; spawn would
        # import everything again at each start).
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["deskpulse.store.sqlite", "deskpulse.server.app"])
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_writer_main, args=(child_end, db_path, busy_timeout_ms),
            name="deskpulse-writer", daemon=True)
        self._process.start()
        child_end.close()
        self.alive = True
        self._pending: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._pending_lock = threading.Lock()
        self._outbox: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._sender = threading.Thread(target=self._send_loop, name="deskpulse-writer-send",
                                        daemon=True)
        self._receiver = threading.Thread(target=self._receive_loop,
                                          name="deskpulse-writer-receive", daemon=True)
        self._sender.start()
        self._receiver.start()

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def submit(self, job_id: int, fn: Callable[..., Any], args: tuple[Any, ...],
               loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any]) -> None:
        with self._pending_lock:
            if not self.alive:
                raise WriterStopped("the database writer process stopped")
            self._pending[job_id] = (loop, future)
        self._outbox.put(pickle.dumps((job_id, fn, args)))

    def _send_loop(self) -> None:
        while True:
            data = self._outbox.get()
            try:
                self._conn.send_bytes(data)
            except (OSError, ValueError):
                self._fail_all()
                return
            if data == _STOP:
                return

    def _receive_loop(self) -> None:
        while True:
            try:
                job_id, ok, value = pickle.loads(self._conn.recv_bytes())
            except (EOFError, OSError, pickle.UnpicklingError):
                self._fail_all()
                return
            with self._pending_lock:
                loop, future = self._pending.pop(job_id)
            loop.call_soon_threadsafe(_settle, future, ok, value)

    def _fail_all(self) -> None:
        with self._pending_lock:
            self.alive = False
            pending, self._pending = self._pending, {}
        for loop, future in pending.values():
            with contextlib.suppress(RuntimeError):  # a loop already closed
                loop.call_soon_threadsafe(
                    _settle, future, False,
                    WriterStopped("the database writer process stopped"))

    def close(self) -> None:
        self._outbox.put(_STOP)
        self._sender.join()
        self._process.join(60)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._receiver.join(10)
        self._conn.close()
        self.alive = False


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)
