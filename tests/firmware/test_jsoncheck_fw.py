"""The device's strict JSON check (firmware/kiosk/jsoncheck.py) on the real MicroPython
interpreter, held against CPython's json module: hand-picked texts, then thousands of
seeded random mutations of valid documents, each accepted by the one exactly when the
other accepts it (CPython's NaN and Infinity aside: the device refuses them)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from conftest import mpy_json

CHECK = """
import json, sys
from kiosk import jsoncheck
from harness import emit
with open(sys.argv[1]) as f:
    cases = json.loads(f.read())
out = []
for hex_text in cases:
    try:
        jsoncheck.check(bytes.fromhex(hex_text))
        out.append(None)
    except jsoncheck.TooDeep as e:
        out.append(["deep", str(e)])
    except jsoncheck.JsonProblem as e:
        out.append(["bad", str(e)])
emit(out)
"""


def device_check(tmp_path: Path, texts: list[bytes]) -> list[Any]:
    """What the device says of each text: None (valid) or [kind, message]."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([t.hex() for t in texts]))
    return mpy_json(CHECK, str(path))[0]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def cpython_verdict(text: bytes) -> str:
    """"ok", "deep" (valid but nested deeper than 8) or "bad", by CPython's strict json."""
    try:
        value = json.loads(text.decode("utf-8"), strict=True,
                           parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        return "bad"
    return "deep" if depth(value) > 8 else "ok"


def verdict(answer: Any) -> str:
    return "ok" if answer is None else answer[0]


HAND = {
    b'{"scale": 3,,}': "expected '\"' (a key) at byte 12",
    b'{"a": 1 "b": 2}': "expected ',' or '}' at byte 8",
    b"[1 2]": "expected ',' or ']' at byte 3",
    b'{"a" 1}': "expected ':' at byte 5",
    b"{,}": "expected '\"' or '}' at byte 1",
    b"[1,]": "expected a value at byte 3",
    b"": "unexpected end of the text at byte 0",
    b"  \n": "unexpected end of the text at byte 3",
    b'{"a": [1, 2': "unexpected end of the text at byte 11",
    b"01": "a number may not start with 0 at byte 0",
    b"-": "expected a digit at byte 1",
    b"1.": "expected a digit at byte 2",
    b".5": "expected a value at byte 0",
    b"+1": "expected a value at byte 0",
    b"1e": "expected a digit at byte 2",
    b"NaN": "expected a value at byte 0",
    b"-Infinity": "expected a digit at byte 1",
    b"Infinity": "expected a value at byte 0",
    b"tru": "expected a value at byte 0",
    b"nul1": "expected a value at byte 0",
    b'"abc': "unterminated string at byte 4",
    b'"a\\x"': "unknown escape in a string at byte 2",
    b'"\\u12G4"': "expected 4 hex digits after \\u at byte 5",
    b'"a\tb"': "control character 0x09 in a string at byte 2",
    b"{} {}": "expected the end of the text at byte 3",
    b"'a'": "expected a value at byte 0",
    b"[" * 9 + b"]" * 9: "more than 8 levels of arrays and objects at byte 8",
}

VALID = [
    b"0", b"-0", b"-0.0e+00", b"1E9", b"12.5e-3", b"true", b"false", b"null", b'""',
    b'"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\uD83D\\ude00"', "\"caf\u00e9 \u2615\"".encode(),
    b" \t\r\n[ ]\n", b"{}", b'{"":{"":[[],{}]}}', b"[" * 8 + b"]" * 8,
    b'{"a": 1, "a": 2}',  # duplicate keys are valid JSON (the last one wins)
]


def test_hand_picked_texts_get_the_right_problem_and_valid_ones_pass(tmp_path: Path) -> None:
    texts = list(HAND) + VALID
    answers = device_check(tmp_path, texts)
    for text, answer in zip(texts, answers, strict=True):
        expected = HAND.get(text)
        assert (answer[1] if answer else None) == expected, text
        assert verdict(answer) == cpython_verdict(text), text


def random_value(rng: random.Random, level: int = 0) -> Any:
    kind = rng.randrange(9 if level < 4 else 5)
    if kind == 0:
        return rng.choice([True, False, None])
    if kind == 1:
        return rng.randrange(-10**6, 10**6)
    if kind == 2:
        return rng.choice([0.5, -1.25e-7, 3e21, 1e-300])
    if kind in (3, 4):
        return "".join(rng.choice('ab"\\/\n\t\u00e9\u2603\x01 ') for _ in range(rng.randrange(6)))
    if kind in (5, 6):
        return [random_value(rng, level + 1) for _ in range(rng.randrange(4))]
    return {random_value(rng, 4) if rng.random() < 0.9 else "": random_value(rng, level + 1)
            for _ in range(rng.randrange(4))}


def random_document(rng: random.Random) -> bytes:
    value = random_value(rng)
    if rng.random() < 0.15:  # around the depth limit of 8
        for _ in range(rng.randrange(5, 11)):
            value = [value] if rng.random() < 0.5 else {"k": value}
    style = rng.randrange(3)
    if style == 0:
        text = json.dumps(value)
    elif style == 1:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = json.dumps(value, indent=rng.choice([1, "\t"]))
    return text.encode("utf-8")


ALPHABET = b'{}[],:"\\ \t\n\r0123456789-+.eEtrufalsnbxuNIa/\x01'


def mutate(rng: random.Random, text: bytes) -> bytes:
    data = bytearray(text)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(5)
        pos = rng.randrange(len(data) + 1)
        if op == 0 and data:
            del data[min(pos, len(data) - 1)]
        elif op == 1:
            data.insert(pos, rng.choice(ALPHABET))
        elif op == 2 and data:
            data[min(pos, len(data) - 1)] = rng.choice(ALPHABET)
        elif op == 3:
            start = rng.randrange(len(data) + 1)
            data[pos:pos] = data[start:start + rng.randrange(1, 6)]
        else:
            data[pos:pos] = rng.choice([b"NaN", b"-Infinity", b"01", b"1.", b",,", b"[[",
                                        b"]]", b"\\u00", b"\\q", b"true", b"nul", b"-0"])
    return bytes(data)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_device_agrees_with_cpython_on_random_mutations(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    texts: list[bytes] = []
    for _ in range(300):
        doc = random_document(rng)
        texts.append(doc)
        texts.extend(mutate(rng, doc) for _ in range(6))
    # Mutations may split a multi-byte character: UTF-8 is the decoder's job, not this
    # check's, so such texts are left out of the comparison.
    texts = [t for t in texts if _is_utf8(t)]
    answers = device_check(tmp_path, texts)
    assert len(answers) == len(texts)
    verdicts = [(verdict(a), cpython_verdict(t)) for a, t in zip(answers, texts, strict=True)]
    # A text both refuse may be "too deep" to the device before CPython finds its error.
    wrong = [(t, a) for t, a, (mine, theirs) in zip(texts, answers, verdicts, strict=True)
             if mine != theirs and (mine, theirs) != ("deep", "bad")]
    assert not wrong, wrong[:5]
    # Worth their time only if the cases cover every verdict, most of them refusals.
    counts = {v: sum(1 for mine, _ in verdicts if mine == v) for v in ("ok", "bad", "deep")}
    assert counts["ok"] > 100 and counts["deep"] > 20 and counts["bad"] > len(texts) // 3
    for text, answer in zip(texts, answers, strict=True):
        if answer is not None:
            where = int(answer[1].rsplit(" ", 1)[1])
            assert 0 <= where <= len(text), (text, answer)


def _is_utf8(text: bytes) -> bool:
    try:
        text.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def test_a_config_file_that_is_not_strict_json_is_refused_by_config_load(tmp_path: Path) -> None:
    """config.load (the boot path, and the host's check_config) refuses what
    MicroPython's json.loads would have taken."""
    path = tmp_path / "config.json"
    path.write_bytes(b'{"scale": 3,,}')
    r = mpy_json(f"""
from kiosk import config as cfg
from harness import emit
emit(cfg.load({str(path)!r}))
""")[0]
    assert r[0]["scale"] == 4  # the defaults
    assert r[1] == ["config file is not valid JSON: expected '\"' (a key) at byte 12"]


def test_checking_a_full_size_config_allocates_nothing(tmp_path: Path) -> None:
    """The check runs over an 8 KB upload with the heap locked: no allocation at all."""
    doc = {"texts": {f"l{i:02d}": {"question": "caf\u00e9 \u2603 " * 8, "yes": "y"}
                     for i in range(45)},
           "opening_hours": {"mon": ["08:00-12:00", "13:00-18:00"]}, "scale": -1.5e3}
    data = json.dumps(doc).encode()
    assert 6000 < len(data) <= 8192
    path = tmp_path / "big.json"
    path.write_bytes(data)
    r = mpy_json(f"""
import micropython
from kiosk import jsoncheck
from harness import emit
with open({str(path)!r}, "rb") as f:
    data = bytearray(f.read())
jsoncheck.check(data)  # once unlocked: imports and first-call caches
ok = False  # the global exists before the lock: creating it would allocate
micropython.heap_lock()
try:
    jsoncheck.check(data)
    ok = True
finally:
    micropython.heap_unlock()
emit(ok)
""")
    assert r == [True]
