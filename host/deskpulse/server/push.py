"""POST /v1/devices/{device_id}/batches: a kiosk's signed push (docs/wifi.md).

Checked from the cheapest test to the dearest (content type, length, headers, then the
body, read with a bound, its signature, its encoding) and stored in one transaction that
checks and advances the device's nonce (store.PushCheck); only after the commit is the
signed answer sent. Any refusal stores nothing, and no key or signature is ever logged.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field
from starlette.requests import ClientDisconnect

from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
from deskpulse.protocol.batch import (
    RECEIPT_SOURCE,
    Anchor,
    BatchError,
    ResponseRow,
    clock_is_plausible,
    decode_rows,
    parse_anchor,
)
from deskpulse.protocol.batch import Response as KioskResponse
from deskpulse.server.common import (
    ERRORS,
    RETRY_AFTER_DOC,
    ErrorBody,
    Refusal,
    ServerState,
    error_response,
    log,
    state,
)
from deskpulse.server.writer import StorageUnavailable, WriterProcess
from deskpulse.store.base import ConflictError, PushCheck, PushRefused, Store, StoreError

MAX_BATCH_BYTES = 4096
"""The batch part of a push (docs/wifi.md); the whole body is bounded by MAX_BODY."""

REFUSED_STATUS = {"unknown_device": 404, "key_replaced": 401, "replayed": 409}

router = APIRouter()


def lookup_key(store: Store, device_id: str) -> bytes | None:
    return store.device_key(device_id)


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
        key = await self.database.run(lookup_key, device_id, device=device_id)
        if key is None:
            self._keys.pop(device_id, None)
        else:
            self._keys[device_id] = key
        return key

    def forget(self, device_id: str) -> None:
        self._keys.pop(device_id, None)

    def known(self, device_id: str) -> bool:
        """Whether a key of this device is held (it was registered lately)."""
        return device_id in self._keys


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
    return auth_headers(headers)


def auth_headers(headers: Any) -> tuple[signing.Nonce, str, str]:
    """(nonce, nonce as sent, signature) from a signed request's headers, or a 400."""
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
    rows: list[ResponseRow]
    """The responses as plain rows (protocol.batch.decode_rows): what the writer takes."""


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
        rows, _ = decode_rows(payload)
    except BatchError as exc:
        raise Refusal(400, str(exc)) from exc
    return Push(status, parsed, boot, uptime_s, rows)


# -- storing ------------------------------------------------------------------------------


def response_rows(responses: list[KioskResponse]) -> list[ResponseRow]:
    """Responses as the rows store_push takes (which cost the writer process far less to
    unpickle than Responses): for callers that hold Responses."""
    return [(r.seq, r.rating, r.scale, r.told_next, r.latency_s, r.rapid, r.closed, r.boot,
             r.uptime_s, r.wall, r.config_version) for r in responses]


def store_push(store: Store, device_id: str, key: bytes, nonce: signing.Nonce,
               status: dict[str, Any], anchors: list[Anchor],
               rows: list[ResponseRow]) -> tuple[int, int, int | None]:
    """Store the push (in the writer process) if, in the same transaction, the device
    still has this key and the nonce is higher than the last one accepted; (new,
    duplicates, the device's desired config version or None)."""
    responses = [KioskResponse(*row) for row in rows]
    new, duplicates = store.store_batch(device_id, responses, anchors, status, "wifi",
                                        push=PushCheck(key, nonce))
    # The desired config's version rides on the answer (config over the air, server/ota.py)
    return new, duplicates, store.desired_versions(device_id).get(device_id)


# -- the route ----------------------------------------------------------------------------


class PushAck(BaseModel):
    acked: int | None = Field(
        description="the last seq of the batch, now stored; null for an empty batch")
    new: int = Field(description="responses stored for the first time")
    duplicates: int = Field(description="responses already stored (a re-sent batch)")
    time: int | None = Field(None, description="the server's clock, unix seconds; absent "
                                               "when that clock is outside 2000-2100")
    config: int | None = Field(None, description="the version of the config the server "
                                                 "holds for the kiosk; absent when none")


