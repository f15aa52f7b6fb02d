"""POST /v1/devices/{device_id}/config: a kiosk fetches the config the server holds for it
(config over the air, docs/wifi.md).

The request is signed with the kiosk's key and carries a nonce that must be higher than
the last one accepted, as a push's; the store checks and advances it in a transaction
before the config is read, so a replayed fetch gets nothing. The answer is signed over
the request's nonce, so a man in the middle can neither change the config nor replay an
old answer to a later fetch. The desired configs themselves are computed and validated
when people set them (deskpulse.device.ota).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
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
from deskpulse.server.push import (
    PUSH_DOC,
    REFUSED_STATUS,
    ClientGone,
    auth_headers,
    read_body,
    verified_key,
)
from deskpulse.server.writer import StorageUnavailable
from deskpulse.store.base import PushCheck, PushRefused, Store, StoreError

MAX_REQUEST_BYTES = 256
"""A fetch's body is one short JSON line: {"running": <version>}."""

router = APIRouter()


def accept_fetch(store: Store, device_id: str, key: bytes, nonce: signing.Nonce
                 ) -> dict[str, Any] | None:
    """(In the writer process) the nonce accepted, then the kiosk's desired config."""
    store.accept_request(device_id, PushCheck(key, nonce))
    desired = store.desired_config(device_id)
    return None if desired is None else desired.config


_FETCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the kiosk's desired config (a JSON object); signed answer",
          "content": {"application/json": {"schema": {"type": "object"}}},
          "headers": {"X-DeskPulse-Signature": {
              "description": 'HMAC-SHA256(device key, "DP1 config\\n" + nonce + "\\n" + '
                             "body)",
              "required": True,
              "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}},
    400: {"model": ErrorBody, "description": "malformed: bad device id, no Content-Length "
                                             "or a body too large, missing or malformed "
                                             "nonce or signature header"},
    401: {"model": ErrorBody, "description": ERRORS[401]},
    404: {"model": ErrorBody, "description": "no such device registered, or the server "
                                             "holds no config for it (deskpulse config set)"},
    409: {"model": ErrorBody, "description": ERRORS[409]},
    503: {"model": ErrorBody, "description": ERRORS[503], "headers": RETRY_AFTER_DOC},
}


_FETCH_DOC = {
    "parameters": PUSH_DOC["parameters"],  # the same id, nonce and signature as a push
    "requestBody": {
        "required": True,
        "description": '{"running": <the version the kiosk runs>}, a newline; at most '
                       f"{MAX_REQUEST_BYTES} bytes",
        "content": {"application/json": {
            "schema": {"type": "string", "format": "binary",
                       "maxLength": MAX_REQUEST_BYTES}}},
    },
}


@router.post("/v1/devices/{device_id}/config", summary="Fetch the kiosk's desired config",
             response_class=Response, responses=_FETCH_RESPONSES, openapi_extra=_FETCH_DOC)
async def fetch_config(request: Request, server: Annotated[ServerState, Depends(state)]
                       ) -> Response:
    device_id = str(request.path_params["device_id"])
    try:
        return await _handle_fetch(request, device_id, server)
    except Refusal as refusal:
        log.info("refused a config fetch for %s: %d %s", device_id[:64], refusal.status,
                 refusal.message)
        return error_response(refusal.status, refusal.message)


async def _handle_fetch(request: Request, device_id: str, server: ServerState) -> Response:
    if not signing.DEVICE_ID.fullmatch(device_id):
        raise Refusal(400, "bad device id: use 1-32 letters, digits, '.', '_' or '-'")
    length = request.headers.get("content-length", "")
    if not length.isdigit() or int(length) > MAX_REQUEST_BYTES:
        raise Refusal(400, f"a config fetch has a body of at most {MAX_REQUEST_BYTES} bytes "
                           "and a Content-Length")
    nonce, nonce_text, signature = auth_headers(request.headers)
    try:
        body = await read_body(request, int(length))
    except ClientGone as exc:  # nobody is left to read the answer
        raise Refusal(400, f"the client left: {exc}") from exc
    key = await verified_key(request, device_id, server.database, server.keys, nonce_text,
                             body, signature)
    try:
        config = await server.database.run(accept_fetch, device_id, key, nonce,
                                           device=device_id)
    except PushRefused as refused:
        if refused.problem != "replayed":
            server.keys.forget(device_id)
        raise Refusal(REFUSED_STATUS[refused.problem], str(refused)) from refused
    except (StorageUnavailable, StoreError) as exc:
        log.warning("config fetch for %s not answered: %s", device_id, exc)
        raise Refusal(503, ERRORS[503]) from exc
    except DeskPulseError as exc:
        raise Refusal(400, str(exc)) from exc
    if config is None:
        raise Refusal(404, f"the server holds no config for {device_id} "
                           "(deskpulse config set)")
    answer = json.dumps(config, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(answer, media_type="application/json", headers={
        "X-DeskPulse-Signature": signing.sign_config(key, nonce_text, answer)})
