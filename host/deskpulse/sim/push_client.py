"""The device side of the WiFi push (docs/wifi.md) in CPython, for tests and tools.

The load generator (tools/bench_serve.py), the server tests and the end-to-end tests push
signed batches with it the way a kiosk does: build the body, sign it, send it, and trust
an answer only when its signature verifies against the request's own nonce.

`build_request` and `read_answer` carry the protocol; `PushClient` is one keep-alive
HTTP/1.1 connection (http.client) that reconnects when the server closed it.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from deskpulse.errors import DeskPulseError
from deskpulse.protocol import signing
from deskpulse.protocol.batch import Anchor, Response, encode_batch

DEFAULT_TIMEOUT = 30.0


def batch_path(device_id: str) -> str:
    return f"/v1/devices/{device_id}/batches"


def request_body(status: Mapping[str, Any], anchors: Iterable[Anchor | Sequence[int]],
                 responses: Sequence[Response], *, boot: int | None = None,
                 uptime_s: int | None = None, more: bool = False) -> bytes:
    """`JSON line \\n batch` as docs/wifi.md puts it. boot and uptime_s (the moment of
    sending) default to the last response's, or to the status's boot and 0."""
    last = responses[-1] if responses else None
    if boot is None:
        boot = last.boot if last is not None else int(status.get("boot") or 1)
    if uptime_s is None:
        uptime_s = last.uptime_s if last is not None else 0
    head = {"status": dict(status), "anchors": [list(a) for a in anchors], "boot": boot,
            "uptime_s": uptime_s}
    return (json.dumps(head, separators=(",", ":")).encode() + b"\n"
            + encode_batch(responses, more))


@dataclass(frozen=True, slots=True)
class PushRequest:
    path: str
    headers: dict[str, str]
    body: bytes


def build_request(device_id: str, key: bytes, nonce: signing.Nonce | str,
                  body: bytes) -> PushRequest:
    path = batch_path(device_id)
    nonce_text = str(nonce)
    signature = signing.sign_request(key, "POST", path, device_id, nonce_text, body)
    return PushRequest(path, {
        "Content-Type": signing.CONTENT_TYPE,
        "Content-Length": str(len(body)),
        "X-DeskPulse-Nonce": nonce_text,
        "X-DeskPulse-Signature": signature,
    }, body)


@dataclass(frozen=True, slots=True)
class PushAnswer:
    status: int
    body: dict[str, Any]
    verified: bool  # a 200 whose signature matches this request's nonce and our key

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.verified

    @property
    def acked(self) -> int | None:
        return self.body.get("acked")

    @property
    def new(self) -> int:
        return int(self.body.get("new", 0))

    @property
    def duplicates(self) -> int:
        return int(self.body.get("duplicates", 0))

    @property
    def error(self) -> str | None:
        return self.body.get("error")


def read_answer(key: bytes, nonce: signing.Nonce | str, status: int,
                signature: str | None, body: bytes) -> PushAnswer:
    """Decode the server's answer; `verified` only for a 200 signed over our nonce."""
    try:
        decoded = json.loads(body.decode("utf-8")) if body else {}
    except (UnicodeError, ValueError):
        decoded = {"error": f"not JSON: {body[:80]!r}"}
    if not isinstance(decoded, dict):
        decoded = {"error": f"not a JSON object: {body[:80]!r}"}
    verified = status == 200 and signature is not None and signing.signature_matches(
        signing.sign_answer(key, str(nonce), body), signature)
    return PushAnswer(status, decoded, verified)


class PushClient:
    """Pushes over one keep-alive connection to `url` (http://host:port)."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise DeskPulseError(f"push client: {url!r} is not http://host:port")
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def send(self, request: PushRequest, key: bytes,
             nonce: signing.Nonce | str) -> PushAnswer:
        """One request. Network errors (OSError, http.client.HTTPException) propagate:
        the caller retries with a new nonce, as a kiosk does."""
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port,
                                                    timeout=self.timeout)
        try:
            self._conn.request("POST", request.path, body=request.body,
                               headers=request.headers)
            reply = self._conn.getresponse()
            data = reply.read()
        except BaseException:
            self.close()
            raise
        if reply.will_close:
            self.close()
        return read_answer(key, nonce, reply.status,
                           reply.getheader("X-DeskPulse-Signature"), data)

    def push(self, device_id: str, key: bytes, nonce: signing.Nonce | str,
             status: Mapping[str, Any], anchors: Iterable[Anchor | Sequence[int]],
             responses: Sequence[Response], **body_options: Any) -> PushAnswer:
        body = request_body(status, anchors, responses, **body_options)
        return self.send(build_request(device_id, key, nonce, body), key, nonce)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> PushClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def push_batch(url: str, device_id: str, key: bytes, nonce: signing.Nonce | str,
               status: Mapping[str, Any], anchors: Iterable[Anchor | Sequence[int]],
               responses: Sequence[Response], *, timeout: float = DEFAULT_TIMEOUT,
               **body_options: Any) -> PushAnswer:
    """Push one batch over a fresh connection and return the server's answer."""
    with PushClient(url, timeout=timeout) as client:
        return client.push(device_id, key, nonce, status, anchors, responses,
                           **body_options)
