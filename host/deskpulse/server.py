"""`deskpulse serve`: the aggregator that kiosks on the store WiFi push to (docs/wifi.md).

An ASGI app (FastAPI) served by uvicorn. A push is checked from the cheapest test to the
dearest (content type, length, headers, then the body, read with a bound, its signature,
its encoding) and stored by `db.store_batch` in one transaction whose guard checks and
advances the device's nonce; only after the commit is the signed answer sent. Any refusal
stores nothing, and no key or signature is ever written to a log.

All SQLite work runs in one writer process that owns the server's connection
(deskpulse.writer): the event loop never waits on the disk, and the server's writes queue
there instead of contending for SQLite's write lock (other programs, such as a serial
sync, still meet the busy timeout of db.connect). Storage that cannot take a push right
now (a lock held past the busy timeout, a full disk, an I/O error, the writer gone) is
answered 503 with Retry-After: the kiosk's fault is 4xx only.

`serve` runs the app under uvicorn behind deskpulse.serve_guard, which bounds the
connections and the time a request may take to arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from deskpulse import db, installed_version, signing
from deskpulse.batch import (
    RECEIPT_SOURCE,
    Anchor,
    BatchError,
    clock_is_plausible,
    decode_batch,
    parse_anchor,
)
from deskpulse.batch import Response as KioskResponse
from deskpulse.errors import DeskPulseError
from deskpulse.serve_guard import (
    REPORT_INTERVAL_S,
    REQUEST_TIMEOUT_S,
    ConnectionGuard,
    FloodLog,
    descriptor_limit,
    limits_for,
)
from deskpulse.writer import StorageUnavailable, WriterProcess

log = logging.getLogger("deskpulse.serve")

MAX_BATCH_BYTES = 4096
"""The batch part of a push (docs/wifi.md); the whole body is bounded by MAX_BODY."""
RETRY_AFTER_S = 30
"""Retry-After of a 503: storage comes back (a lock is released, space is freed) on a
scale of seconds to minutes; the kiosk keeps it within its own backoff bounds."""
LISTEN_QUEUE = 2048
_T = TypeVar("_T")


class Refusal(Exception):
    """A push answered with a 4xx (or 503) and nothing stored."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:  # raised in the writer process, re-raised here
        return (Refusal, (self.status, self.message))


def _lookup_key(conn: sqlite3.Connection, device_id: str) -> bytes | None:
    row = conn.execute("SELECT key FROM device_keys WHERE device_id = ?",
                       (device_id,)).fetchone()
    return None if row is None else bytes(row[0])


class KeyCache:
    """Device keys kept in memory so that a push costs one trip to the database thread.
    A stale entry is harmless: the store's guard re-reads the key in its transaction,
    and a signature that fails under a cached key is checked again under a fresh one."""

    def __init__(self, database: WriterProcess) -> None:
        self.database = database
        self._keys: dict[str, bytes] = {}

    async def get(self, device_id: str) -> bytes | None:
        key = self._keys.get(device_id)
        return key if key is not None else await self.reload(device_id)

    async def reload(self, device_id: str) -> bytes | None:
        key = await self.database.run(_lookup_key, device_id)
        if key is None:
            self._keys.pop(device_id, None)
        else:
            self._keys[device_id] = key
        return key

    def forget(self, device_id: str) -> None:
        self._keys.pop(device_id, None)


# -- checking a push ----------------------------------------------------------------------


