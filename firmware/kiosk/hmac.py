# HMAC-SHA256 (RFC 2104) on hashlib.sha256: MicroPython ships no hmac module.
#
# A message is fed in parts (update), so a request signed over a prefix, a JSON line and
# a batch slice never needs them joined into one buffer. MicroPython's sha256 objects
# cannot be copied, so each message hashes the 64-byte inner pad again: one block, cheap.
import binascii
import hashlib

from micropython import const

_BLOCK = const(64)  # SHA-256 block size in bytes
_IPAD = const(0x36)
_OPAD = const(0x5C)


class HmacSha256:
    """One key, many messages: begin(), update(part)..., then digest() or hexdigest()."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        inner = bytearray(_BLOCK)
        outer = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            inner[i] = k ^ _IPAD
            outer[i] = k ^ _OPAD
        self._inner_pad = bytes(inner)
        self._outer_pad = bytes(outer)
        self._inner = None

    def begin(self):
        self._inner = hashlib.sha256(self._inner_pad)
        return self

    def update(self, data):
        if self._inner is None:
            raise ValueError("begin() before update()")
        self._inner.update(data)
        return self

    def digest(self):
        if self._inner is None:
            raise ValueError("begin() before digest()")
        outer = hashlib.sha256(self._outer_pad)
        outer.update(self._inner.digest())
        self._inner = None  # a digest ends the message: the next one starts with begin()
        return outer.digest()

    def hexdigest(self):
        """64 lowercase hex digits, as bytes."""
        return binascii.hexlify(self.digest())


def hmac_sha256(key, *parts):
    """The HMAC-SHA256 digest (32 bytes) of the parts taken as one message."""
    mac = HmacSha256(key).begin()
    for part in parts:
        mac.update(part)
    return mac.digest()


def same_hex(a, b):
    """Whether two signatures (str or bytes) are equal, in time that depends only on their
    lengths, so a forger cannot learn a right prefix by timing; case matters (lowercase)."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
