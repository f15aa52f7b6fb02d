"""What keeps `deskpulse serve` open to the kiosks when other clients hold connections
(docs/wifi.md, "Server limits"): a cap on open connections derived from the descriptor
limit, deadlines for a request's head and body, and a log that reports a flood once per
interval instead of once per connection.

uvicorn bounds neither the number of connections (its limit_concurrency answers 503 but
keeps the socket) nor the time a request head may take, and asyncio logs a traceback for
every failed accept() once descriptors run out. So the server speaks HTTP through a
subclass of uvicorn's httptools protocol that reports each connection's phase to one
ConnectionGuard:

- QUIET: connected (or kept alive after an answer) and no byte of a request yet;
- HEAD: part of a request head arrived;
- BODY: the head is complete, the body is still arriving;
- BUSY: the request is complete and the app works on it (or its answer is being sent).

Over the cap, a new connection displaces the one that has waited longest without
completing a request head (QUIET or HEAD, by the time it connected or was kept alive),
else the oldest BODY one; a BUSY one is never dropped. So under a flood every connection
gets the same window (the cap's worth of newer connections) to send its request, which a
kiosk, sending its request at once, needs a few milliseconds for; the flood's connections
go as fast as they come. Only when every connection is BUSY is a new one closed at once.

A request's head must be complete within `request_timeout_s` of the connection (of its
first byte on a kept-alive connection), and its body within `request_timeout_s` plus its
length at `body_min_rate` bytes per second; then the connection is cut.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from deskpulse.errors import DeskPulseError
from deskpulse.protocol.signing import MAX_BODY

try:
    import resource
except ImportError:  # not on Windows
    resource = None  # type: ignore[assignment]

log = logging.getLogger("deskpulse.serve")

QUIET, HEAD, BODY, BUSY = range(4)
_POOL = (0, 0, 1, None)  # which pool of droppable connections a phase is in
MAX_HEAD_BYTES = 32 * 1024
"""A request head longer than this is cut off (a kiosk's is about 300 bytes)."""
MAX_CONNECTIONS = 1024
"""Never more, whatever the descriptor limit: a store has tens of kiosks."""
REQUEST_TIMEOUT_S = 10.0
BODY_MIN_RATE = 1024
"""Bytes per second a body must average after the head's deadline allowance."""
KEEP_ALIVE_S = 5.0
REPORT_INTERVAL_S = 60.0
_FIXED_DESCRIPTORS = 32  # stdio, the listening socket, epoll, the writer's pipe, logs


def descriptor_limit() -> int:
    """The soft RLIMIT_NOFILE of this process (1024 where it cannot be read)."""
    if resource is None:
        return 1024
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else int(soft)


def accept_batch(limit: int) -> int:
    """How many connections asyncio accepts in one go (also the listen backlog): each of
    them holds a descriptor before the guard sees it."""
    return max(8, min(64, limit // 16))


def connection_cap(limit: int) -> int:
    """The most connections that fit under a descriptor limit, leaving room for the fixed
    descriptors and for a few accept batches in flight (a displaced connection's socket
    closes a loop turn or two after the one that displaced it was accepted)."""
    room = limit - _FIXED_DESCRIPTORS - 4 * accept_batch(limit)
    return max(8, min(MAX_CONNECTIONS, room))


@dataclass(frozen=True, slots=True)
class Limits:
    max_connections: int
    backlog: int
    request_timeout_s: float = REQUEST_TIMEOUT_S
    body_min_rate: int = BODY_MIN_RATE
    keep_alive_s: float = KEEP_ALIVE_S
    report_interval_s: float = REPORT_INTERVAL_S

    def body_deadline_s(self, length: int) -> float:
        return self.request_timeout_s + length / self.body_min_rate


def limits_for(max_connections: int | None = None,
               request_timeout_s: float = REQUEST_TIMEOUT_S) -> Limits:
    """The limits under this process's descriptor limit; an explicit max_connections
    above what fits is refused with a sentence saying how to raise the limit."""
    if not request_timeout_s > 0:
        raise DeskPulseError("--request-timeout must be a positive number of seconds")
    limit = descriptor_limit()
    fits = connection_cap(limit)
    if max_connections is None:
        max_connections = fits
    elif not 1 <= max_connections <= fits:
        raise DeskPulseError(
            f"--max-connections {max_connections}: use 1-{fits}; the open-file limit of "
            f"{limit} allows no more (raise it with `ulimit -n` or systemd's LimitNOFILE=)")
    return Limits(max_connections, accept_batch(limit), request_timeout_s,
                  keep_alive_s=min(KEEP_ALIVE_S, request_timeout_s))


class FloodLog:
    """Logs the first event of a kind at once; the events that follow within the
    interval are counted and logged as one line when it ends (and so on while they go
    on). Runs on the event loop."""

    def __init__(self, logger: logging.Logger, interval_s: float, level: int,
                 names: dict[str, str]) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._level = level
        self._names = names
        self._counts: collections.Counter[str] = collections.Counter()
        self._timer: asyncio.TimerHandle | None = None

    def note(self, kind: str, first: str) -> None:
        if self._timer is not None:
            self._counts[kind] += 1
            return
        self._logger.log(self._level, "%s (more are counted and reported every %g s)",
                         first, self._interval_s)
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._report)

    def flush(self) -> None:
        """Log what was counted so far (the server is stopping)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._counts:
            self._logger.log(self._level, "before stopping: %s", self._counted())

    def _report(self) -> None:
        self._timer = None
        if not self._counts:
            return
        self._logger.log(self._level, "in the last %g s: %s", self._interval_s,
                         self._counted())
        self._timer = asyncio.get_running_loop().call_later(self._interval_s, self._report)

    def _counted(self) -> str:
        parts = ", ".join(f"{count} {self._names[kind]}"
                          for kind, count in sorted(self._counts.items()))
        self._counts.clear()
        return parts


_ACCEPT_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


class ConnectionGuard:
    """The open connections of one server and the order in which they give way."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.open = 0
        # Droppable connections, oldest first: those without a complete request head
        # (QUIET, HEAD), then those whose body is arriving (BODY).
        self._pools: tuple[dict[Guarded, None], ...] = ({}, {})
        self.flood = FloodLog(log, limits.report_interval_s, logging.WARNING, {
            "room": "connections dropped to make room",
            "refused": "connections refused (every connection busy)",
            "deadline": "connections cut at the request deadline",
            "head": "connections cut for a request head over "
                    f"{MAX_HEAD_BYTES} bytes",
            "accept": "failed accepts (out of descriptors)",
        })

    def protocol_class(self) -> type[Guarded]:
        """uvicorn's `http` setting: the guarded protocol bound to this guard."""
        return type("GuardedHttpToolsProtocol", (Guarded,), {"guard": self})

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Count failed accepts instead of letting asyncio log a traceback for each."""
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if (isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRORS
                    and "accept" in str(context.get("message", ""))):
                self.flood.note("accept", f"cannot accept a connection: {exc.strerror}; "
                                "new connections wait")
            elif previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    # -- called by the protocol ----------------------------------------------------------

    def admit(self, conn: Guarded) -> None:
        if self.open >= self.limits.max_connections:
            victim = self._oldest()
            if victim is None:
                conn.transport.abort()
                self.flood.note("refused", f"all {self.limits.max_connections} connections "
                                "are busy: new connections are closed at once")
                return
            self.drop(victim, "room", f"{self.limits.max_connections} connections open: "
                      "the oldest idle or slow ones are dropped to make room")
        self.open += 1
        conn.admitted = True
        self.enter(conn, QUIET, self.limits.request_timeout_s)

    def enter(self, conn: Guarded, phase: int, deadline_s: float | None = None) -> None:
        """Move conn to phase, with a deadline in deadline_s (None: none)."""
        if not conn.admitted:
            return
        pool = _POOL[phase]
        old = _POOL[conn.phase]
        if old != pool:
            if old is not None:
                self._pools[old].pop(conn, None)
            if pool is not None:
                self._pools[pool][conn] = None  # the youngest of its pool
        conn.phase = phase
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None
        if deadline_s is not None:
            conn.deadline = conn.loop.call_later(deadline_s, self._expire, conn)

    def release(self, conn: Guarded) -> None:
        """conn is closed or closing: its place is free."""
        if not conn.admitted:
            return
        conn.admitted = False
        self.open -= 1
        pool = _POOL[conn.phase]
        if pool is not None:  # a BUSY connection is in no pool
            self._pools[pool].pop(conn, None)
        if conn.deadline is not None:
            conn.deadline.cancel()
            conn.deadline = None

    def drop(self, conn: Guarded, kind: str, first: str) -> None:
        self.release(conn)
        conn.transport.abort()
        self.flood.note(kind, first)

    def _oldest(self) -> Guarded | None:
        for pool in self._pools:
            for conn in pool:
                return conn
        return None

    def _expire(self, conn: Guarded) -> None:
        conn.deadline = None
        if conn.admitted and conn.phase < BUSY:
            limits = self.limits
            self.drop(conn, "deadline", f"a client was cut off at the request deadline "
                      f"(the head within {limits.request_timeout_s:g} s, the body at "
                      f"{limits.body_min_rate} bytes/s after that)")


class Guarded(HttpToolsProtocol):
    """uvicorn's httptools protocol, telling its guard which phase it is in."""

    guard: ConnectionGuard  # set by ConnectionGuard.protocol_class

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.admitted = False
        self.phase = BUSY  # in no pool until admitted
        self.deadline: asyncio.TimerHandle | None = None
        self._kept_alive = False  # QUIET after an answer, not since connecting
        self._head_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.guard.admit(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.guard.release(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.phase == QUIET:
            # A kept-alive connection's next request gets its own deadline; a new
            # connection's first request keeps the one armed when it connected.
            again = self._kept_alive
            self._kept_alive = False
            self.guard.enter(self, HEAD, self.guard.limits.request_timeout_s if again
                             else _remaining(self))
        if self.phase == HEAD:
            self._head_bytes += len(data)
        super().data_received(data)
        if (self.phase == HEAD and self._head_bytes > MAX_HEAD_BYTES and self.admitted
                and not self.transport.is_closing()):
            self.guard.drop(self, "head", f"a request head over {MAX_HEAD_BYTES} bytes: "
                            "connection cut")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._head_bytes = 0
        self.guard.enter(self, BODY, self.guard.limits.body_deadline_s(_declared(self)))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self.cycle is not None and not self.cycle.response_complete:
            self.guard.enter(self, BUSY)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:  # a pipelined request
            if cycle.more_body:
                self.guard.enter(self, BODY, self.guard.limits.body_deadline_s(MAX_BODY))
            else:
                self.guard.enter(self, BUSY)
        else:
            self._kept_alive = True
            self.guard.enter(self, QUIET)  # uvicorn's keep-alive timeout closes it


def _remaining(conn: Guarded) -> float | None:
    deadline = conn.deadline
    if deadline is None:
        return None
    return max(0.0, deadline.when() - conn.loop.time())


def _declared(conn: Guarded) -> int:
    for name, value in conn.headers or ():
        if name == b"content-length" and value.isdigit() and len(value) < 12:
            return int(value)
    return 0
