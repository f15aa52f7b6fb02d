"""Config over the air through HTTPS, device side: the push and the config fetch it leads
to (firmware/kiosk/ota.py) over kiosk/https.py on the real MicroPython interpreter (its
`tls` module, mbedTLS), against tests/pushserver.py serving TLS with certificates made
here. The fetch is verified against the certificate the kiosk pins, like the push, and a
config the server sends never changes that certificate (kiosk.config.KEPT_SYNC)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import test_push_tls_fw
from test_ota_fw import DEVICE, drive, kiosk_config, served

from certs import Cert, make_cert
from pushserver import PushServer

# The fixtures: the server's certificate, and tests/pushserver.py serving TLS with it for
# the kiosk both modules drive (the same id and key).
cert = test_push_tls_fw.cert
server = test_push_tls_fw.server

IMPOSTOR_REFUSAL = ("CertificateRejected: server certificate rejected: The certificate is "
                    "not correctly signed by the trusted CA")


def https_kiosk(url: str, pinned: Cert) -> dict[str, Any]:
    config = kiosk_config(url)
    config["sync"]["server_cert"] = pinned.pem
    return config


@pytest.fixture
def impostor(tmp_path: Path) -> Cert:
    return make_cert(tmp_path / "certs", "impostor")


@pytest.mark.parametrize("sent_cert", ["absent", "impostor", "empty"])
def test_a_config_fetched_over_https_is_applied_and_keeps_the_pinned_certificate(
        tmp_path: Path, server: PushServer, cert: Cert, impostor: Cert, sent_cert: str
) -> None:
    """Whatever the served config says of sync.server_cert (nothing, as deskpulse serve
    sends; another certificate; none at all), the kiosk keeps its own, and the pushes after
    the apply still verify the real server by it."""
    config = served(7, "Were we quick enough?")
    if sent_cert != "absent":
        config["sync"]["server_cert"] = impostor.pem if sent_cert == "impostor" else ""
    server.configs[DEVICE] = config
    steps, end = drive(tmp_path, https_kiosk(server.url, cert), pushes=3, fed=1,
                       wall=int(time.time()))
    assert steps[0]["push_error"] is None, steps[0]
    assert steps[0]["version"] == 7 and steps[0]["question"] == "Were we quick enough?"
    assert steps[0]["ota"] == {"desired": 7, "fetches": 1, "applied": 1, "rejected": None,
                               "last_error": None}
    # The push that reports version 7 went over TLS, verified by the kept certificate.
    assert steps[1]["push_error"] is None and steps[1]["ota"]["fetches"] == 1
    assert [(s.nonce, s.code) for s in server.seen[:3]] == [("1.1", 200), ("1.2", 200),
                                                            ("1.3", 200)]
    assert server.stored(DEVICE) == [1]
    saved = end["file"]
    assert end["problems"] == [] and saved["version"] == 7
    assert saved["sync"]["server_cert"] == cert.pem
    assert saved["sync"]["server_url"] == server.url
    assert saved["sync"]["push_interval_s"] == 60
    assert end["status"]["config_version"] == 7


def test_a_fetch_that_meets_an_impostor_applies_nothing_and_does_not_loop(
        tmp_path: Path, server: PushServer, cert: Cert, impostor: Cert) -> None:
    """The push is answered by the real server; before the fetch, another certificate
    takes over the address (an impostor). The fetch sends nothing and applies nothing,
    says why in the status, and is not tried again while the pushes fail the same way."""
    server.configs[DEVICE] = served(7, "Were we quick enough?")
    server.impostor_after_push = (impostor.certfile, impostor.keyfile)
    steps, end = drive(tmp_path, https_kiosk(server.url, cert), pushes=3, fed=1,
                       wall=int(time.time()))
    assert steps[0]["push_error"] is None, steps[0]
    assert steps[0]["ota"] == {"desired": 7, "fetches": 1, "applied": 0, "rejected": None,
                               "last_error": IMPOSTOR_REFUSAL}
    for step in steps:
        assert step["version"] == 3 and step["question"] == "How was your visit?"
    for step in steps[1:]:
        assert step["push_error"].startswith("server certificate rejected: The certificate "
                                             "is not correctly signed"), step
        assert step["ota"]["fetches"] == 1  # no answer names the version again: no fetch
    assert [s.nonce for s in server.seen] == ["1.1"]  # not a byte of the fetch or later
    assert end["file"]["version"] == 3 and end["problems"] == []
    assert end["file"]["sync"]["server_cert"] == cert.pem
    assert end["status"]["push"]["config"]["last_error"] == IMPOSTOR_REFUSAL
    assert not (tmp_path / "state" / "config.json.new").exists()
