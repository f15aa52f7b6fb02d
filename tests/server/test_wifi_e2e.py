"""WiFi push end to end: two `deskpulse sim` kiosks (the real firmware in micropython)
registered with `deskpulse devices add`, configured with `--device-config`, push to a real
`deskpulse serve` on 127.0.0.1. The server is killed while they push and restarted on the
same port; one kiosk's network goes down for a while (`wifi off` / `wifi on`). The
database ends with every scripted response exactly once, and the kiosks show the backoff
they went through."""

from __future__ import annotations

import json
import socket
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import serial

from conftest import BOARDS
from deskpulse import cli
from deskpulse.device.link import Link
from deskpulse.device.session import Session
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.sim.simulator import Simulator
from deskpulse.store import open_store

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"
K2_PUSH_S = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sessions(first: int, n: int) -> list[str]:
    lines = []
    for i in range(first, first + n):
        lines += [f"rate {1 + i % 4}", "yes" if i % 3 else "no"]
    return lines


def ratings(n: int) -> list[int]:
    return [1 + i % 4 for i in range(n)]


def told(n: int) -> Counter[str]:
    return Counter("yes" if i % 3 else "no" for i in range(n))


def stored(db_path: Path, device_id: str) -> list[dict[str, Any]]:
    conn = open_store(db_path)
    try:
        return conn.responses_of(device_id)
    finally:
        conn.close()


def push_status(device: Simulator) -> dict[str, Any]:
    """The kiosk's push status over its console (HELLO only: nothing is pulled or freed)."""
    port = serial.Serial(device.console_path, timeout=0.2)
    try:
        port.reset_input_buffer()
        return Session(Link(port, timeout=10)).hello().status["push"]
    finally:
        port.close()


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.mark.slow
def test_two_kiosks_push_through_a_server_restart_and_a_network_outage(
    tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db_path = tmp_path / "host.db"
    for name in ("k1", "k2"):
        assert cli.main(["devices", "add", name, "--server", url, "--wifi-ssid", "store",
                         "--wifi-password", "pw-not-shown", "--db", str(db_path),
                         "-o", str(tmp_path / f"{name}.json")]) == 0
    # Scripts: the push interval and the backoff run on the kiosk's clock, virtual while
    # the script plays (its waits take no real time) and the wall clock after it. k1
    # goes through its WiFi outage on the virtual clock; k2 pushes its first ten, then
    # its script ends with ten answers waiting, and it meets the dead server on the wall
    # clock, pushing every K2_PUSH_S. Neither script exits: the test stops them.
    # The server must die before k2's wall-clock push of those ten, and k1 (another
    # process) must have all of its twenty stored first: K2_PUSH_S is the room k1 has to
    # catch up on a loaded machine (at 5 s, k2 sometimes pushed all twenty first and
    # never met the dead server).
    k1 = (sessions(0, 8) + ["wait 1"] * 40 + ["wifi off"] + sessions(8, 8)
          + ["wait 1"] * 60 + ["wifi on"] + sessions(16, 4) + ["wait 5"] * 300)
    k2 = sessions(0, 10) + ["wait 40"] + sessions(10, 10)
    fast_push = tmp_path / "fast-push.json"
    fast_push.write_text(json.dumps({"sync": {"push_interval_s": K2_PUSH_S}}))
    scripts = {}
    for name, lines in (("k1", k1), ("k2", k2)):
        scripts[name] = tmp_path / f"{name}.txt"
        scripts[name].write_text("\n".join(lines) + "\n")

    server = ServeProcess(db_path, port=port)
    devices = {name: Simulator(BOARD, tmp_path / name, script=scripts[name],
                               config=fast_push if name == "k2" else None,
                               device_config=tmp_path / f"{name}.json")
               for name in ("k1", "k2")}
    try:
        for device in devices.values():
            device.start()
        # The first pushes arrive (all of k1's, through its outage); then the server dies
        # under k2's feet.
        wait_until(lambda: len(stored(db_path, "k2")) >= 10 and len(stored(db_path, "k1")) == 20,
                   60, "k2's first push and all of k1's")
        server.kill()
        assert len(stored(db_path, "k2")) < 20, "k2 pushed everything before the server died"
        wait_until(lambda: push_status(devices["k2"])["failures"] >= 2, 60 + K2_PUSH_S,
                   "k2 to fail against the dead server")
        server = ServeProcess(db_path, port=port)
        wait_until(lambda: len(stored(db_path, "k1")) == 20 and len(stored(db_path, "k2")) == 20,
                   90, "every response on the server")
        status = {name: push_status(device) for name, device in devices.items()}
    finally:
        for device in devices.values():
            device.stop()
        server.stop()

    for name, count in (("k1", 20), ("k2", 20)):
        rows = stored(db_path, name)
        assert [r["seq"] for r in rows] == list(range(1, count + 1))
        assert [r["rating"] for r in rows] == ratings(count)
    # What the manager reads: `deskpulse report` counts exactly the scripted customers.
    # (Scripted taps come fast, so some are flagged rapid: every response is included.)
    for name, count in (("k1", 20), ("k2", 20)):
        out = tmp_path / f"report-{name}.json"
        assert cli.main(["report", "--db", str(db_path), "--device", name, "--format", "json",
                         "--include-flagged", "-o", str(out)]) == 0
        report = json.loads(out.read_text())
        assert report["responses"] == count
        assert report["ratings"] == {"4": {str(face): ratings(count).count(face)
                                           for face in range(1, 5)}}
        assert report["told_next"] == {"yes": told(count)["yes"], "no": told(count)["no"],
                                       "no_answer": 0}
    # k2 met the dead server: failures, each followed by a growing, jittered delay.
    assert status["k2"]["failures_total"] >= 2
    assert status["k2"]["max_backoff_ms"] >= 5000  # the second step: 10 s, half fixed
    assert status["k2"]["failures"] == 0 and status["k2"]["pushes"] >= 2
    # k1's network went down: connection attempts failed like a real one's.
    assert status["k1"]["failures_total"] >= 1 and status["k1"]["failures"] == 0
    for name in ("k1", "k2"):
        text = str(status[name])
        assert "pw-not-shown" not in text
        assert (tmp_path / f"{name}.json").read_text().split('"device_key": "')[1][:64] \
            not in text
