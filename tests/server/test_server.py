"""`deskpulse serve` (docs/wifi.md): every refusal in the errors table stores nothing,
replays and foreign keys are refused, retries are stored once, answers are signed; and
against a real uvicorn in a child process: many kiosks at once, and a server killed in
the middle of the load and restarted, with nothing lost or doubled.

The bad-request matrix runs in-process (FastAPI's TestClient); everything that is about
the network, processes and SQLite locking runs against `deskpulse serve` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import os
import random
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from deskpulse.device import registration
from deskpulse.protocol import signing
from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response, encode_batch
from deskpulse.server.app import create_app
from deskpulse.sim.push_client import (
    PushAnswer,
    PushClient,
    PushRequest,
    batch_path,
    build_request,
    read_answer,
    request_body,
)
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.copy import COPY_TABLES, CopyTable
from deskpulse.store.sqlite import schema

PATIENCE = 120.0  # an upper bound for threads to finish; never asserted as a duration
WALL_BASE = 1_790_000_000
STATUS = {"boot": 1, "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0",
          "log": {"stored": 5, "unacked": 5, "dropped": 0, "corrupt": 0, "fs_fill": 0.01}}


def make_responses(first_seq: int, count: int, *, boot: int = 1, clock_known: bool = True,
                   rating: int = 3) -> list[Response]:
    out = []
    for seq in range(first_seq, first_seq + count):
        uptime = 60 * seq
        out.append(Response(seq=seq, rating=rating, scale=4, told_next="yes",
                            latency_s=2.5, rapid=False, closed=False, boot=boot,
                            uptime_s=uptime, wall=WALL_BASE + uptime if clock_known else None,
                            config_version=0))
    return out


@dataclass
class Kiosk:
    """What a kiosk keeps for the push: its key, its boot number and request counter."""

    device_id: str
    key: bytes
    boot: int = 1
    count: int = 0

    def nonce(self) -> str:
        self.count += 1
        return f"{self.boot}.{self.count}"

    def request(self, responses: list[Response], *, nonce: str | None = None,
                anchors: list[Anchor] | None = None) -> tuple[PushRequest, str]:
        nonce = nonce or self.nonce()
        body = request_body(STATUS, anchors or [], responses, boot=self.boot,
                            uptime_s=responses[-1].uptime_s + 5 if responses else 5)
        return build_request(self.device_id, self.key, nonce, body), nonce


def register(conn: Store, tmp_path: Path, device_id: str) -> Kiosk:
    out = tmp_path / f"{device_id}.json"
    registration.add_device(conn, device_id, "http://127.0.0.1:8080", out)
    return Kiosk(device_id, bytes.fromhex(json.loads(out.read_text())["sync"]["device_key"]))


def rows_of(conn: Store, table: CopyTable, device_id: str) -> list[tuple[Any, ...]]:
    """Every row of the device in a table (store/copy.py's columns), on any engine."""
    return conn.copy_rows(table, device_id, None, 1 << 30)


def snapshot(conn: Store) -> tuple[Any, ...]:
    """Everything a push may change: every row of every device."""
    return tuple((facts.device_id, table, rows_of(conn, table, facts.device_id))
                 for facts in conn.device_facts() for table in COPY_TABLES)


def nonce_of(conn: Store, device_id: str) -> tuple[int, int]:
    (_, _, _, boot, count), = rows_of(conn, "device_keys", device_id)
    return boot, count


@dataclass
class Site:
    client: TestClient
    conn: Store
    front: Kiosk
    back: Kiosk

    def send(self, request: PushRequest, **changes: Any) -> Any:
        headers = dict(request.headers)
        headers.update(changes.pop("headers", {}))
        for name in changes.pop("drop", ()):
            headers.pop(name)
        return self.client.post(changes.pop("path", request.path),
                                content=changes.pop("content", request.body),
                                headers=headers)

    def push(self, kiosk: Kiosk, responses: list[Response], **options: Any) -> PushAnswer:
        request, nonce = kiosk.request(responses, **options)
        reply = self.send(request)
        return read_answer(kiosk.key, nonce, reply.status_code,
                           reply.headers.get("x-deskpulse-signature"), reply.content)


@pytest.fixture
def site(tmp_path: Path, db_target: str) -> Iterator[Site]:
    dbfile = db_target
    conn = open_store(dbfile)
    front, back = register(conn, tmp_path, "front-1"), register(conn, tmp_path, "back-2")
    with TestClient(create_app(dbfile)) as client:
        yield Site(client, conn, front, back)
    conn.close()


# -- what a good push does ------------------------------------------------------------------


def test_a_push_is_stored_then_answered_with_a_signature_that_verifies(site: Site) -> None:
    responses = make_responses(1, 20)
    before = int(time.time())
    request, nonce = site.front.request(responses)
    reply = site.send(request)
    after = int(time.time())
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    answer = read_answer(site.front.key, nonce, 200,
                         reply.headers["x-deskpulse-signature"], reply.content)
    assert answer.verified
    assert answer.body["acked"] == 20 and answer.new == 20 and answer.duplicates == 0
    assert before <= answer.body["time"] <= after
    stored = site.conn.responses_of("front-1")
    assert [(r["seq"], r["rating"], r["device_wall"]) for r in stored] == [
        (r.seq, r.rating, r.wall) for r in responses]
    record = site.conn.latest_sync("front-1")
    assert record is not None and record.transport == "wifi" and record.status == STATUS
    assert nonce_of(site.conn, "front-1") == (1, 1)
    # The server's receipt anchor: the body's boot and uptime at the server's time.
    (anchor,) = [row[1:] for row in rows_of(site.conn, "anchors", "front-1")]
    assert anchor[:2] == (1, responses[-1].uptime_s + 5) and anchor[3] == RECEIPT_SOURCE
    assert before <= anchor[2] <= after
    # It places the boot's responses (docs/time.md), the device's stamps kept beside.
    assert all(r["wall"] == anchor[2] + r["uptime_s"] - anchor[1] for r in stored)


def test_the_answer_is_bound_to_the_request_nonce_and_the_key(site: Site) -> None:
    request, nonce = site.front.request(make_responses(1, 3))
    reply = site.send(request)
    signature = reply.headers["x-deskpulse-signature"]
    assert read_answer(site.front.key, nonce, 200, signature, reply.content).verified
    assert not read_answer(site.front.key, "1.99", 200, signature, reply.content).verified
    assert not read_answer(site.back.key, nonce, 200, signature, reply.content).verified
    forged = reply.content.replace(b'"acked":3', b'"acked":9')
    assert not read_answer(site.front.key, nonce, 200, signature, forged).verified


def test_the_server_anchor_places_responses_of_a_kiosk_without_a_clock(site: Site) -> None:
    responses = make_responses(1, 5, clock_known=False)
    assert site.push(site.front, responses).ok
    ((_, boot, uptime_s, wall, _),) = rows_of(site.conn, "anchors", "front-1")
    for r in site.conn.responses_of("front-1"):
        assert r["time_source"] == "anchor"
        assert r["wall"] == wall + (r["uptime_s"] - uptime_s)
    # An anchor of the kiosk's own outranks the receipts: it places the whole boot, and
    # no more receipt anchors are stored for that boot.
    assert site.push(site.front, make_responses(6, 1, clock_known=False),
                     anchors=[Anchor(1, 30, WALL_BASE, 2)]).ok
    assert sorted(row[4] for row in rows_of(site.conn, "anchors", "front-1")) == [
        2, RECEIPT_SOURCE]
    for r in site.conn.responses_of("front-1"):
        assert r["wall"] == WALL_BASE + r["uptime_s"] - 30


def test_retries_with_a_new_nonce_are_stored_once(site: Site) -> None:
    first = site.push(site.front, make_responses(1, 10))
    assert (first.ok, first.acked, first.new, first.duplicates) == (True, 10, 10, 0)
    # The answer was lost: the kiosk sends the same records again under its next nonce.
    again = site.push(site.front, make_responses(1, 10))
    assert (again.ok, again.acked, again.new, again.duplicates) == (True, 10, 0, 10)
    overlap = site.push(site.front, make_responses(6, 10))
    assert (overlap.ok, overlap.acked, overlap.new, overlap.duplicates) == (True, 15, 5, 5)
    assert [r["seq"] for r in site.conn.responses_of("front-1")] == list(range(1, 16))
    assert len(rows_of(site.conn, "syncs", "front-1")) == 3


def test_an_empty_batch_records_the_status_and_acks_nothing(site: Site) -> None:
    answer = site.push(site.front, [])
    assert (answer.ok, answer.acked, answer.new, answer.duplicates) == (True, None, 0, 0)
    assert site.conn.latest_sync("front-1") is not None


# -- replays and foreign keys ---------------------------------------------------------------


def test_a_replayed_request_stores_nothing(site: Site) -> None:
    request, _ = site.front.request(make_responses(1, 5))
    assert site.send(request).status_code == 200
    before = snapshot(site.conn)  # its sync records too: a replay stored would show
    reply = site.send(request)
    assert reply.status_code == 409 and "replayed" in reply.json()["error"]
    assert snapshot(site.conn) == before


def test_a_stale_nonce_is_refused_and_a_new_boot_is_accepted(site: Site) -> None:
    kiosk = site.front
    kiosk.boot, kiosk.count = 2, 5
    assert site.push(kiosk, make_responses(1, 2)).ok
    before = snapshot(site.conn)
    for stale in ("2.5", "2.4", "1.99", "0.0", "1.4000000000"):
        request, _ = kiosk.request(make_responses(3, 2), nonce=stale)
        reply = site.send(request)
        assert reply.status_code == 409, stale
        assert snapshot(site.conn) == before
    kiosk.boot, kiosk.count = 3, 0  # rebooted: the counter starts again at 1
    assert site.push(kiosk, make_responses(3, 2)).ok
    assert nonce_of(site.conn, "front-1") == (3, 1)


def test_one_kiosks_key_cannot_push_for_another(site: Site) -> None:
    before = snapshot(site.conn)
    body = request_body(STATUS, [], make_responses(1, 5))
    # Signed honestly with front's key, but for back's id and path.
    signature = signing.sign_request(site.front.key, "POST", batch_path("back-2"), "back-2",
                                     "1.1", body)
    reply = site.client.post(batch_path("back-2"), content=body, headers={
        "Content-Type": signing.CONTENT_TYPE, "X-DeskPulse-Nonce": "1.1",
        "X-DeskPulse-Signature": signature})
    assert reply.status_code == 401
    # front's own request, moved to back's path.
    request, _ = site.front.request(make_responses(1, 5))
    assert site.send(request, path=batch_path("back-2")).status_code == 401
    assert snapshot(site.conn) == before


def test_a_clash_with_stored_records_is_422_and_stores_nothing(site: Site) -> None:
    assert site.push(site.front, make_responses(1, 5)).ok
    before = snapshot(site.conn)
    clash = site.push(site.front, make_responses(1, 5, rating=1))
    assert clash.status == 422 and "differ" in (clash.error or "")
    assert snapshot(site.conn) == before  # the nonce did not move either


def test_a_rotated_key_works_at_once_and_the_old_one_stops(site: Site, tmp_path: Path) -> None:
    assert site.push(site.front, make_responses(1, 2)).ok  # front's key is now cached
    registration.rotate_key(site.conn, "front-1", tmp_path / "front-1.json")
    new_key = site.conn.device_key("front-1")
    assert new_key is not None
    old = site.push(site.front, make_responses(3, 2))
    assert old.status == 401
    rotated = Kiosk("front-1", new_key, boot=1, count=0)  # the counter was reset
    assert site.push(rotated, make_responses(3, 2)).ok


def test_a_removed_device_is_unknown(site: Site) -> None:
    assert site.push(site.front, make_responses(1, 2)).ok
    registration.remove_device(site.conn, "front-1")
    before = snapshot(site.conn)
    answer = site.push(site.front, make_responses(3, 2))
    assert answer.status == 404 and "registered" in (answer.error or "")
    assert snapshot(site.conn) == before


def test_a_writer_process_that_dies_is_replaced_and_loses_nothing(site: Site) -> None:
    assert site.push(site.front, make_responses(1, 5)).ok
    writer = site.client.app.state.deskpulse.database  # type: ignore[attr-defined]
    pid = writer.pid("front-1")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    refusals = []
    for _attempt in range(20):
        answer = site.push(site.front, make_responses(6, 5))
        if answer.ok:
            break
        refusals.append(answer)
    assert answer.ok and answer.new == 5
    assert all(a.status == 503 and a.error for a in refusals)
    assert writer.pid("front-1") not in (None, pid)
    assert [r["seq"] for r in site.conn.responses_of("front-1")] == list(range(1, 11))


# -- the errors table -----------------------------------------------------------------------


def _body_with(head: Any, payload: bytes | None = None) -> bytes:
    line = head if isinstance(head, bytes) else json.dumps(head).encode()
    return line + b"\n" + (payload if payload is not None else encode_batch(
        make_responses(1, 3)))


GOOD_HEAD = {"status": STATUS, "anchors": [], "boot": 1, "uptime_s": 500}

# name: (how to spoil a good request, expected status). Bodies are signed as sent, so
# each case fails on exactly its own check.
Spoil = Callable[[Site, Kiosk], Any]


def _signed_body(body: bytes) -> Spoil:
    def spoil(site: Site, kiosk: Kiosk) -> Any:
        request = build_request(kiosk.device_id, kiosk.key, kiosk.nonce(), body)
        return site.send(request)
    return spoil


def _header(name: str, value: str | None) -> Spoil:
    def spoil(site: Site, kiosk: Kiosk) -> Any:
        request, _ = kiosk.request(make_responses(1, 3))
        if value is None:
            return site.send(request, drop=[name])
        return site.send(request, headers={name: value})
    return spoil


def _chunked(site: Site, kiosk: Kiosk) -> Any:
    request, _ = kiosk.request(make_responses(1, 3))
    headers = {k: v for k, v in request.headers.items() if k != "Content-Length"}
    return site.client.post(request.path, content=iter([request.body]), headers=headers)


def _oversized(site: Site, kiosk: Kiosk) -> Any:
    body = _body_with({**GOOD_HEAD, "pad": "x" * signing.MAX_BODY})
    return site.send(build_request(kiosk.device_id, kiosk.key, kiosk.nonce(), body))


def _understated_length(site: Site, kiosk: Kiosk) -> Any:
    # The length header passes, but more bytes than MAX_BODY arrive.
    body = _body_with({**GOOD_HEAD, "pad": "x" * signing.MAX_BODY})
    request = build_request(kiosk.device_id, kiosk.key, kiosk.nonce(), body)
    return site.send(request, headers={"Content-Length": "100"})


def _overstated_length(site: Site, kiosk: Kiosk) -> Any:
    request, _ = kiosk.request(make_responses(1, 3))
    return site.send(request, headers={"Content-Length": str(len(request.body) + 10)})


def _wrong_key(site: Site, kiosk: Kiosk) -> Any:
    impostor = Kiosk(kiosk.device_id, signing.new_key(), count=kiosk.count)
    request, _ = impostor.request(make_responses(1, 3))
    return site.send(request)


def _changed_body(site: Site, kiosk: Kiosk) -> Any:
    request, _ = kiosk.request(make_responses(1, 3))
    return site.send(request, content=request.body.replace(b'"boot":1', b'"boot":2'))


def _bad_id(device_id: str) -> Spoil:
    def spoil(site: Site, kiosk: Kiosk) -> Any:
        body = _body_with(GOOD_HEAD)
        path = f"/v1/devices/{device_id}/batches"
        signature = signing.sign_request(kiosk.key, "POST", path, device_id, "1.1", body)
        return site.client.post(path, content=body, headers={
            "Content-Type": signing.CONTENT_TYPE, "X-DeskPulse-Nonce": "1.1",
            "X-DeskPulse-Signature": signature})
    return spoil


def _unknown_device(site: Site, kiosk: Kiosk) -> Any:
    return site.send(Kiosk("nobody", kiosk.key).request(make_responses(1, 3))[0])


BAD_REQUESTS: dict[str, tuple[Spoil, int]] = {
    "no content type": (_header("Content-Type", None), 415),
    "json content type": (_header("Content-Type", "application/json"), 415),
    "octet-stream": (_header("Content-Type", "application/octet-stream"), 415),
    "no content length (chunked)": (_chunked, 411),
    "content length over 64 KiB": (_oversized, 413),
    "body over 64 KiB behind a small length": (_understated_length, 413),
    "body shorter than its length": (_overstated_length, 400),
    "length not a number": (_header("Content-Length", "12a"), 400),
    "no nonce": (_header("X-DeskPulse-Nonce", None), 400),
    "nonce not boot.count": (_header("X-DeskPulse-Nonce", "7"), 400),
    "nonce with letters": (_header("X-DeskPulse-Nonce", "1.x"), 400),
    "negative nonce": (_header("X-DeskPulse-Nonce", "-1.2"), 400),
    "no signature": (_header("X-DeskPulse-Signature", None), 400),
    "signature too short": (_header("X-DeskPulse-Signature", "ab" * 31), 400),
    "signature in capitals": (_header("X-DeskPulse-Signature", "AB" * 32), 400),
    "no newline": (_signed_body(json.dumps(GOOD_HEAD).encode()), 400),
    "first line not JSON": (_signed_body(_body_with(b"{status: 1}")), 400),
    "first line not UTF-8": (_signed_body(_body_with(b'{"status": "\xff"}')), 400),
    "JSON NaN": (_signed_body(_body_with(b'{"status": {"x": NaN}, "anchors": [], '
                                         b'"boot": 1, "uptime_s": 1}')), 400),
    "deeply nested JSON": (_signed_body(_body_with(b"[" * 30000 + b"]" * 30000)), 400),
    "first line a list": (_signed_body(_body_with([1, 2])), 400),
    "status not an object": (_signed_body(_body_with({**GOOD_HEAD, "status": []})), 400),
    "anchors missing": (_signed_body(_body_with({"status": {}, "boot": 1,
                                                 "uptime_s": 1})), 400),
    "anchor malformed": (_signed_body(_body_with({**GOOD_HEAD, "anchors": [[1, 2, 3]]})),
                         400),
    "anchor out of range": (_signed_body(_body_with({**GOOD_HEAD,
                                                     "anchors": [[1, 2, 0, 1]]})), 400),
    "boot missing": (_signed_body(_body_with({"status": {}, "anchors": [],
                                              "uptime_s": 1})), 400),
    "uptime a string": (_signed_body(_body_with({**GOOD_HEAD, "uptime_s": "5"})), 400),
    "uptime negative": (_signed_body(_body_with({**GOOD_HEAD, "uptime_s": -5})), 400),
    "boot a boolean": (_signed_body(_body_with({**GOOD_HEAD, "boot": True})), 400),
    "batch truncated": (_signed_body(_body_with(GOOD_HEAD, encode_batch(
        make_responses(1, 3))[:-1])), 400),
    "batch with trailing bytes": (_signed_body(_body_with(GOOD_HEAD, encode_batch(
        make_responses(1, 3)) + b"\x00")), 400),
    "batch empty": (_signed_body(_body_with(GOOD_HEAD, b"")), 400),
    "batch over 4096 bytes": (_signed_body(_body_with(GOOD_HEAD, encode_batch(
        make_responses(1, 2000)))), 400),
    "device id with a space": (_bad_id("front%201"), 400),
    "device id over 64 characters": (_bad_id("x" * 65), 400),
    "device id with a colon": (_bad_id("front:1"), 400),
    "unknown device": (_unknown_device, 404),
    "wrong key": (_wrong_key, 401),
    "body changed after signing": (_changed_body, 401),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
@pytest.mark.slow
def test_every_bad_request_is_refused_with_a_json_error_and_stores_nothing(
        site: Site, case: str) -> None:
    spoil, expected = BAD_REQUESTS[case]
    before = snapshot(site.conn)
    reply = spoil(site, site.front)
    assert reply.status_code == expected, reply.text
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()
    assert list(error) == ["error"] and isinstance(error["error"], str) and error["error"]
    assert snapshot(site.conn) == before
    # A refusal costs the kiosk nothing: its next good request goes through.
    assert site.push(site.front, make_responses(1, 3)).ok


def test_the_body_is_read_no_further_than_the_bound(tmp_path: Path) -> None:
    """An ASGI client that never stops sending: the app reads just past 64 KiB, then
    answers 413 (uvicorn would also stop at Content-Length, but the app does not rely
    on it)."""
    conn = open_store(tmp_path / "d.db")
    kiosk = register(conn, tmp_path, "k")
    app = create_app(tmp_path / "d.db")
    path = batch_path("k")
    sent = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        sent += 1024
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    headers = [(b"content-type", signing.CONTENT_TYPE.encode()), (b"content-length", b"10"),
               (b"x-deskpulse-nonce", b"1.1"), (b"x-deskpulse-signature", b"a" * 64)]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    assert messages[0]["status"] == 413
    assert signing.MAX_BODY < sent <= signing.MAX_BODY + 1024
    assert kiosk.count == 0 and conn.response_counts() == {}
    conn.close()


def test_no_key_or_signature_reaches_the_log(site: Site,
                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    signatures = []
    for spoil, _ in BAD_REQUESTS.values():
        reply = spoil(site, site.front)
        signatures.append(reply.request.headers.get("x-deskpulse-signature", ""))
    request, _ = site.front.request(make_responses(1, 3))
    signatures.append(request.headers["X-DeskPulse-Signature"])
    site.send(request)
    site.send(request)  # a replay, logged as refused
    assert "refused a push" in caplog.text
    for secret in (site.front.key.hex(), site.back.key.hex(), *filter(None, signatures)):
        assert secret not in caplog.text


def test_health_and_unknown_routes_answer_json(site: Site) -> None:
    health = site.client.get("/v1/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "version": health.json()["version"],
                             "schema": schema.SCHEMA_VERSION}
    assert "front-1" not in health.text
    wrong_method = site.client.get(batch_path("front-1"))
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"]
    assert "error" in wrong_method.json()
    assert site.client.get("/v2/nothing").json() == {"error": "Not Found"}


def test_the_api_docs_are_served_only_when_asked(site: Site, tmp_path: Path) -> None:
    """/docs loads Swagger UI from a CDN: not on the store LAN unless --api-docs."""
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        reply = site.client.get(path)
        assert reply.status_code == 404 and reply.json() == {"error": "Not Found"}, path
    with TestClient(create_app(tmp_path / "server.db", api_docs=True)) as client:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert client.get(path).status_code == 200, path


# -- storage that cannot take a push: 503, never the kiosk's fault ---------------------------


def _limit_pages(conn: sqlite3.Connection) -> None:
    """Run in the writer process: the database may not grow (as on a full disk)."""
    pages = conn.connection.execute("PRAGMA page_count").fetchone()[0]
    conn.connection.execute(f"PRAGMA max_page_count = {pages}")


def _unlimit_pages(conn: sqlite3.Connection) -> None:
    conn.connection.execute("PRAGMA max_page_count = 1073741823")


def _assert_unavailable(reply: Any) -> None:
    assert reply.status_code == 503, reply.text
    assert reply.headers["retry-after"].isdigit() and int(reply.headers["retry-after"]) > 0
    assert list(reply.json()) == ["error"]


@pytest.fixture
def lone(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, Kiosk]]:
    conn = open_store(tmp_path / "server.db")
    yield conn, register(conn, tmp_path, "front-1")
    conn.close()


def test_a_write_lock_held_past_the_busy_timeout_is_503_with_retry_after(
        lone: tuple[sqlite3.Connection, Kiosk], tmp_path: Path) -> None:
    conn, kiosk = lone
    with TestClient(create_app(tmp_path / "server.db", busy_timeout_ms=50)) as client:
        site = Site(client, conn, kiosk, kiosk)
        assert site.push(kiosk, make_responses(1, 2)).ok  # the key is cached now
        before = snapshot(conn)
        other = open_store(tmp_path / "server.db")
        other.connection.execute("BEGIN IMMEDIATE")  # e.g. a long report or a backup
        try:
            request, _ = kiosk.request(make_responses(3, 5))
            _assert_unavailable(site.send(request))
            _assert_unavailable(client.get("/v1/health"))
        finally:
            other.connection.execute("ROLLBACK")
            other.close()
        assert snapshot(conn) == before
        again = site.push(kiosk, make_responses(3, 5))
        assert again.ok and again.new == 5


def test_a_full_disk_is_503_with_retry_after_and_stores_nothing(
        lone: tuple[sqlite3.Connection, Kiosk], tmp_path: Path) -> None:
    conn, kiosk = lone
    with TestClient(create_app(tmp_path / "server.db")) as client:
        site = Site(client, conn, kiosk, kiosk)
        assert site.push(kiosk, make_responses(1, 2)).ok
        before = snapshot(conn)
        writer = client.app.state.deskpulse.database  # type: ignore[attr-defined]
        assert client.portal is not None
        client.portal.call(writer.run, _limit_pages)
        try:
            request, _ = kiosk.request(make_responses(3, 300))
            _assert_unavailable(site.send(request))
        finally:
            client.portal.call(writer.run, _unlimit_pages)
        assert snapshot(conn) == before
        again = site.push(kiosk, make_responses(3, 300))
        assert again.ok and again.new == 300


def test_a_server_clock_outside_2000_2100_sets_no_time_and_no_anchor(
        lone: tuple[sqlite3.Connection, Kiosk], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    conn, kiosk = lone
    now = [4102444801.0]  # a second after 2100-01-01
    with TestClient(create_app(tmp_path / "server.db", clock=lambda: now[0])) as client:
        site = Site(client, conn, kiosk, kiosk)
        for first in (1, 3):
            answer = site.push(kiosk, make_responses(first, 2))
            assert answer.ok and answer.acked == first + 1 and "time" not in answer.body
        now[0] = 0.0  # 1970: still wrong, and not said again
        answer = site.push(kiosk, make_responses(5, 2))
        assert answer.ok and "time" not in answer.body
        assert conn.connection.execute("SELECT count(*) FROM anchors").fetchone() == (0,)
        warnings = [r for r in caplog.records if "clock" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        now[0] = 1_790_000_000.0
        answer = site.push(kiosk, make_responses(7, 2))
        assert answer.ok and answer.body["time"] == 1_790_000_000
        assert conn.connection.execute("SELECT wall, source FROM anchors").fetchall() == [
            (1_790_000_000, RECEIPT_SOURCE)]


# -- against a real `deskpulse serve` -------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, db_target: str) -> Iterator[tuple[ServeProcess, Store]]:
    dbfile = db_target
    conn = open_store(dbfile)
    server = ServeProcess(dbfile)
    try:
        yield server, conn
    finally:
        server.stop()
        conn.close()
    assert not any("database is locked" in line for line in server.log), server.log


def _raw_exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        # The server may answer and close before reading everything.
        with contextlib.suppress(OSError):
            sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    return answer


def test_serve_end_to_end_over_http(served: tuple[ServeProcess, Store],
                                    tmp_path: Path) -> None:
    server, conn = served
    kiosk = register(conn, tmp_path, "desk-9")
    with PushClient(server.url) as client:
        for first in (1, 51, 101):
            request, nonce = kiosk.request(make_responses(first, 50))
            answer = client.send(request, kiosk.key, nonce)
            assert answer.ok and answer.acked == first + 49 and answer.new == 50
        request, nonce = kiosk.request(make_responses(101, 50))
        retry = client.send(request, kiosk.key, nonce)
        assert (retry.ok, retry.new, retry.duplicates) == (True, 0, 50)
        replay = client.send(request, kiosk.key, nonce)
        assert replay.status == 409 and not replay.verified
    assert len(conn.responses_of("desk-9")) == 150

    # Checks that only a real HTTP server can show: chunked bodies, a huge body.
    head = (f"POST {batch_path('desk-9')} HTTP/1.1\r\nHost: x\r\n"
            f"Content-Type: {signing.CONTENT_TYPE}\r\nX-DeskPulse-Nonce: 1.99\r\n"
            f"X-DeskPulse-Signature: {'0' * 64}\r\n")
    chunked = _raw_exchange(server.port, (head + "Transfer-Encoding: chunked\r\n\r\n"
                                          "5\r\nhello\r\n0\r\n\r\n").encode())
    assert chunked.startswith(b"HTTP/1.1 411 ")
    huge = _raw_exchange(server.port, (head + "Content-Length: 200000\r\n\r\n").encode()
                         + b"x" * 200000)
    assert huge.startswith(b"HTTP/1.1 413 ")
    assert len(conn.responses_of("desk-9")) == 150
    assert server.healthy()


def test_serve_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(Exception, match="cannot listen on 127.0.0.1"):
            ServeProcess(tmp_path / "d.db", port=port)


@dataclass
class LoadResult:
    answers: list[PushAnswer] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    network_errors: int = 0


def _push_until_acked(url: str | list[str], kiosk: Kiosk, batches: int, size: int,
                      result: LoadResult, lock: threading.Lock,
                      start: threading.Barrier | None = None,
                      progress: Callable[[], None] = lambda: None) -> None:
    """What a kiosk does: push each batch until an answer verifies; a network error or
    a 5xx means retry with a new nonce, as the firmware's backoff would. Given several
    servers, each attempt goes to the next one, as behind a load balancer."""
    rng = random.Random(kiosk.device_id)
    if start is not None:
        start.wait(PATIENCE)
    clients = [PushClient(u, timeout=30) for u in ([url] if isinstance(url, str) else url)]
    turn = rng.randrange(len(clients))
    try:
        for b in range(batches):
            responses = make_responses(1 + b * size, size)
            for _attempt in range(400):
                request, nonce = kiosk.request(responses)
                turn += 1
                try:
                    answer = clients[turn % len(clients)].send(request, kiosk.key, nonce)
                except (OSError, http.client.HTTPException):
                    with lock:
                        result.network_errors += 1
                    time.sleep(rng.uniform(0.02, 0.1))
                    continue
                if answer.status >= 500:
                    time.sleep(rng.uniform(0.02, 0.1))
                    continue
                with lock:
                    result.answers.append(answer)
                    if not answer.ok or answer.acked != responses[-1].seq:
                        result.failures.append(f"{kiosk.device_id}: {answer}")
                progress()
                break
            else:
                with lock:
                    result.failures.append(f"{kiosk.device_id} batch {b}: never acked")
                return
    finally:
        for client in clients:
            client.close()


def _check_exactly_once(conn: Store, kiosks: list[Kiosk], expected: int) -> None:
    for kiosk in kiosks:
        seqs = [r["seq"] for r in conn.responses_of(kiosk.device_id)]
        assert seqs == list(range(1, expected + 1)), kiosk.device_id


@pytest.mark.slow
def test_many_kiosks_push_at_once(served: tuple[ServeProcess, Store],
                                  tmp_path: Path) -> None:
    server, conn = served
    devices, batches, size = 50, 4, 50
    kiosks = [register(conn, tmp_path, f"k{n:02d}") for n in range(devices)]
    result, lock = LoadResult(), threading.Lock()
    start = threading.Barrier(devices + 1)
    threads = [threading.Thread(target=_push_until_acked,
                                args=(server.url, k, batches, size, result, lock, start))
               for k in kiosks]
    for t in threads:
        t.start()
    start.wait(PATIENCE)
    # Meanwhile a serial sync writes to the same database from this process.
    serial_conn = open_store(server.db_path)
    for b in range(batches):
        serial_conn.store_batch("usb-1", make_responses(1 + b * size, size), [], {},
                       "serial")
    serial_conn.close()
    for t in threads:
        t.join(PATIENCE)
    assert not any(t.is_alive() for t in threads)
    assert result.failures == []
    assert result.network_errors == 0
    assert len(result.answers) == devices * batches
    assert sum(a.new for a in result.answers) == devices * batches * size
    assert sum(a.duplicates for a in result.answers) == 0
    _check_exactly_once(conn, kiosks, batches * size)
    assert len(conn.responses_of("usb-1")) == batches * size


@pytest.mark.slow
def test_a_server_killed_mid_load_and_restarted_loses_and_doubles_nothing(
        tmp_path: Path, db_target: str) -> None:
    dbfile = db_target
    conn = open_store(dbfile)
    devices, batches, size = 20, 10, 50
    kiosks = [register(conn, tmp_path, f"k{n:02d}") for n in range(devices)]
    first = ServeProcess(dbfile)
    url, port = first.url, first.port
    result, lock = LoadResult(), threading.Lock()
    acked = 0
    some_acked = threading.Event()

    def progress() -> None:
        nonlocal acked
        with lock:
            acked += 1
            if acked >= devices * batches // 4:
                some_acked.set()

    threads = [threading.Thread(target=_push_until_acked,
                                args=(url, k, batches, size, result, lock, None, progress))
               for k in kiosks]
    for t in threads:
        t.start()
    try:
        assert some_acked.wait(PATIENCE)
        first.kill()  # in the middle of the load: requests in flight get no answer
        second = ServeProcess(dbfile, port=port)
    except BaseException:
        first.kill()
        raise
    try:
        for t in threads:
            t.join(PATIENCE)
        assert not any(t.is_alive() for t in threads)
    finally:
        second.stop()
    assert result.failures == []
    assert result.network_errors > 0  # the kill did cut requests off
    assert len(result.answers) == devices * batches
    _check_exactly_once(conn, kiosks, batches * size)
    # Every response stored was counted new exactly once, in an answer or in a commit
    # whose answer the kill swallowed (its retry then reported duplicates).
    stored = sum(conn.response_counts().values())
    assert stored == devices * batches * size
    assert sum(a.new for a in result.answers) <= stored
    assert not any("database is locked" in line for line in first.log + second.log)
    # The killed server's writer outlives it for a moment: answers it can no longer send
    # are dropped without a word (each kiosk sends its batch again).
    assert not any("Traceback" in line for line in first.log + second.log)
    conn.close()
