"""Refused pushes, recorded in the store (device health, issue 17) without letting a flood
of bad pushes become a flood of writes.

Each refusal is counted in memory under (the device id as the request claimed it, the
reason, the hour); the counts go to the store through the writer process in ONE job at
most every `interval_s` seconds, whatever the number of refusals meanwhile. What memory
holds is bounded too: at most `max_pending` keys; a refusal under a further id that is no
registered kiosk's (KeyCache) is counted under health.UNKNOWN_OTHERS. The store bounds the
rows of unknown ids per hour again (store/health.py), since one write may come from many
intervals' worth of ids. A write that fails (the store unavailable) is logged and its
counts dropped: the server's log still has each refusal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
from deskpulse.server.common import log
from deskpulse.server.writer import WriterProcess
from deskpulse.store import health
from deskpulse.store.base import Store
from deskpulse.store.health import RefusalCount

INTERVAL_S = 10.0
"""Seconds between two writes of refusal counts at most."""
MAX_PENDING = 1000
"""(id, reason, hour) keys held in memory between two writes at most."""


def record_refusals(store: Store, counts: list[RefusalCount], now: float) -> None:
    """The writer's job."""
    store.record_refusals(counts, now=now)


class RefusalRecorder:
    """Counts refusals on the event loop and writes them through the writer process."""

    def __init__(self, database: WriterProcess, *, interval_s: float = INTERVAL_S,
                 max_pending: int = MAX_PENDING, clock: Callable[[], float] = time.time,
                 registered: Callable[[str], bool] = lambda device_id: False) -> None:
        self._database = database
        self._interval_s = interval_s
        self._max_pending = max_pending
        self._clock = clock
        self._registered = registered
        self._pending: dict[tuple[str, str, int], RefusalCount] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._writing: asyncio.Task[None] | None = None
        self.writes = 0
        """Jobs sent to the writer so far (tests and benchmarks count them)."""

    def note(self, device_id: str, status: int, message: str) -> None:
        """A push refused with this status: counted, and written within interval_s. A
        status that is not the kiosk's fault (503) and an id no kiosk may have are not
        recorded (the log has them)."""
        reason = health.REASONS.get(status)
        if reason is None or not signing.DEVICE_ID.fullmatch(device_id):
            return
        at = self._clock()
        hour = health.hour_of(at)
        key = (device_id, reason, hour)
        if (key not in self._pending and len(self._pending) >= self._max_pending
                and not self._registered(device_id)):
            key = (health.UNKNOWN_OTHERS, reason, hour)
        old = self._pending.get(key)
        self._pending[key] = RefusalCount(*key, (old.count if old else 0) + 1, int(at),
                                          health.clipped(message))
        if self._timer is None and self._writing is None:
            self._timer = asyncio.get_running_loop().call_later(self._interval_s,
                                                                self._start_write)

    @property
    def pending(self) -> int:
        """Keys waiting for the next write."""
        return len(self._pending)

    def _start_write(self) -> None:
        self._timer = None
        self._writing = asyncio.get_running_loop().create_task(self._write_and_rearm())

    async def _write_and_rearm(self) -> None:
        try:
            await self._write()
        finally:
            self._writing = None
        if self._pending:  # noted while writing: the next write after one more interval
            self._timer = asyncio.get_running_loop().call_later(self._interval_s,
                                                                self._start_write)

    async def _write(self) -> None:
        counts = list(self._pending.values())
        self._pending.clear()
        if not counts:
            return
        self.writes += 1
        try:
            await self._database.run(record_refusals, counts, self._clock())
        except DeskPulseError as exc:
            log.warning("%d counts of refused pushes not recorded: %s", len(counts), exc)

    async def flush(self) -> None:
        """Write what is counted now (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._writing is not None:
            await self._writing
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        await self._write()
