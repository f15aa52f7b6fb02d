"""The dashboard's reads, in a process of their own beside the writer (docs/dashboard.md).

A report over millions of responses takes a few hundred milliseconds of store and numpy
work. In the writer process (server/writer.py) it would hold up every push queued behind
it and run inside the writer's write transaction; in a thread of the server it would take
the GIL from the event loop that answers the kiosks. So the dashboard's reads go to a
reader process with its own store connection: `await reader.run(fn, *args)` calls
fn(store, *args) there (fn a module-level function, its arguments and result pickled, as
with the writer). SQLite in WAL mode and PostgreSQL both let it read while the writer
writes; each call sees what was committed when it starts.

If the reader dies (killed, out of memory), the calls in flight fail with ReaderStopped
and the next call starts a new one.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from deskpulse.errors import DeskPulseError
from deskpulse.store import open_store
from deskpulse.store.base import Store

_T = TypeVar("_T")

_store: Store | None = None  # the reader process's one connection


class ReaderStopped(DeskPulseError):
    """The reader process died before answering."""


def _open(db_path: str | os.PathLike[str] | None) -> None:
    global _store
    # Ctrl-C reaches the whole process group: the reader ends when the server shuts it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _store = open_store(db_path, create=False)


def _call(fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
    if _store is None:
        raise ReaderStopped("the reader process has no store")
    return fn(_store, *args)


class ReaderProcess:
    """Reads in `workers` processes (started on first use), one job at a time each."""

    def __init__(self, db_path: str | os.PathLike[str] | None, *, workers: int = 1) -> None:
        self.db_path = db_path
        self.workers = workers
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _current(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                # forkserver, as the writer: forking the threaded server is unsafe.
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self.workers, mp_context=context,
                                                 initializer=_open, initargs=(self.db_path,))
            return self._pool

    async def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        pool = self._current()
        try:
            return await asyncio.wrap_future(pool.submit(_call, fn, args))
        except BrokenProcessPool as exc:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise ReaderStopped("the dashboard's reader process stopped") from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
