"""What the server's routers share: the state create_app() builds, refusals and their JSON
error bodies (a 503 always carries Retry-After)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from deskpulse.protocol import signing
from deskpulse.server.guard import FloodLog
from deskpulse.server.writer import WriterProcess

if TYPE_CHECKING:
    from deskpulse.server.live import Broadcaster
    from deskpulse.server.push import KeyCache, ServerClock
    from deskpulse.server.reader import ReaderProcess
    from deskpulse.server.refusals import RefusalRecorder

log = logging.getLogger("deskpulse.serve")

RETRY_AFTER_S = 30
"""Retry-After of a 503: storage comes back (a lock is released, space is freed) on a
scale of seconds to minutes; the kiosk keeps it within its own backoff bounds."""


@dataclass(frozen=True, slots=True)
class ServerState:
    """One app's shared parts (app.state.deskpulse): routers get it with Depends(state)."""

    database: WriterProcess  # every store call goes through the one writer process
    keys: KeyCache
    clock: ServerClock
    version: str
    gone: FloodLog  # clients that hung up mid-push, said in summary lines
    refusals: RefusalRecorder  # refused pushes, counted into the store (device health)
    reader: ReaderProcess  # the dashboard's reads, beside the writer (server/reader.py)
    live: Broadcaster  # the live dashboards told of each push (server/live.py)


def server_of(request: Request) -> ServerState:
    return request.app.state.deskpulse  # type: ignore[no-any-return]


async def state(request: Request) -> ServerState:
    """The dependency (Depends(state)). A coroutine: FastAPI runs a plain function in a
    worker thread, a hand-off between threads in every request (docs/benchmarks.md, "The
    PostgreSQL push: less CPU per batch")."""
    return server_of(request)


class Refusal(Exception):
    """A push answered with a 4xx (or 503) and nothing stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong; nothing was stored")


def error_response(status: int, message: str, headers: dict[str, str] | None = None
                   ) -> JSONResponse:
    if status == 503:
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


ERRORS = {
    400: "malformed: body not `JSON line \\n batch`, bad JSON or batch encoding, missing "
         "or malformed nonce or signature header, bad device id",
    401: "the signature does not match (wrong key, another device's id, a changed body "
         "or path)",
    404: "no such device registered (deskpulse devices add)",
    409: "nonce not higher than the last accepted one (a replay): push again with a "
         "higher nonce",
    411: "no Content-Length",
    413: f"body over {signing.MAX_BODY} bytes",
    415: f"Content-Type is not {signing.CONTENT_TYPE}",
    422: "records that clash with stored ones under the same (device, seq): the device's "
         "log was renumbered and needs a new device id",
    503: "the database is not available right now (locked, full, failing, restarting); "
         "nothing was stored: retry after Retry-After seconds",
}
RETRY_AFTER_DOC = {"Retry-After": {
    "description": "seconds to wait before retrying", "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"}}}
