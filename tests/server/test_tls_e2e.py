"""HTTPS end to end: `deskpulse serve --certfile/--keyfile` with a self-signed
certificate made here, and a `deskpulse sim` kiosk (the real firmware on MicroPython's
unix port, its TLS from mbedTLS) registered with `devices add --server https://...
--server-cert`. Served an impostor's certificate first, the kiosk sends nothing and says
why; served the certificate it pins, it pushes every response exactly once. And the
server refuses, in one line and before it listens, files it could not serve with."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import serial
from test_wifi_e2e import free_port, push_status, ratings, sessions, stored, wait_until

from certs import make_cert
from conftest import BOARDS
from deskpulse import cli
from deskpulse.device.link import Link
from deskpulse.device.session import Session
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.sim.simulator import Simulator

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"


def set_clock(device: Simulator) -> None:
    """What a first serial sync does for a kiosk whose store blocks NTP: https needs it."""
    port = serial.Serial(device.console_path, timeout=0.2)
    try:
        port.reset_input_buffer()
        Session(Link(port, timeout=10)).set_time(int(time.time()))
    finally:
        port.close()


@pytest.mark.slow
def test_a_kiosk_refuses_an_impostor_then_pushes_exactly_once_over_https(
        tmp_path: Path) -> None:
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    db_path = tmp_path / "host.db"
    real = make_cert(tmp_path / "certs", "server")
    impostor = make_cert(tmp_path / "certs", "impostor")  # the same names, another key
    assert cli.main(["devices", "add", "k1", "--server", url, "--server-cert",
                     str(real.certfile), "--db", str(db_path),
                     "-o", str(tmp_path / "k1.json")]) == 0
    assert json.loads((tmp_path / "k1.json").read_text())["sync"]["server_cert"] == real.pem
    fast_push = tmp_path / "fast-push.json"
    fast_push.write_text(json.dumps({"sync": {"push_interval_s": 5}}))
    script = tmp_path / "k1.txt"
    script.write_text("\n".join(sessions(0, 10)) + "\n")  # then on the wall clock
    server = ServeProcess(db_path, port=port, extra_args=(
        "--certfile", str(impostor.certfile), "--keyfile", str(impostor.keyfile)))
    device = Simulator(BOARD, tmp_path / "k1", script=script, config=fast_push,
                       device_config=tmp_path / "k1.json")
    try:
        assert server.url == url
        device.start()
        set_clock(device)
        wait_until(lambda: (push_status(device)["last_error"] or "").startswith(
            "server certificate rejected"), 60, "the kiosk to refuse the impostor")
        refused = push_status(device)
        assert stored(db_path, "k1") == []
        server.stop()
        server = ServeProcess(db_path, port=port, extra_args=(
            "--certfile", str(real.certfile), "--keyfile", str(real.keyfile)))
        wait_until(lambda: len(stored(db_path, "k1")) == 10, 90, "the kiosk's responses")
        # The server commits before it answers: the kiosk frees the last responses a
        # moment after the database holds them.
        wait_until(lambda: push_status(device)["failures"] == 0
                   and push_status(device)["freed"] >= 10, 30, "the push's success")
        status = push_status(device)
    finally:
        device.stop()
        server.stop()
    assert refused["last_error"] == ("server certificate rejected: The certificate is not "
                                     "correctly signed by the trusted CA")
    assert refused["pushes"] == 0 and refused["failures"] >= 1
    rows = stored(db_path, "k1")
    assert [r["seq"] for r in rows] == list(range(1, 11))
    assert [r["rating"] for r in rows] == ratings(10)
    assert status["pushes"] >= 1 and status["freed"] == 10


def test_serve_refuses_https_files_it_cannot_use_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = make_cert(tmp_path, "good")
    other = make_cert(tmp_path, "other")
    locked = make_cert(tmp_path, "locked", passphrase=b"secret")
    db = tmp_path / "host.db"
    cases = [
        (["--certfile", str(good.certfile)], "HTTPS needs both --certfile and --keyfile"),
        (["--certfile", str(tmp_path / "nope.crt"), "--keyfile", str(good.keyfile)],
         "no such file"),
        (["--certfile", str(good.certfile), "--keyfile", str(locked.keyfile)],
         "is protected by a passphrase"),
        (["--certfile", str(good.certfile), "--keyfile", str(other.keyfile)],
         "the key does not belong to the certificate"),
        (["--certfile", str(good.keyfile), "--keyfile", str(good.keyfile)],
         "not a PEM certificate or key"),
    ]
    for args, why in cases:
        assert cli.main(["serve", "--db", str(db), "--port", "0", *args]) != 0
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("deskpulse: ") and why in err[0], err
    assert not db.exists()  # refused before anything was opened