PUSH_DOC = {
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
    **{status: {"model": ErrorBody, "description": text} for status, text in ERRORS.items()},
    503: {"model": ErrorBody, "description": ERRORS[503], "headers": RETRY_AFTER_DOC},
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


@router.post("/v1/devices/{device_id}/batches", summary="Push a batch of responses",
             response_class=Response, responses=_PUSH_RESPONSES, openapi_extra=PUSH_DOC)
async def push_batch(request: Request, server: Annotated[ServerState, Depends(state)]
                     ) -> Response:
    device_id = str(request.path_params["device_id"])
    try:
        answer = await _handle_push(request, device_id, server.database, server.keys,
                                    server.clock)
        server.live.notify((device_id,))  # committed: the live dashboards hear of it
        return answer
    except ClientGone as exc:
        # The client's end, not the server's: nothing stored, nobody to answer.
        server.gone.note("gone", f"a client closed the connection in the middle of a push "
                   f"for {device_id[:64]} ({exc}); nothing stored")
        return Response(status_code=400)
    except Refusal as refusal:
        log.info("refused a push for %s: %d %s", device_id[:64], refusal.status,
                 refusal.message)
        server.refusals.note(device_id, refusal.status, refusal.message)
        return error_response(refusal.status, refusal.message)


async def _handle_push(request: Request, device_id: str, database: WriterProcess,
                       keys: KeyCache, clock: ServerClock) -> Response:
    if not signing.DEVICE_ID.fullmatch(device_id):
        raise Refusal(400, "bad device id: use 1-64 letters, digits, '.', '_' or '-'")
    nonce, nonce_text, signature = check_headers(request.headers)
    body = await read_body(request, int(request.headers["content-length"]))
    received_at = clock.now()
    key = await verified_key(request, device_id, database, keys, nonce_text, body, signature)
    push = parse_push(body)
    anchors = list(push.anchors)
    if received_at is not None:
        anchors.append(Anchor(push.boot, push.uptime_s, received_at, RECEIPT_SOURCE))
    try:
        new, duplicates, config = await database.run(
            store_push, device_id, key, nonce, push.status, anchors, push.rows,
            device=device_id)
    except PushRefused as refused:
        if refused.problem != "replayed":
            keys.forget(device_id)
        raise Refusal(REFUSED_STATUS[refused.problem], str(refused)) from refused
    except ConflictError as exc:
        raise Refusal(422, str(exc)) from exc
    except (StorageUnavailable, StoreError) as exc:
        log.warning("push for %s not stored: %s", device_id, exc)
        raise Refusal(503, ERRORS[503]) from exc
    except DeskPulseError as exc:
        raise Refusal(400, str(exc)) from exc
    fields: dict[str, Any] = {"acked": push.rows[-1][0] if push.rows else None,
                              "new": new, "duplicates": duplicates}
    now = clock.now()
    if now is not None:
        fields["time"] = now
    if config is not None:
        fields["config"] = config
    answer = json.dumps(fields, separators=(",", ":")).encode()
    return Response(answer, media_type="application/json", headers={
        "X-DeskPulse-Signature": signing.sign_answer(key, nonce_text, answer)})


async def verified_key(request: Request, device_id: str, database: WriterProcess,
                       keys: KeyCache, nonce_text: str, body: bytes, signature: str) -> bytes:
    """The device's key, once the request's signature verifies under it (404, 401)."""
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
    return key


async def _store_call(database: WriterProcess, fn: Callable[[str], Any], device_id: str) -> Any:
    try:
        return await fn(device_id)
    except DeskPulseError as exc:
        log.warning("key lookup for %s failed: %s", device_id, exc)
        raise Refusal(503, ERRORS[503]) from exc


def _signed(key: bytes, path: str, device_id: str, nonce: str, body: bytes,
            signature: str) -> bool:
    expected = signing.sign_request(key, "POST", path, device_id, nonce, body)
    return signing.signature_matches(expected, signature)