def check_headers(headers: Any) -> tuple[signing.Nonce, str, str]:
    """(nonce, nonce as sent, signature) once content type, length and auth headers pass.
    The length is checked before any byte of the body is read."""
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != signing.CONTENT_TYPE:
        raise Refusal(415, f"Content-Type must be {signing.CONTENT_TYPE}")
    length_text = headers.get("content-length")
    if length_text is None:
        raise Refusal(411, "a push needs a Content-Length header (no chunked bodies)")
    if not length_text.isdigit() or len(length_text) > 12:
        raise Refusal(400, "Content-Length is not a whole number")
    if int(length_text) > signing.MAX_BODY:
        raise Refusal(413, f"the body is over {signing.MAX_BODY} bytes")
    nonce_text = headers.get("x-deskpulse-nonce")
    if nonce_text is None:
        raise Refusal(400, "the X-DeskPulse-Nonce header is missing")
    try:
        nonce = signing.parse_nonce(nonce_text)
    except DeskPulseError as exc:
        raise Refusal(400, str(exc)) from exc
    signature = headers.get("x-deskpulse-signature")
    if signature is None:
        raise Refusal(400, "the X-DeskPulse-Signature header is missing")
    if len(signature) != 64 or any(c not in "0123456789abcdef" for c in signature):
        raise Refusal(400, "X-DeskPulse-Signature must be 64 lowercase hex digits")
    return nonce, nonce_text, signature


class ClientGone(Exception):
    """The client closed the connection before its body arrived: nobody to answer."""


