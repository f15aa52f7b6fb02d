"""The certificate an https:// kiosk verifies its server against (config key
sync.server_cert, docs/wifi.md "HTTPS"): read from a PEM file and checked here, so that a
technician learns of a wrong file at the desk, not from a kiosk that never pushes."""

from __future__ import annotations

import os
import re
import ssl

from deskpulse.errors import DeskPulseError

MAX_CERT_CHARS = 3072
"""The firmware's limit for sync.server_cert (kiosk/config.py `_SYNC_STRS`)."""
_PEM = re.compile(r"-----BEGIN CERTIFICATE-----[A-Za-z0-9+/=\s]+-----END CERTIFICATE-----")


def read_server_cert(path: str | os.PathLike[str]) -> str:
    """The certificates in the PEM file at path (the server's own, or the CA's that signed
    it; several for a rollover), as the config carries them: only the certificates, with
    their line breaks. Raises DeskPulseError when the kiosk could not use them."""
    try:
        text = open(path, encoding="ascii").read()  # noqa: SIM115 - read whole at once
    except OSError as exc:
        raise DeskPulseError(f"cannot read the server certificate {path}: "
                             f"{exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise DeskPulseError(f"{path} is not a PEM certificate (it is binary: DER? convert "
                             "it with `openssl x509 -in FILE -out FILE.pem`)") from exc
    if "PRIVATE KEY" in text:
        raise DeskPulseError(f"{path} holds a private key: give the kiosk the certificate "
                             "only (the key stays on the server)")
    certs = [m.group(0).replace("\r\n", "\n") for m in _PEM.finditer(text)]
    if not certs:
        raise DeskPulseError(f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")
    try:
        ssl.create_default_context(cadata="\n".join(certs))
    except ssl.SSLError as exc:
        raise DeskPulseError(f"{path}: a certificate in it cannot be read ({exc})") from exc
    pem = "\n".join(certs) + "\n"
    if len(pem) > MAX_CERT_CHARS:
        raise DeskPulseError(f"{path}: {len(pem)} characters of certificates, over the "
                             f"{MAX_CERT_CHARS} a kiosk's config takes; give the one "
                             "certificate the server presents, or the CA's")
    return pem
