"""The aggregator that kiosks on the store WiFi push to (docs/wifi.md): the ASGI app
(FastAPI), with one router per area (ROUTERS) and what they share in common.py.

All store work runs in one writer process (deskpulse.server.writer): the event loop never
waits on the disk, and the server's writes queue there instead of contending for the
store's write lock (other programs, such as a serial sync, still meet its busy timeout).
Storage that cannot take a push right now (a lock held past the busy timeout, a full
disk, an I/O error, the writer gone) is answered 503 with Retry-After: the kiosk's fault
is 4xx only. `deskpulse serve` runs it (run.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from deskpulse import installed_version
from deskpulse.server import accounts, dashboard, health, live, ota, push, refusals
from deskpulse.server.common import ServerState, error_response, log
from deskpulse.server.guard import REPORT_INTERVAL_S, FloodLog
from deskpulse.server.reader import ReaderProcess
from deskpulse.server.writer import WriterProcess
from deskpulse.store import open_store
from deskpulse.store.base import parse_db_target

ROUTERS = (health.router, push.router, ota.router, accounts.router, dashboard.router)
"""One router per area; a new area adds its module here (docs/architecture.md)."""

WRITERS = {"sqlite": 1, "postgresql": 2}
"""Writer processes per server (server/writer.py): on PostgreSQL two, so that one writer's
Python runs while the database server works on the other's statements; SQLite has one
write lock."""


def create_app(db_path: str | os.PathLike[str] | None = None, *, api_docs: bool = False,
               busy_timeout_ms: int | None = None,
               clock: Callable[[], float] = time.time,
               refusal_interval_s: float = refusals.INTERVAL_S,
               writers: int | None = None) -> FastAPI:
    """The aggregator's ASGI app on the database at db_path (None: the default one).
    The database is opened (and migrated) here, so a bad path fails before serving.

    api_docs serves /docs, /redoc and /openapi.json (the interactive pages load their
    scripts from a CDN, so they are off unless asked for). busy_timeout_ms replaces the
    writer's busy timeout; clock is the server's time; refused pushes are written to the
    store at most every refusal_interval_s seconds (server/refusals.py). writers: the
    writer processes (default: WRITERS of the engine)."""
    open_store(db_path).close()
    database = WriterProcess(db_path, busy_timeout_ms=busy_timeout_ms,
                             writers=writers or WRITERS[parse_db_target(db_path)[0]])
    reader = ReaderProcess(db_path)
    broadcaster = live.Broadcaster()
    version = installed_version() or "unknown"
    gone = FloodLog(log, REPORT_INTERVAL_S, logging.INFO,
                    {"gone": "clients that closed the connection in the middle of a push"})

    keys = push.KeyCache(database)
    recorder = refusals.RefusalRecorder(database, interval_s=refusal_interval_s, clock=clock,
                                        registered=keys.known)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The writers are up before the first push.
        await database.run_on_each(health.schema_version)
        # The poll of other processes' syncs is one cheap query: through the writer, so
        # that it never waits behind a long report in the reader.
        async with live.watching(broadcaster, database.run):
            yield
        await recorder.flush()
        broadcaster.close()
        reader.close()
        database.close()

    app = FastAPI(
        title="DeskPulse aggregator", version=version, lifespan=lifespan,
        description="Kiosks on the store WiFi push their responses here (docs/wifi.md).",
        docs_url="/docs" if api_docs else None, redoc_url="/redoc" if api_docs else None,
        openapi_url="/openapi.json" if api_docs else None)
    app.state.deskpulse = ServerState(database, keys, push.ServerClock(clock), version, gone,
                                      recorder, reader, broadcaster)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, "malformed request")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("push failed: %s", type(exc).__name__, exc_info=exc)
        return error_response(500, "internal error; nothing was acknowledged, retry later")

    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", dashboard.static_files(), name="static")
    return app
