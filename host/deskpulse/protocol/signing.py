"""Request and answer signatures of the WiFi push protocol (docs/wifi.md).

The device signs each push with HMAC-SHA256 under its own 32-byte key; the server signs
its answer under the same key, bound to the request's nonce, so that neither side acts on
a message the other did not send for this exchange.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from deskpulse.errors import DeskPulseError

KEY_BYTES = 32
CONTENT_TYPE = "application/vnd.deskpulse.batch"
MAX_BODY = 65536
DEVICE_ID = re.compile(r"[A-Za-z0-9._-]{1,32}")  # the kiosk config's limit
_NONCE = re.compile(r"([0-9]{1,10})\.([0-9]{1,10})")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, order=True, slots=True)
class Nonce:
    """(boot, count): grows with every request a device makes; compared as a pair.
    A dataclass, not a NamedTuple, whose `count` would hide tuple.count."""

    boot: int
    count: int

    def __str__(self) -> str:
        return f"{self.boot}.{self.count}"


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def parse_nonce(text: str) -> Nonce:
    match = _NONCE.fullmatch(text.strip())
    if match is None:
        raise DeskPulseError("X-DeskPulse-Nonce must be '<boot>.<count>' (two whole numbers)")
    return Nonce(int(match[1]), int(match[2]))


def request_message(method: str, path: str, device_id: str, nonce: str, body: bytes) -> bytes:
    return f"DP1\n{method}\n{path}\n{device_id}\n{nonce}\n".encode() + body


def sign_request(key: bytes, method: str, path: str, device_id: str, nonce: str,
                 body: bytes) -> str:
    return hmac.new(key, request_message(method, path, device_id, nonce, body),
                    hashlib.sha256).hexdigest()


def sign_answer(key: bytes, nonce: str, body: bytes) -> str:
    return hmac.new(key, f"DP1 ack\n{nonce}\n".encode() + body, hashlib.sha256).hexdigest()


def sign_config(key: bytes, nonce: str, body: bytes) -> str:
    """The signature of a config fetch's answer (docs/wifi.md, "Config over the air")."""
    return hmac.new(key, f"DP1 config\n{nonce}\n".encode() + body, hashlib.sha256).hexdigest()


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of two hex signatures; a malformed one never matches."""
    return bool(_SIGNATURE.fullmatch(given)) and hmac.compare_digest(expected, given)
