"""The device's strict JSON check (firmware/kiosk/jsoncheck.py) on the real MicroPython
interpreter, held against CPython's json module: hand-picked texts, UTF-8 inside strings,
then thousands of seeded random mutations of valid documents, each accepted by the one
exactly when the other accepts it (CPython's NaN and Infinity aside: the device refuses
them). The check is fed in pieces (a serial upload's lines, a file read a bit at a time):
every text gets the same answer whole, split at each byte and a byte at a time."""

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
every_split = sys.argv[2] == "1"

def answer(pieces):
    checker = jsoncheck.Checker()
    try:
        for piece in pieces:
            checker.feed(piece)
        checker.end()
        return None
    except jsoncheck.TooDeep as e:
        return ["deep", str(e)]
    except jsoncheck.BadUtf8 as e:
        return ["utf8", str(e)]
    except jsoncheck.JsonProblem as e:
        return ["bad", str(e)]

out = []
split_wrong = []  # [hex text, where it was split or "bytes", answer]
for hex_text in cases:
    text = bytes.fromhex(hex_text)
    try:
        jsoncheck.check(text)
        whole = None
    except jsoncheck.TooDeep as e:
        whole = ["deep", str(e)]
    except jsoncheck.BadUtf8 as e:
        whole = ["utf8", str(e)]
    except jsoncheck.JsonProblem as e:
        whole = ["bad", str(e)]
    out.append(whole)
    for k in range(len(text) + 1) if every_split else (len(text) // 3,):
        got = answer((text[:k], text[k:]))
        if got != whole:
            split_wrong.append([hex_text, k, got])
    got = answer([text[i:i + 1] for i in range(len(text))])
    if got != whole:
        split_wrong.append([hex_text, "bytes", got])
emit([out, split_wrong])
"""


def device_check(tmp_path: Path, texts: list[bytes], every_split: bool = True) -> list[Any]:
    """What the device says of each text: None (valid) or [kind, message], kind "bad",
    "deep" or "utf8". Asserts that every text fed in pieces (split at every byte, or at
    one byte when not every_split, and one byte at a time) gets the same answer."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([t.hex() for t in texts]))
    # The pieces are slices: garbage enough to need a bigger heap than the check itself.
    answers, split_wrong = mpy_json(CHECK, str(path), "1" if every_split else "0",
                                    heap="64M")[0]
    assert not split_wrong, [(bytes.fromhex(t), at, got) for t, at, got in split_wrong[:5]]
    return answers


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
    """"ok", "deep" or "bad" (bad UTF-8 is bad JSON text: RFC 8259 section 8.1)."""
    if answer is None:
        return "ok"
    return "bad" if answer[0] == "utf8" else answer[0]


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
    # Mutations may split a multi-byte character: the check finds that too.
    answers = device_check(tmp_path, texts, every_split=False)
    assert len(answers) == len(texts)
    verdicts = [(verdict(a), cpython_verdict(t)) for a, t in zip(answers, texts, strict=True)]
    # A text both refuse may be "too deep" to the device before CPython finds its error.
    wrong = [(t, a) for t, a, (mine, theirs) in zip(texts, answers, verdicts, strict=True)
             if mine != theirs and (mine, theirs) != ("deep", "bad")]
    assert not wrong, wrong[:5]
    # Worth their time only if the cases cover every verdict, most of them refusals.
    counts = {v: sum(1 for mine, _ in verdicts if mine == v) for v in ("ok", "bad", "deep")}
    assert counts["ok"] > 100 and counts["deep"] > 20 and counts["bad"] > len(texts) // 3
    assert sum(1 for a in answers if a and a[0] == "utf8") > 0
    for text, answer in zip(texts, answers, strict=True):
        if answer is not None:
            where = int(answer[1].rsplit(" ", 1)[1])
            assert 0 <= where <= len(text), (text, answer)


# Inside a string: each is a whole JSON text once quoted.
UTF8_GOOD = [
    b"\xc2\x80", b"\xdf\xbf",  # U+0080, U+07FF: the two-byte range
    b"\xe0\xa0\x80", b"\xed\x9f\xbf",  # U+0800, U+D7FF: just below the surrogates
    b"\xee\x80\x80", b"\xef\xbf\xbf",  # U+E000 just after them, U+FFFF
    b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf",  # U+10000, U+10FFFF: the last
    "caf\u00e9 \u2603 \U0001f600".encode(),
]
UTF8_BAD = {  # -> the byte (of the quoted text) the problem is told at: CPython's too
    b"\x80": 1, b"\xbf": 1,  # a continuation byte with no lead
    b"\xc0\x80": 1, b"\xc1\xbf": 1,  # overlong two-byte forms
    b"\xe0\x80\x80": 1, b"\xe0\x9f\xbf": 1,  # overlong three-byte forms
    b"\xf0\x80\x80\x80": 1, b"\xf0\x8f\xbf\xbf": 1,  # overlong four-byte forms
    b"\xed\xa0\x80": 1, b"\xed\xbf\xbf": 1,  # surrogates (CESU-8)
    b"\xf4\x90\x80\x80": 1, b"\xf5\x80\x80\x80": 1, b"\xff": 1,  # past U+10FFFF
    b"\xc3": 1, b"\xe2\x82": 1, b"\xf0\x9f\x98": 1,  # cut short by the quote
    b"ab\xc3A": 3, b"\xe2\x28\xa1": 1, b"ok \xe2\x82\xac \xc3\xa9\xe9": 9,
    b"\xc3\\n": 1,  # cut short by an escape
}


def test_strings_must_be_utf8_as_cpython_decodes_it(tmp_path: Path) -> None:
    texts = [b'"' + t + b'"' for t in UTF8_GOOD + list(UTF8_BAD)]
    texts += [b'{"k": ["' + t + b'"]}' for t in UTF8_BAD]  # also deeper in a text
    answers = device_check(tmp_path, texts)
    for text, answer in zip(texts, answers, strict=True):
        assert verdict(answer) == cpython_verdict(text), (text, answer)
        if answer is None:
            continue
        assert answer[0] == "utf8", (text, answer)
        with pytest.raises(UnicodeDecodeError) as cpython:
            text.decode("utf-8")
        assert answer[1] == f"invalid UTF-8 at byte {cpython.value.start}", text
    assert [a for a in answers[:len(UTF8_GOOD)]] == [None] * len(UTF8_GOOD)
    assert answers[len(UTF8_GOOD)][1] == "invalid UTF-8 at byte 1"


def test_a_syntax_problem_is_told_before_bad_utf8_anywhere(tmp_path: Path) -> None:
    """As when the text was decoded after the check: the syntax comes first."""
    texts = [b'["\xff", 01]', b'["\xc3', b'{"\xed\xa0\x80": 1,}']
    answers = device_check(tmp_path, texts)
    assert answers == [["bad", "a number may not start with 0 at byte 6"],
                       ["bad", "unterminated string at byte 3"],
                       ["bad", "expected '\"' (a key) at byte 10"]]


def test_random_bytes_in_strings_get_cpythons_verdict(tmp_path: Path) -> None:
    rng = random.Random(7)
    # Lead bytes at the edges of each range, continuation bytes at the edges of theirs,
    # whole characters, and bytes with a meaning in JSON.
    leads = [0xC0, 0xC1, 0xC2, 0xDF, 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5,
             0xFF]
    others = [0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0x41, 0x22, 0x5C, 0x6E, 0x01]
    whole = [c.encode() for c in "\u00e9\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff"]

    def piece() -> bytes:
        roll = rng.random()
        if roll < 0.4:
            return rng.choice(whole)
        return bytes([rng.choice(leads if roll < 0.6 else others)])

    texts = [b'"' + b"".join(piece() for _ in range(rng.randrange(1, 5))) + b'"'
             for _ in range(1500)]
    answers = device_check(tmp_path, texts, every_split=False)
    wrong = [(t, a) for t, a in zip(texts, answers, strict=True)
             if verdict(a) != cpython_verdict(t)]
    assert not wrong, wrong[:5]
    assert sum(1 for a in answers if a is None) > 100
    assert sum(1 for a in answers if a and a[0] == "utf8") > 300


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


def test_checking_a_file_in_small_pieces_allocates_nothing(tmp_path: Path) -> None:
    """As config.read checks a file: a Checker fed 64-byte pieces read into one buffer,
    with the heap locked from the first piece to the verdict; a string that is not UTF-8
    is noted without allocating, and told by end()."""
    doc = {"texts": {f"l{i:02d}": {"question": "caf\u00e9 \u2603 \U0001f600 " * 6, "yes": "y"}
                     for i in range(50)}, "opening_hours": None, "scale": -1.5e3}
    data = json.dumps(doc, ensure_ascii=False).encode()
    assert 6000 < len(data) <= 8192
    path = tmp_path / "big.json"
    path.write_bytes(data)
    bad = tmp_path / "bad.json"
    at = data.index(b"\xe2\x98\x83", 5000)
    bad.write_bytes(data[:at] + b"\xed\xa0\x80" + data[at + 3:])  # a snowman made a surrogate
    r = mpy_json(f"""
import micropython
from kiosk import jsoncheck
from harness import emit

def check_file(path, checker, piece):
    with open(path, "rb") as f:
        checker.feed(b"")  # once unlocked: first-call caches
        micropython.heap_lock()
        try:
            while True:
                n = f.readinto(piece)
                if not n:
                    break
                checker.feed(piece, n)
        finally:
            micropython.heap_unlock()

checker = jsoncheck.Checker()
piece = bytearray(64)
check_file({str(path)!r}, checker, piece)
ended = False
micropython.heap_lock()
try:
    checker.end()
    ended = True
finally:
    micropython.heap_unlock()
emit([checker.fed, ended])
checker.reset()
check_file({str(bad)!r}, checker, piece)
try:
    checker.end()
except jsoncheck.BadUtf8 as e:
    emit(str(e))
""")
    assert r == [[len(data), True], f"invalid UTF-8 at byte {at}"]
