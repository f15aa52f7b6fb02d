"""Config over the air on `deskpulse serve` (docs/wifi.md, "Config over the air"), in
process (FastAPI's TestClient) on every engine: the push answer names the desired
version, a fetch is signed and replay-protected like a push, and its answer is signed
over the fetch's nonce."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from deskpulse.device import ota, registration
from deskpulse.protocol import signing
from deskpulse.server.app import create_app
from deskpulse.sim.push_client import build_request, read_answer, request_body
from deskpulse.store import open_store
from deskpulse.store.base import Store

DEVICE = "front-1"
STATUS = {"boot": 1, "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0",
          "config_version": 0}


class Server:
    def __init__(self, client: TestClient, store: Store, key: bytes) -> None:
        self.client = client
        self.store = store
        self.key = key
        self.count = 0

    def nonce(self) -> str:
        self.count += 1
        return f"1.{self.count}"

    def push(self) -> dict[str, object]:
        nonce = self.nonce()
        request = build_request(DEVICE, self.key, nonce,
                                request_body(STATUS, [], [], boot=1, uptime_s=5))
        reply = self.client.post(request.path, content=request.body, headers=request.headers)
        answer = read_answer(self.key, nonce, reply.status_code,
                             reply.headers.get("x-deskpulse-signature"), reply.content)
        assert answer.verified, reply.text
        return answer.body

    def fetch(self, *, key: bytes | None = None, nonce: str | None = None,
              path: str = f"/v1/devices/{DEVICE}/config") -> tuple[int, str, bytes, str]:
        nonce = nonce or self.nonce()
        body = b'{"running":0}\n'
        signature = signing.sign_request(key or self.key, "POST", path, DEVICE, nonce, body)
        reply = self.client.post(path, content=body, headers={
            "Content-Type": "application/json", "X-DeskPulse-Nonce": nonce,
            "X-DeskPulse-Signature": signature})
        return (reply.status_code, nonce, reply.content,
                reply.headers.get("x-deskpulse-signature", ""))


@pytest.fixture
def server(tmp_path: Path, db_target: str) -> Iterator[Server]:
    db = db_target
    store = open_store(db)
    out = tmp_path / "front-1.json"
    registration.add_device(store, DEVICE, "http://127.0.0.1:8080", out)
    key = bytes.fromhex(json.loads(out.read_text())["sync"]["device_key"])
    store.add_site("acme")
    store.add_site("acme/lyon", "store")
    store.assign_kiosk(DEVICE, "acme/lyon")
    with TestClient(create_app(db)) as client:
        yield Server(client, store, key)
    store.close()


def test_the_push_answer_names_the_version_and_the_fetch_brings_it_signed(
        server: Server) -> None:
    assert "config" not in server.push()  # not managed: the answer says nothing
    ota.change_layer(server.store, "site", "acme", {"texts": {"en": {"question": "Quick?"}}})
    assert server.push()["config"] == 1
    # PostgreSQL reads the version in the batch's own function: a change is seen at once.
    ota.change_layer(server.store, "site", "acme", {"texts": {"en": {"question": "Quick?"}},
                                                    "scale": 3})
    assert server.push()["config"] == 2
    code, nonce, body, signature = server.fetch()
    assert code == 200
    assert signing.signature_matches(signing.sign_config(server.key, nonce, body), signature)
    config = json.loads(body)
    assert config["version"] == 2 and config["texts"]["en"]["question"] == "Quick?"
    assert "device_id" not in config and "sync" not in config
    # Bound to the nonce: the same answer does not verify for another request.
    assert not signing.signature_matches(signing.sign_config(server.key, "1.99", body),
                                         signature)


def test_a_fetch_is_refused_without_the_key_or_a_fresh_nonce(server: Server) -> None:
    ota.change_layer(server.store, "site", "acme", {"scale": 3})
    code, _, body, signature = server.fetch(key=bytes(32))
    assert code == 401 and signature == "" and b"scale" not in body
    code, nonce, _, _ = server.fetch()
    assert code == 200
    code, _, body, signature = server.fetch(nonce=nonce)  # replayed
    assert code == 409 and signature == "" and b"scale" not in body
    # Another device's path with this key: the signature covers the path.
    code, _, _, _ = server.fetch(path="/v1/devices/back-2/config")
    assert code == 404


def test_a_kiosk_without_a_desired_config_gets_a_404(server: Server) -> None:
    code, _, body, _ = server.fetch()
    assert code == 404 and "holds no config" in json.loads(body)["error"]