async def read_body(request: Request, declared: int) -> bytes:
    """The body, read chunk by chunk and never beyond MAX_BODY bytes, whatever the
    headers said."""
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > signing.MAX_BODY:
                raise Refusal(413, f"the body is over {signing.MAX_BODY} bytes")
    except ClientDisconnect:
        raise ClientGone(f"after {len(body)} of {declared} bytes") from None
    if len(body) != declared:
        raise Refusal(400, f"the body has {len(body)} bytes, not the {declared} announced")
    return bytes(body)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _whole(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise Refusal(400, f"{what} must be a whole number")
    return value


@dataclass(frozen=True, slots=True)
class Push:
    status: dict[str, Any]
    anchors: list[Anchor]
    boot: int
    uptime_s: int
    responses: list[KioskResponse]


def parse_push(body: bytes) -> Push:
    """`JSON line \\n batch` (docs/wifi.md), or a 400 saying what is wrong."""
    head, newline, payload = body.partition(b"\n")
    if not newline:
        raise Refusal(400, "the body must be a JSON line, a newline, then the batch")
    if len(payload) > MAX_BATCH_BYTES:
        raise Refusal(400, f"the batch is over {MAX_BATCH_BYTES} bytes")
    try:
        fields = json.loads(head.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeError, ValueError, RecursionError) as exc:
        raise Refusal(400, f"the first line is not JSON ({str(exc)[:100]})") from exc
    if not isinstance(fields, dict):
        raise Refusal(400, "the first line must be a JSON object")
    status, anchors = fields.get("status"), fields.get("anchors")
    if not isinstance(status, dict):
        raise Refusal(400, "'status' must be a JSON object")
    if not isinstance(anchors, list):
        raise Refusal(400, "'anchors' must be a list of [boot, uptime_s, wall, source]")
    boot = _whole(fields.get("boot"), "'boot'")
    uptime_s = _whole(fields.get("uptime_s"), "'uptime_s'")
    try:
        parsed = [parse_anchor(a) for a in anchors]
        # Checks boot and uptime_s the way a stored anchor needs them.
        parse_anchor([boot, uptime_s, 1, RECEIPT_SOURCE])
        responses = decode_batch(payload).responses
    except BatchError as exc:
        raise Refusal(400, str(exc)) from exc
    return Push(status, parsed, boot, uptime_s, responses)


# -- storing ------------------------------------------------------------------------------


def response_rows(responses: list[KioskResponse]) -> list[tuple[Any, ...]]:
    """Responses as plain tuples, which cost the writer process far less to unpickle."""
    return [(r.seq, r.rating, r.scale, r.told_next, r.latency_s, r.rapid, r.closed, r.boot,
             r.uptime_s, r.wall, r.config_version) for r in responses]


def store_push(conn: sqlite3.Connection, device_id: str, key: bytes, nonce: signing.Nonce,
               status: dict[str, Any], anchors: list[Anchor],
               rows: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Store the push (in the writer process) if, in the same transaction, the device
    still has this key and the nonce is higher than the last one accepted (which then
    moves up to it)."""

    def nonce_guard(conn: sqlite3.Connection) -> None:
        row = conn.execute(
            "SELECT key, nonce_boot, nonce_count FROM device_keys WHERE device_id = ?",
            (device_id,)).fetchone()
        if row is None:
            raise Refusal(404, f"no device {device_id} is registered (it was just removed)")
        if not hmac.compare_digest(bytes(row[0]), key):
            raise Refusal(401, "the signature does not match: the device's key was just "
                               "replaced")
        last = signing.Nonce(int(row[1]), int(row[2]))
        if (nonce.boot, nonce.count) <= (last.boot, last.count):
            raise Refusal(409, f"nonce {nonce} is not higher than the last accepted one "
                               f"({last}): a replayed request; nothing was stored")
        conn.execute(
            "UPDATE device_keys SET nonce_boot = ?, nonce_count = ? WHERE device_id = ?",
            (nonce.boot, nonce.count, device_id))

    responses = [KioskResponse(*row) for row in rows]
    return db.store_batch(conn, device_id, responses, anchors, status, "wifi",
                          guard=nonce_guard)


def _schema(conn: sqlite3.Connection) -> int:
    return db.schema_version(conn)


# -- the app ------------------------------------------------------------------------------


class PushAck(BaseModel):
    acked: int | None = Field(
        description="the last seq of the batch, now stored; null for an empty batch")
    new: int = Field(description="responses stored for the first time")
    duplicates: int = Field(description="responses already stored (a re-sent batch)")
    time: int | None = Field(None, description="the server's clock, unix seconds; absent "
                                               "when that clock is outside 2000-2100")


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong; nothing was stored")


class Health(BaseModel):
    status: str = Field(description='"ok"')
    version: str = Field(description="deskpulse version")
    schema_: int = Field(alias="schema", description="database schema version")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    if status == 503:
        headers = {**(headers or {}), "Retry-After": str(RETRY_AFTER_S)}
    return JSONResponse({"error": message}, status_code=status, headers=headers)


_ERRORS = {
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
_RETRY_AFTER_DOC = {"Retry-After": {
    "description": "seconds to wait before retrying", "required": True,
    "schema": {"type": "string", "pattern": "^[0-9]+$"}}}

_PUSH_DOC = {
    "parameters": [
        {"name": "device_id", "in": "path", "required": True,
         "description": "the kiosk's configured id",
         "schema": {"type": "string", "pattern": signing.DEVICE_ID.pattern.join("^$")}},
        {"name": "X-DeskPulse-Nonce", "in": "header", "required": True,
         "description": "<boot>.<count>, higher than the last one accepted from the device",
         "schema": {"type": "string", "pattern": r"^[0-9]{1,10}\.[0-9]{1,10}$"}},
        {"name": "X-DeskPulse-Signature", "in": "header", "required": True,
         "description": 'HMAC-SHA256(device key, "DP1\\n" + method + "\\n" + path + "\\n" '
                        '+ device_id + "\\n" + nonce + "\\n" + body), lowercase hex',
         "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
    ],
    "requestBody": {
        "required": True,
        "description": "one line of JSON ({status, anchors, boot, uptime_s}), a newline, "
                       "then the compact batch encoding (docs/protocol.md), at most "
                       f"{MAX_BATCH_BYTES} bytes; the whole body at most {signing.MAX_BODY}",
        "content": {signing.CONTENT_TYPE: {
            "schema": {"type": "string", "format": "binary", "maxLength": signing.MAX_BODY}}},
    },
}

_PUSH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": PushAck, "description": "stored and committed; signed answer",
          "headers": {"X-DeskPulse-Signature": {
              "description": 'HMAC-SHA256(device key, "DP1 ack\\n" + nonce + "\\n" + body)',
              "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    **{status: {"model": ErrorBody, "description": text} for status, text in _ERRORS.items()},
    503: {"model": ErrorBody, "description": _ERRORS[503], "headers": _RETRY_AFTER_DOC},
}


class ServerClock:
    """The server's time for answers and anchors, or None while it is outside the range
    the kiosks accept (2000-2100): a wrong host clock must not set theirs, nor place
    their responses. Said once each time it goes wrong."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._wrong = False

    def now(self) -> int | None:
        wall = self._clock()
        if clock_is_plausible(wall):
            self._wrong = False
            return int(wall)
        if not self._wrong:
            self._wrong = True
            log.warning("this computer's clock reads %.0f (unix seconds), outside "
                        "2000-2100: answers carry no time and pushes get no server anchor "
                        "until it is set right", wall)
        return None


def create_app(db_path: str | os.PathLike[str] | None = None, *, api_docs: bool = False,
               busy_timeout_ms: int | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The aggregator's ASGI app on the database at db_path (None: the default one).
    The database is opened (and migrated) here, so a bad path fails before serving.

    api_docs serves /docs, /redoc and /openapi.json (the interactive pages load their
    scripts from a CDN, so they are off unless asked for). busy_timeout_ms replaces the
    writer's SQLite busy timeout (db.BUSY_TIMEOUT_MS); clock is the server's time."""
    db.connect(db_path).close()
    database = WriterProcess(db_path, busy_timeout_ms=busy_timeout_ms)
    keys = KeyCache(database)
    version = installed_version() or "unknown"
    server_clock = ServerClock(clock)
    gone = FloodLog(log, REPORT_INTERVAL_S, logging.INFO,
                    {"gone": "clients that closed the connection in the middle of a push"})

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await database.run(_schema)  # the writer is up before the first push
        yield
        database.close()

    app = FastAPI(
        title="DeskPulse aggregator", version=version, lifespan=lifespan,
        description="Kiosks on the store WiFi push their responses here (docs/wifi.md).",
        docs_url="/docs" if api_docs else None, redoc_url="/redoc" if api_docs else None,
        openapi_url="/openapi.json" if api_docs else None)
    app.state.database = database

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(400, "malformed request")

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("push failed: %s", type(exc).__name__, exc_info=exc)
        return _error(500, "internal error; nothing was acknowledged, retry later")

    @app.get("/v1/health", response_model=Health, summary="Is the server up?",
             description="No authentication, no secrets, no per-device data.",
             responses={503: {"model": ErrorBody, "description": _ERRORS[503],
                              "headers": _RETRY_AFTER_DOC}})
    async def health() -> Any:
        try:
            schema = await database.run(_schema)
        except (sqlite3.Error, DeskPulseError) as exc:
            log.warning("health: database unavailable: %s", exc)
            return _error(503, _ERRORS[503])
        return {"status": "ok", "version": version, "schema": schema}

    @app.post("/v1/devices/{device_id}/batches", summary="Push a batch of responses",
              response_class=Response, responses=_PUSH_RESPONSES, openapi_extra=_PUSH_DOC)
    async def push_batch(request: Request) -> Response:
        device_id = str(request.path_params["device_id"])
        try:
            return await _handle_push(request, device_id, database, keys, server_clock)
        except ClientGone as exc:
            # The client's end, not the server's: nothing stored, nobody to answer.
            gone.note("gone", f"a client closed the connection in the middle of a push "
                      f"for {device_id[:64]} ({exc}); nothing stored")
            return Response(status_code=400)
        except Refusal as refusal:
            log.info("refused a push for %s: %d %s", device_id[:64], refusal.status,
                     refusal.message)
            return _error(refusal.status, refusal.message)

    return app


async def _handle_push(request: Request, device_id: str, database: WriterProcess,
                       keys: KeyCache, clock: ServerClock) -> Response:
    if not signing.DEVICE_ID.fullmatch(device_id):
        raise Refusal(400, "bad device id: use 1-64 letters, digits, '.', '_' or '-'")
    nonce, nonce_text, signature = check_headers(request.headers)
    body = await read_body(request, int(request.headers["content-length"]))
    received_at = clock.now()
    key = await _store_call(database, keys.get, device_id)
    if key is None:
        raise Refusal(404, f"no device {device_id} is registered "
                           "(deskpulse devices add)")
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else request.url.path
    if not _signed(key, path, device_id, nonce_text, body, signature):
        # The key may have been rotated since it was cached.
        fresh = await _store_call(database, keys.reload, device_id)
        if fresh is None:
            raise Refusal(404, f"no device {device_id} is registered")
        if fresh == key or not _signed(fresh, path, device_id, nonce_text, body, signature):
            raise Refusal(401, "the signature does not match: wrong key, another device's "
                               "id, or a changed body or path")
        key = fresh
    push = parse_push(body)
    anchors = list(push.anchors)
    if received_at is not None:
        anchors.append(Anchor(push.boot, push.uptime_s, received_at, RECEIPT_SOURCE))
    try:
        new, duplicates = await database.run(store_push, device_id, key, nonce, push.status,
                                             anchors, response_rows(push.responses))
    except Refusal as refusal:
        if refusal.status in (401, 404):
            keys.forget(device_id)
        raise
    except db.ConflictError as exc:
        raise Refusal(422, str(exc)) from exc
    except (StorageUnavailable, sqlite3.Error) as exc:
        log.warning("push for %s not stored: %s", device_id, exc)
        raise Refusal(503, _ERRORS[503]) from exc
    except DeskPulseError as exc:
        raise Refusal(400, str(exc)) from exc
    fields: dict[str, Any] = {"acked": push.responses[-1].seq if push.responses else None,
                              "new": new, "duplicates": duplicates}
    now = clock.now()
    if now is not None:
        fields["time"] = now
    answer = json.dumps(fields, separators=(",", ":")).encode()
    return Response(answer, media_type="application/json", headers={
        "X-DeskPulse-Signature": signing.sign_answer(key, nonce_text, answer)})


async def _store_call(database: WriterProcess, fn: Callable[[str], Any], device_id: str) -> Any:
    try:
        return await fn(device_id)
    except (sqlite3.Error, DeskPulseError) as exc:
        log.warning("key lookup for %s failed: %s", device_id, exc)
        raise Refusal(503, _ERRORS[503]) from exc


def _signed(key: bytes, path: str, device_id: str, nonce: str, body: bytes,
            signature: str) -> bool:
    expected = signing.sign_request(key, "POST", path, device_id, nonce, body)
    return signing.signature_matches(expected, signature)


# -- running it ---------------------------------------------------------------------------


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
    def __init__(self, config: uvicorn.Config, guard: ConnectionGuard) -> None:
        super().__init__(config)
        self.guard = guard

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.attach(asyncio.get_running_loop())
        await super().startup(sockets)
        # asyncio used the backlog both for the kernel's queue and for how many it
        # accepts at once; the queue can be long (it costs no descriptor of ours).
        for sock in sockets or ():
            sock.listen(LISTEN_QUEUE)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.guard.flood.flush()
        await super().shutdown(sockets)


def serve(db_path: str | os.PathLike[str] | None, host: str = "127.0.0.1", port: int = 8080,
          *, access_log: bool = False, announce: Callable[[str], None] = print,
          api_docs: bool = False, max_connections: int | None = None,
          request_timeout_s: float = REQUEST_TIMEOUT_S) -> None:
    """Serve until SIGINT/SIGTERM; requests in flight finish first. max_connections
    (default: what the open-file limit allows, at most 1024) and request_timeout_s bound
    what other clients can hold (deskpulse.serve_guard)."""
    limits = limits_for(max_connections, request_timeout_s)
    app = create_app(db_path, api_docs=api_docs)
    sock = listen(host, port)
    # Refusals go to stderr beside uvicorn's lines, so a manager sees a misconfigured kiosk.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s:     %(message)s")
    bound_host, bound_port = sock.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    announce(f"deskpulse serve: listening on http://{shown_host}:{bound_port} "
             f"(database {db_path or db.default_db_path()})")
    log.info("at most %d connections at once (open-file limit %d); a request must arrive "
             "within %g s", limits.max_connections, descriptor_limit(),
             limits.request_timeout_s)
    guard = ConnectionGuard(limits)
    config = uvicorn.Config(app, http=guard.protocol_class(), ws="none", lifespan="on",
                            access_log=access_log, log_level="info", server_header=False,
                            proxy_headers=False, backlog=limits.backlog,
                            timeout_keep_alive=limits.keep_alive_s)  # type: ignore[arg-type]
    try:
        _GuardedServer(config, guard).run(sockets=[sock])
    finally:
        sock.close()
