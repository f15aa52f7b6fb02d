"""`deskpulse serve`: the app under uvicorn, behind deskpulse.server.guard, which bounds
the connections and the time a request may take to arrive."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections.abc import Callable

import uvicorn

from deskpulse.errors import DeskPulseError
from deskpulse.server.app import create_app
from deskpulse.server.common import log
from deskpulse.server.guard import (
    REQUEST_TIMEOUT_S,
    ConnectionGuard,
    descriptor_limit,
    limits_for,
)
from deskpulse.server.tls import TlsFiles
from deskpulse.store.base import describe_db_target

LISTEN_QUEUE = 2048


def listen(host: str, port: int) -> socket.socket:
    """A listening socket, so that a port in use is a clear error before serving (and
    port 0 picks a free one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeskPulseError(f"cannot listen on {host!r}: {exc}") from exc
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(LISTEN_QUEUE)
    except OSError as exc:
        sock.close()
        hint = " (is another deskpulse serve running?)" if exc.errno == 98 else ""
        raise DeskPulseError(f"cannot listen on {host}:{port}: {exc.strerror}{hint}") from exc
    return sock


class _GuardedServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard,
                 stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self.guard = guard
        self.stopping = stopping

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.attach(asyncio.get_running_loop())
        await super().startup(sockets)
        # asyncio used the backlog both for the kernel's queue and for how many it
        # accepts at once; the queue can be long (it costs no descriptor of ours).
        for sock in sockets or ():
            sock.listen(LISTEN_QUEUE)
        # What is loaded by now (modules, the app, the writers' handles) lives as long as
        # the server: out of the collector's passes, which otherwise walk it all again as
        # requests make garbage (7-8% of serve's CPU under pushes; docs/benchmarks.md, "The
        # PostgreSQL push: less CPU per batch"). Here, in serve alone: a process that makes
        # many apps (the tests) would keep what each freeze caught.
        gc.collect()
        gc.freeze()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.flood.flush()
        # Live dashboards' event streams never end by themselves: end them, or the
        # server would wait for them forever before stopping.
        self.stopping()
        await super().shutdown(sockets)


def serve(db_path: str | os.PathLike[str] | None, host: str = "127.0.0.1", port: int = 8080,
          *, access_log: bool = False, announce: Callable[[str], None] = print,
          api_docs: bool = False, max_connections: int | None = None,
          request_timeout_s: float = REQUEST_TIMEOUT_S, tls: TlsFiles | None = None,
          notify_every_s: float | None = None, writers: int | None = None) -> None:
    """Serve until SIGINT/SIGTERM; requests in flight finish first. max_connections
    (default: what the open-file limit allows, at most 1024) and request_timeout_s bound
    what other clients can hold (deskpulse.server.guard). With tls (checked by
    deskpulse.server.tls.check_tls_files) it serves HTTPS. With notify_every_s, a
    notification pass runs that often in a thread beside it (deskpulse.notify.background).
    writers: the writer processes (default: server.app.WRITERS of the engine)."""
    limits = limits_for(max_connections, request_timeout_s)
    app = create_app(db_path, api_docs=api_docs, writers=writers)
    sock = listen(host, port)
    # Refusals go to stderr beside uvicorn's lines, so a manager sees a misconfigured kiosk.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    scheme = "http" if tls is None else "https"
    announce(f"deskpulse serve: listening on {scheme}://{shown_host}:{bound_port} "
             f"(database {describe_db_target(db_path)})")
    log.info("at most %d connections at once (open-file limit %d); a request must arrive "
             "within %g s", limits.max_connections, descriptor_limit(),
             limits.request_timeout_s)
    guard = ConnectionGuard(limits)
    config = uvicorn.Config(app, http=guard.protocol_class(), ws="none", lifespan="on",
                            access_log=access_log, log_level="info", server_header=False,
                            proxy_headers=False, backlog=limits.backlog,
                            ssl_certfile=None if tls is None else tls.certfile,
                            ssl_keyfile=None if tls is None else tls.keyfile,
                            timeout_keep_alive=limits.keep_alive_s)  # type: ignore[arg-type]
    notifier = None
    if notify_every_s is not None:
        from deskpulse.notify.background import NotifyRunner
        from deskpulse.notify.weekly import SMTP_ENV

        notifier = NotifyRunner(db_path, notify_every_s,
                                digest_sender=os.environ.get(SMTP_ENV) or None)
        notifier.start()
    try:
        _GuardedServer(config, guard, app.state.deskpulse.live.close).run(sockets=[sock])
    finally:
        sock.close()
        if notifier is not None:
            notifier.stop()
