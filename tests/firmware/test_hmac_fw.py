"""firmware/kiosk/hmac.py on the real MicroPython interpreter against CPython's hmac."""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from pathlib import Path

from conftest import mpy_json

CHECK = """
import binascii, json, sys
from kiosk.hmac import HmacSha256, hmac_sha256, same_hex
from harness import emit

with open(sys.argv[-1]) as f:
    cases = json.loads(f.read())
out = []
for key_hex, parts_hex in cases:
    key = binascii.unhexlify(key_hex)
    parts = [binascii.unhexlify(p) for p in parts_hex]
    one = hmac_sha256(key, *parts)
    # The same key object signs message after message.
    mac = HmacSha256(key)
    mac.begin()
    for p in parts:
        mac.update(memoryview(p))
    again = mac.hexdigest()
    mac.begin()
    mac.update(b"".join(parts))
    joined = mac.hexdigest()
    out.append([binascii.hexlify(one).decode(), again.decode(), joined.decode()])
emit(out)
"""


def _cases(rng: random.Random, n: int) -> list[tuple[bytes, list[bytes]]]:
    lengths = [0, 1, 31, 32, 55, 56, 63, 64, 65, 119, 120, 127, 128, 129, 200]
    cases = []
    for i in range(n):
        key_len = lengths[i % len(lengths)] if i < 2 * len(lengths) else rng.randrange(201)
        key = rng.randbytes(key_len)
        parts = [rng.randbytes(rng.choice([0, 1, 7, 63, 64, 65, 300, rng.randrange(2000)]))
                 for _ in range(rng.randrange(1, 5))]
        cases.append((key, parts))
    return cases


def test_hmac_matches_cpython_on_random_keys_and_messages(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    cases = _cases(rng, 160)
    payload = [[k.hex(), [p.hex() for p in parts]] for k, parts in cases]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(payload))
    got = mpy_json(CHECK, str(path), timeout=120)[0]
    assert len(got) == len(cases)
    for (key, parts), (one, again, joined) in zip(cases, got, strict=True):
        want = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest()
        assert one == want, (len(key), [len(p) for p in parts])
        assert again == want and joined == want


def test_a_digest_ends_the_message_and_update_needs_begin() -> None:
    got = mpy_json("""
from kiosk.hmac import HmacSha256
from harness import emit
mac = HmacSha256(b"k")
errors = []
try:
    mac.update(b"x")
except ValueError:
    errors.append("update")
mac.begin().update(b"x")
mac.digest()
try:
    mac.digest()
except ValueError:
    errors.append("digest")
emit(errors)
""")
    assert got == [["update", "digest"]]


def test_same_hex_compares_whole_strings() -> None:
    a = hmac.new(b"k", b"m", hashlib.sha256).hexdigest()
    flipped_last = a[:-1] + ("0" if a[-1] != "0" else "1")
    flipped_first = ("0" if a[0] != "0" else "1") + a[1:]
    got = mpy_json(f"""
from kiosk.hmac import same_hex
from harness import emit
a = {a!r}
emit([same_hex(a, a), same_hex(a, a.encode()), same_hex(a, {flipped_last!r}),
      same_hex(a, {flipped_first!r}), same_hex(a, a[:-1]), same_hex(a, a.upper()),
      same_hex(b"", b"")])
""")
    assert got == [[True, True, False, False, False, False, True]]
