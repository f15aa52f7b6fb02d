"""Live dashboards: who is told that a push was stored (GET /events, docs/dashboard.md).

The push route calls `Broadcaster.notify(device_id)` after its commit: a set insert, so a
push costs nothing more however many dashboards are open. Changes are gathered and sent
at most every `interval_s` (a burst of pushes is one event per dashboard), each
subscriber getting only the kiosks in its site's subtree, and only when there are any.
A subscriber whose bounded queue is full (a dashboard that stopped reading) is dropped
rather than slowing anyone down: its browser reconnects and refetches.

Another `serve` process on the same database stores pushes this one never sees, and a
serial `deskpulse sync` stores syncs no server sees: `watch_syncs` polls the store's
newest sync id every `poll_s` (one indexed query per process, however many dashboards),
and announces the syncs it did not hear about from this process's own push route. Ids it
saw skipped are asked for again for a while (`SyncCursor`): on PostgreSQL a push that
took its id first can commit after one that took a later id.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from deskpulse.store import sites as site_rules
from deskpulse.store.base import Store

log = logging.getLogger("deskpulse.serve")

INTERVAL_S = 0.5
"""At most one event per dashboard this often: a busy chain's pushes arrive every few ms."""
QUEUE_EVENTS = 16
"""Events a dashboard may fall behind by (8 s at INTERVAL_S) before it is dropped."""
POLL_S = 1.0
RECENT_S = 5.0
"""A sync the poll finds for a kiosk this process announced within this many seconds is
taken for that push, not announced twice."""
POLL_ROWS = 10_000
GAP_WAIT_S = 30.0
"""How long the poll keeps looking for a sync id it saw skipped. On PostgreSQL a push takes
its id before it commits, so a later id can be visible first; an id still missing after
this was rolled back (or is a sequence value never used), since a push commits in ms."""
MAX_GAPS = 1_000
PLACES_EVERY_S = 10.0
"""How often the kiosks' sites are read again (an assignment shows within this time)."""
MAX_SUBSCRIBERS = 512
"""Open dashboards at most: each holds a connection, and kiosks must still get theirs."""


