"""The certificate `deskpulse devices add --server-cert` puts in a kiosk's config."""

from __future__ import annotations

from pathlib import Path

import pytest

from certs import make_cert
from deskpulse.device.registration import device_config
from deskpulse.device.server_cert import MAX_CERT_CHARS, read_server_cert
from deskpulse.errors import DeskPulseError


def test_only_the_certificates_are_kept_and_what_a_kiosk_cannot_use_is_refused(
        tmp_path: Path) -> None:
    one, two = make_cert(tmp_path, "one"), make_cert(tmp_path, "two")
    bundle = tmp_path / "bundle.pem"
    bundle.write_text("Subject: a comment openssl writes\n" + one.pem + "\n" + two.pem)
    assert read_server_cert(bundle) == one.pem + two.pem
    bad = tmp_path / "bad.pem"
    for text, why in [
        (one.keyfile.read_text() + one.pem, "holds a private key"),
        ("hello", "holds no PEM certificate"),
        ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
         "cannot be read"),
        (one.pem * (MAX_CERT_CHARS // len(one.pem) + 1), "over the 3072"),
    ]:
        bad.write_text(text)
        with pytest.raises(DeskPulseError, match=why):
            read_server_cert(bad)
    bad.write_bytes(b"\x30\x82\x01\xff")
    with pytest.raises(DeskPulseError, match="binary: DER"):
        read_server_cert(bad)
    with pytest.raises(DeskPulseError, match="cannot read"):
        read_server_cert(tmp_path / "missing.pem")


def test_https_and_a_certificate_go_together(tmp_path: Path) -> None:
    pem = make_cert(tmp_path, "one").pem
    config = device_config("k1", "https://10.0.0.2:8443", bytes(32), server_cert=pem)
    assert config["sync"]["server_cert"] == pem
    with pytest.raises(DeskPulseError, match="needs --server-cert"):
        device_config("k1", "https://10.0.0.2:8443", bytes(32))
    with pytest.raises(DeskPulseError, match="is for an https:// server"):
        device_config("k1", "http://10.0.0.2:8080", bytes(32), server_cert=pem)
    assert "server_cert" not in device_config("k1", "http://10.0.0.2:8080", bytes(32))["sync"]
