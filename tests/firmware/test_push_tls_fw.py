"""The WiFi push over HTTPS, device side: firmware/kiosk/push.py with kiosk/https.py on
the real MicroPython interpreter (its `tls` module, mbedTLS), pushing to
tests/pushserver.py serving TLS with a self-signed certificate made here. The kiosk
verifies the server against the certificate its config pins, or sends nothing."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from test_push_fw import BOARD, DEVICE, KEY, config, drive

from certs import Cert, make_cert
from conftest import mpy_json
from pushserver import PushServer


def drive_tls(tmp_path: Path, cfg: dict[str, Any], records: int, pushes: int,
              clock_known: bool = True) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """test_push_fw.drive with the kiosk's clock set first, as a host sync or NTP would
    (unless clock_known is False): https needs it."""
    return drive(tmp_path, cfg, records, pushes, wall=int(time.time()) if clock_known else 0)


@pytest.fixture
def cert(tmp_path: Path) -> Cert:
    return make_cert(tmp_path / "certs", "server")


@pytest.fixture
def server(tmp_path: Path, cert: Cert):
    with PushServer(tmp_path / "host.db", {DEVICE: KEY}, tls=(cert.certfile, cert.keyfile)) \
            as srv:
        yield srv


def test_a_pinned_certificate_carries_the_push_over_https_exactly_once(
        tmp_path: Path, server: PushServer, cert: Cert) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    steps, status = drive_tls(tmp_path, config(server.url, server_cert=cert.pem),
                              records=30, pushes=2)
    assert steps[0]["last_error"] is None, steps[0]
    assert [s["acked_upto"] for s in steps] == [30, 30]
    assert steps[0]["pushes"] == 1 and steps[0]["freed"] == 30
    assert server.stored(DEVICE) == list(range(1, 31))
    # Two TLS connections: the second request had nothing left to carry.
    assert [(len(s.seqs), s.new, s.duplicates) for s in server.seen] == [(30, 30, 0), (0, 0, 0)]
    assert status["log"]["unacked"] == 0


def test_a_kiosk_pinned_to_another_certificate_sends_nothing_until_it_is_fixed(
        tmp_path: Path, server: PushServer, cert: Cert) -> None:
    other = make_cert(tmp_path / "certs", "impostor")
    steps, status = drive_tls(tmp_path, config(server.url, server_cert=other.pem),
                              records=12, pushes=2)
    for step in steps:
        assert step["last_error"].startswith("server certificate rejected: The certificate "
                                              "is not correctly signed"), step
        assert step["acked_upto"] == 0 and step["pushes"] == 0
    assert [s["failures"] for s in steps] == [1, 2]
    assert server.seen == [] and server.stored(DEVICE) == []  # not a byte of a request
    assert status["log"]["unacked"] == 12  # on flash still
    # Fixed (the right certificate installed): the same responses go, once.
    steps, status = drive_tls(tmp_path, config(server.url, server_cert=cert.pem),
                              records=0, pushes=1)
    assert steps[0]["last_error"] is None and steps[0]["acked_upto"] == 12
    assert server.stored(DEVICE) == list(range(1, 13))
    assert [s.new for s in server.seen] == [12]


@pytest.mark.parametrize(("hosts", "valid_days", "reason"), [
    (("127.0.0.1",), (-30, -1), "The certificate validity has expired"),
    (("127.0.0.1",), (1, 30), "The certificate validity starts in the future"),
    (("deskpulse.example", "192.0.2.7"), (-1, 30),
     "The certificate Common Name (CN) does not match with the expected CN"),
], ids=["expired", "not-yet-valid", "another-host"])
def test_a_certificate_out_of_date_or_for_another_host_is_refused(
        tmp_path: Path, hosts: tuple[str, ...], valid_days: tuple[int, int],
        reason: str) -> None:
    """Pinning the very certificate the server presents is not enough: its dates (by the
    kiosk's clock) and the host of sync.server_url must match it too."""
    cert = make_cert(tmp_path / "certs", "server", hosts=hosts, valid_days=valid_days)
    with PushServer(tmp_path / "host.db", {DEVICE: KEY},
                    tls=(cert.certfile, cert.keyfile)) as server:
        steps, status = drive_tls(tmp_path, config(server.url, server_cert=cert.pem),
                                  records=5, pushes=1)
        assert server.seen == [] and server.stored(DEVICE) == []
    assert steps[0]["last_error"] == f"server certificate rejected: {reason}"
    assert status["log"]["unacked"] == 5


def test_https_waits_for_the_clock_and_never_connects_before(
        tmp_path: Path, server: PushServer, cert: Cert) -> None:
    steps, _ = drive_tls(tmp_path, config(server.url, server_cert=cert.pem),
                         records=5, pushes=1, clock_known=False)
    assert steps[0]["last_error"].startswith("https waits for the clock")
    assert steps[0]["acked_upto"] == 0
    assert server.seen == []


def test_a_certificate_mbedtls_cannot_read_is_a_config_problem(
        tmp_path: Path, server: PushServer) -> None:
    garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
    steps, _ = drive_tls(tmp_path, config(server.url, server_cert=garbage),
                         records=5, pushes=1)
    assert steps[0]["config_problem"] == ("sync.server_cert: certificate 1 is not one "
                                          "MicroPython can read")
    assert server.seen == []


def validate(sync: dict[str, Any]) -> list[str]:
    return mpy_json(f"""
from kiosk import config
from harness import emit
emit(config.validate({{"sync": {sync!r}}})[1])
""")[0]


def test_the_validator_refuses_https_without_a_certificate_and_a_certificate_without_https(
        tmp_path: Path, cert: Cert) -> None:
    url = "https://pushes.example:8443"
    assert validate({"server_url": url, "server_cert": cert.pem}) == []
    assert validate({"server_url": url}) == [
        "sync.server_url is https:// but sync.server_cert is empty: give the server's "
        "certificate (or its CA's) in PEM"]
    assert validate({"server_url": "http://10.0.0.2:8080", "server_cert": cert.pem}) == [
        "sync.server_cert is set but sync.server_url is not https://: the push would not "
        "use it"]
    assert validate({"server_url": url, "server_cert": "MIIB..."}) == [
        "sync.server_cert must be PEM: -----BEGIN CERTIFICATE----- ... "
        "-----END CERTIFICATE-----"]
    assert validate({"server_url": url, "server_cert": "x" * 3073})[0] == (
        "sync.server_cert is longer than 3072 characters")


def test_a_plain_http_kiosk_never_loads_tls(tmp_path: Path) -> None:
    """The https code is imported for an https:// server only: a store LAN's kiosk pays
    nothing for it."""
    out = mpy_json("""
import sys
from harness import emit
from kiosk import push
emit(sorted(m for m in sys.modules if m in ("tls", "ssl", "kiosk.https")))
""")
    assert out == [[]]


# A kiosk pushing to a server that takes the connection and never answers the TLS
# handshake, while a task polls as the buttons' does: emits [polls during the push, the
# push's error].
SILENT_SERVER = """
import asyncio, json, sys
from harness import emit, kiosk_from_plan

plan, k = kiosk_from_plan(sys.argv[-1])
k.log.append(1, 4, 0, 20, 0, k.boot, 10, 0, 0)
k.push.step_timeout_ms = k.push.answer_timeout_ms = 1500
polls = [0]

async def poll_buttons():
    while True:
        k.poll_inputs()
        polls[0] += 1
        await asyncio.sleep_ms(20)

async def main():
    poller = asyncio.create_task(poll_buttons())
    await k.push.push_once()
    poller.cancel()
    emit([polls[0], k.push.last_error])

asyncio.run(main())
"""


def test_the_buttons_are_polled_while_the_handshake_waits_for_the_server(
        tmp_path: Path, cert: Cert) -> None:
    """Every network wait of the handshake yields to the survey (the socket is
    non-blocking, the handshake runs inside the request's timed writes): a server that
    never answers costs the push its step timeout, and the buttons nothing."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the kernel takes the connection; nobody reads the hello
        url = f"https://127.0.0.1:{silent.getsockname()[1]}"
        (tmp_path / "state").mkdir()
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps({
            "board": str(BOARD), "state": str(tmp_path / "state"), "wall": int(time.time()),
            "config": config(url, server_cert=cert.pem)}))
        polls, error = mpy_json(SILENT_SERVER, str(plan), heap="2M", timeout=60)[0]
    assert error == "TimeoutError: "  # the step timeout, not a refusal
    assert polls >= 20  # 1.5 s of waiting, a poll every 20 ms