@dataclass(eq=False)
class Subscription:
    scope: str | None  # the viewer's site path; None: every kiosk
    queue: asyncio.Queue[str | None] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_EVENTS))

    async def next_event(self, timeout: float) -> str | None:
        """The next event's data (JSON: {"devices": [...], "sites": [...]}); "" after
        `timeout` seconds without one (time for a keep-alive); None once the
        subscription is closed (dropped, or the server stopping)."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return ""


class TooManySubscribers(Exception):
    pass


class Broadcaster:
    """Runs on the server's event loop."""

    def __init__(self, *, interval_s: float = INTERVAL_S,
                 max_subscribers: int = MAX_SUBSCRIBERS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = interval_s
        self.max_subscribers = max_subscribers
        self.clock = clock
        self.subscribers: set[Subscription] = set()
        self.places: dict[str, str] = {}  # device_id -> its store's path
        self.memo: dict[Any, Any] = {}
        """What pages computed from the stored figures (the overview of each scope), kept
        until the next flush with changes: many dashboards of one site, told of one push,
        cost one computation."""
        self.dropped = 0
        self._changed: set[str] = set()
        self._recent: dict[str, float] = {}  # device_id -> when this process announced it
        self._flush: asyncio.TimerHandle | None = None
        self._closed = False

    # -- subscribers --------------------------------------------------------------------

    def subscribe(self, scope: str | None) -> Subscription:
        if self._closed or len(self.subscribers) >= self.max_subscribers:
            raise TooManySubscribers(f"{len(self.subscribers)} live dashboards already open")
        subscription = Subscription(scope)
        self.subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)

    def close(self) -> None:
        """End every stream (the server is stopping: open streams would hold it up)."""
        self._closed = True
        if self._flush is not None:
            self._flush.cancel()
        for subscription in list(self.subscribers):
            self._end(subscription)

    def _end(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        while True:  # make room for the end mark
            try:
                subscription.queue.put_nowait(None)
                return
            except asyncio.QueueFull:
                subscription.queue.get_nowait()

    # -- changes ------------------------------------------------------------------------

    def notify(self, device_ids: Iterable[str], *, local: bool = True) -> None:
        """Kiosks whose push or sync was committed (`local`: by this process's push route)."""
        now = self.clock()
        for device_id in device_ids:
            self._changed.add(device_id)
            if local:
                self._recent[device_id] = now
        if self._changed and self._flush is None and not self._closed:
            self._flush = asyncio.get_running_loop().call_later(self.interval_s, self.flush)

    def heard_lately(self, device_id: str) -> bool:
        at = self._recent.get(device_id)
        return at is not None and self.clock() - at < RECENT_S

    def flush(self) -> None:
        """Send the changes gathered since the last flush: to each subscriber the kiosks in
        its subtree, grouped by the site one level below it."""
        self._flush = None
        changed, self._changed = self._changed, set()
        if not changed:
            return
        self.memo.clear()
        now = self.clock()
        self._recent = {d: at for d, at in self._recent.items() if now - at < RECENT_S}
        # Each kiosk under every site above it: a subscriber's share is one lookup.
        under: dict[str | None, list[str]] = {None: sorted(changed)}
        for device_id in under[None]:
            store = self.places.get(device_id)
            for site in site_rules.ancestors(store) if store else ():
                under.setdefault(site, []).append(device_id)
        encoded: dict[str | None, str] = {}  # one encoding per site, however many viewers
        for subscription in list(self.subscribers):
            scope = subscription.scope
            devices = under.get(scope)
            if not devices:
                continue
            event = encoded.get(scope)
            if event is None:
                event = encoded[scope] = json.dumps(
                    {"devices": devices, "sites": self._sites_below(scope, devices)},
                    separators=(",", ":"))
            try:
                subscription.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.dropped += 1
                log.info("dropped a live dashboard that stopped reading its events")
                self._end(subscription)

    def _sites_below(self, scope: str | None, devices: list[str]) -> list[str]:
        """The sites one level below `scope` that the devices are in (a store's: none)."""
        out = set()
        for device_id in devices:
            store = self.places.get(device_id)
            if store is not None and store != scope:
                out.add(site_rules.child_towards(scope, store))
        return sorted(out)


# -- the poll -------------------------------------------------------------------------------


def newest_mark(store: Store) -> int:
    marks = store.sync_marks(None, 1)
    return marks[0][0] if marks else 0


def marks_after(store: Store, after: int, limit: int, among: list[int]
                ) -> list[tuple[int, str]]:
    return store.sync_marks(after, limit, among)


@dataclass
class SyncCursor:
    """What the poll has seen: every sync up to `last` but the `gaps` (skipped id -> when
    first skipped), which are asked for again until they appear or GAP_WAIT_S passes."""

    last: int
    gaps: dict[int, float] = field(default_factory=dict)

    def take(self, marks: list[tuple[int, str]], now: float) -> list[str]:
        """The devices of the marks not seen before; the cursor moves past them."""
        devices = []
        for sync_id, device_id in marks:
            if sync_id > self.last:
                for skipped in range(max(self.last + 1, sync_id - MAX_GAPS), sync_id):
                    self.gaps.setdefault(skipped, now)
                self.last = sync_id
                devices.append(device_id)
            elif self.gaps.pop(sync_id, None) is not None:
                devices.append(device_id)
        for sync_id in [i for i, since in self.gaps.items() if now - since > GAP_WAIT_S]:
            del self.gaps[sync_id]
        for sync_id in sorted(self.gaps)[:-MAX_GAPS]:
            del self.gaps[sync_id]
        return devices


def kiosk_places(store: Store) -> dict[str, str]:
    return store.kiosk_sites()


Run = Callable[..., Awaitable[Any]]


async def watch_syncs(broadcaster: Broadcaster, run: Run, *, poll_s: float = POLL_S,
                      places_every_s: float = PLACES_EVERY_S) -> None:
    """Announce the syncs other processes stored (run: a store call, e.g. a reader's)."""
    cursor: SyncCursor | None = None
    places_at = float("-inf")
    while True:
        try:
            if broadcaster.clock() - places_at >= places_every_s:
                broadcaster.places = await run(kiosk_places)
                places_at = broadcaster.clock()
            if cursor is None:
                cursor = SyncCursor(await run(newest_mark))
            else:
                marks = await run(marks_after, cursor.last, POLL_ROWS, sorted(cursor.gaps))
                devices = cursor.take(marks, broadcaster.clock())
                if devices:
                    foreign = {d for d in devices if not broadcaster.heard_lately(d)}
                    broadcaster.notify(foreign, local=False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store is away for a moment: try again later
            log.warning("live dashboards: cannot read new syncs: %s", exc)
        await asyncio.sleep(poll_s)


@contextlib.asynccontextmanager
async def watching(broadcaster: Broadcaster, run: Run, **options: Any
                   ) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(watch_syncs(broadcaster, run, **options))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
