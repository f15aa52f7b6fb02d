"""Config over the air end to end: `deskpulse sim` kiosks (the real firmware on the
MicroPython unix port) push to a real `deskpulse serve` on 127.0.0.1. A template set for
their site with `deskpulse config set` reaches a kiosk at its next push: it fetches,
verifies, applies and shows the new question, and reports the version it runs. A kiosk
behind a man in the middle that changes the answer refuses it; a kiosk with a wrong key
gets nothing."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from test_wifi_e2e import BOARD, free_port, push_status, sessions, wait_until

from deskpulse import cli
from deskpulse.device import ota
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store

QUESTION = "Were we quick today?"


class TamperingProxy:
    """A man in the middle on loopback: relays each request to the server and its answer
    back, changing one letter in the body of every config fetch's answer."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.tampered = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, contextlib.suppress(OSError):
            request = _read_message(client)
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                upstream.sendall(request)
                answer = b"".join(iter(lambda: upstream.recv(65536), b""))
            if request.split(b" ", 2)[1].endswith(b"/config") and b"Were" in answer:
                answer = answer.replace(b"Were", b"Wore", 1)  # same length: still "whole"
                self.tampered += 1
            client.sendall(answer)

    def close(self) -> None:
        self.listener.close()


def _read_message(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def console(state: Path) -> str:
    return (state / "console.log").read_text(errors="replace")


@pytest.mark.slow
def test_a_site_template_reaches_its_kiosks_over_the_air(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db = tmp_path / "host.db"
    proxy = TamperingProxy(port)
    for name, server_url in (("k1", url), ("k2", url), ("k3", f"http://127.0.0.1:{proxy.port}")):
        assert cli.main(["devices", "add", name, "--server", server_url, "--db", str(db),
                         "-o", str(tmp_path / f"{name}.json")]) == 0
    # k2's file keeps the key it had before the key was replaced: a wrong key.
    assert cli.main(["devices", "rotate-key", "k2", "--db", str(db), "--server", url,
                     "-o", str(tmp_path / "k2-new.json")]) == 0
    with open_store(db) as store:
        store.add_site("acme")
        store.add_site("acme/lyon", "store")
        for name in ("k1", "k2", "k3"):
            store.assign_kiosk(name, "acme/lyon")
    assert cli.main(["config", "set", "--site", "acme", "--db", str(db),
                     f"texts.en.question={QUESTION}", "sync.push_interval_s=5"]) == 0
    fast_push = tmp_path / "fast-push.json"
    fast_push.write_text(json.dumps({"sync": {"push_interval_s": 5}}))
    script = tmp_path / "customers.txt"
    script.write_text("\n".join(sessions(0, 3)) + "\n")
    devices = {name: Simulator(BOARD, tmp_path / name, script=script, config=fast_push,
                               device_config=tmp_path / f"{name}.json")
               for name in ("k1", "k2", "k3")}
    server = ServeProcess(db, port=port)
    try:
        for device in devices.values():
            device.start()

        def reported(name: str) -> Any:
            with open_store(db) as store:
                latest = store.latest_sync(name)
            return None if latest is None else latest.status.get("config_version")

        wait_until(lambda: reported("k1") == 1, 90, "k1 to run and report version 1")
        wait_until(lambda: (push_status(devices["k3"]).get("config") or {}).get("fetches", 0)
                   >= 1 and reported("k3") is not None, 90, "k3's refused fetch")
        wait_until(lambda: push_status(devices["k2"])["config_problem"] is not None, 90,
                   "k2's refused push")
        status = {name: push_status(device) for name, device in devices.items()}
        with open_store(db) as store:
            states = {s.device_id: s for s in ota.config_states(store)}
    finally:
        for device in devices.values():
            device.stop()
        server.stop()
        proxy.close()

    # k1 took it: its idle screen asks the new question, and the server knows.
    assert f"[screen] idle: {QUESTION}" in console(tmp_path / "k1")
    assert status["k1"]["config"]["applied"] == 1
    assert states["k1"].state == "up to date" and states["k1"].running == 1
    # k3's answers were changed on the way: refused, never applied, tried again only
    # after a push that names the version (no loop of fetches).
    assert proxy.tampered >= 1
    assert "signature" in status["k3"]["config"]["last_error"]
    assert status["k3"]["config"]["applied"] == 0
    assert QUESTION not in console(tmp_path / "k3") and "Wore" not in console(tmp_path / "k3")
    assert states["k3"].state == "behind" and states["k3"].running == 0
    # k2 signs with a wrong key: refused at the push, it never learns of the config.
    assert "401" in status["k2"]["config_problem"]
    assert status["k2"]["config"] is None
    assert QUESTION not in console(tmp_path / "k2")
    assert states["k2"].state == "never synced"
