"""The serial sync protocol, device side: firmware/kiosk/serial_sync.py, batch.py and
frames.py on the real MicroPython interpreter, fed bytes by a fake console (and once by a
real pty), its frames parsed here in CPython."""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import random
import select
import subprocess
import time
import tty
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, FIRMWARE, FW_TESTS, micropython_binary, mpy_json
from deskpulse.protocol.batch import decode_batch

_spec = importlib.util.spec_from_file_location("batchdecode", FW_TESTS / "batchdecode.py")
assert _spec is not None and _spec.loader is not None
batchdecode = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(batchdecode)

BOARD = json.loads((BOARDS / "esp32-devkitc-ssd1680.json").read_text())
START = b"\xd5\xaa"
EPOCH_2026 = 1767225600


# -- CPython side: a tiny frame parser ----------------------------------------------------
@dataclass
class Frame:
    kind: str
    tag: int
    payload: bytes

    def json(self) -> Any:
        return json.loads(self.payload)


def parse_frames(data: bytes) -> tuple[list[Frame], int]:
    """Every valid frame in data, and how many bytes belonged to no frame."""
    frames: list[Frame] = []
    i = 0
    stray = 0
    while True:
        j = data.find(START, i)
        if j < 0 or j + 11 > len(data):
            return frames, stray + len(data) - i
        kind = data[j + 2]
        tag = data[j + 3] | data[j + 4] << 8
        length = data[j + 5] | data[j + 6] << 8
        end = j + 7 + length
        if end + 4 <= len(data) and zlib.crc32(data[j + 2:end]) == int.from_bytes(
            data[end:end + 4], "little"
        ):
            frames.append(Frame(chr(kind), tag, data[j + 7:end]))
            stray += j - i
            i = end + 4
        else:
            stray += j + 1 - i
            i = j + 1


def only_frames(hex_out: str) -> list[Frame]:
    """The frames of one exchange; the sync task must print nothing else."""
    frames, stray = parse_frames(bytes.fromhex(hex_out))
    assert stray == 0, f"{stray} bytes outside frames"
    return frames


def one(hex_out: str, kind: str, tag: int) -> Frame:
    frames = only_frames(hex_out)
    assert [(f.kind, f.tag) for f in frames] == [(kind, tag)], frames
    return frames[0]


def error_of(hex_out: str, tag: int) -> dict[str, Any]:
    return one(hex_out, "E", tag).json()


# -- MicroPython side ---------------------------------------------------------------------
SETUP = """
import asyncio, binascii, gc, json, os
from harness import Rig, emit, MOUNT
from kiosk import config as cfg, record
from kiosk.log import ResponseLog
from kiosk.serial_sync import SerialSync
from kiosk.crc import crc16
from batchdecode import decode

BOARD = json.loads(BOARD_JSON)

class Source:
    # Bytes that "arrived" on the console; readinto hands out what is there, never waits.
    def __init__(self):
        self.data = bytearray()
        self.pos = 0
    def feed(self, data):
        self.data = self.data[self.pos:] + data
        self.pos = 0
    def pending(self):
        return len(self.data) - self.pos
    def readinto(self, buf):
        n = min(len(buf), len(self.data) - self.pos)
        buf[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n

class Out:
    def __init__(self):
        self.data = bytearray()
        self.writes = 0
    def write(self, data):
        self.data.extend(data)
        self.writes += 1
    def take(self):
        data = self.data
        self.data = bytearray()
        return data

class Hal:
    def __init__(self, board):
        self.board = board

class RigKiosk:
    # What SerialSync uses of app.Kiosk, over the harness Rig (RAM LittleFS, fake clock).
    def __init__(self, segment_bytes=None, blocks=64, mac=None, **config):
        base, problems = cfg.validate(config)
        if problems:
            raise ValueError(problems)
        self.mac = mac
        self.config = cfg.name_bare(base, mac)
        self.rig = Rig(self.config, blocks=blocks)
        if segment_bytes:
            self.rig.log.close()
            self.rig.log = ResponseLog(MOUNT, segment_bytes=segment_bytes)
            self.rig.log.open()
            self.rig.survey.log = self.rig.log
        self.log = self.rig.log
        self.clock = self.rig.clock
        self.flow = self.rig.survey
        self.config_path = MOUNT + "/config.json"
        self.config_problems = []
        self.hal = Hal(BOARD)
    def status(self):
        return {"firmware": "test", "device_id": self.config["device_id"],
                "board": BOARD["name"], "boot": self.clock.boot, "log": self.log.status(),
                "clock": self.clock.state(), "config_version": self.config["version"],
                "config_problems": self.config_problems}

def session(k, rating, yes=True, think_ms=2000):
    k.flow.face(rating)
    k.rig.wait(think_ms)
    k.flow.answer(yes)
    k.rig.wait(k.config["thank_you_s"] * 1000 + 50)

def add(k, n, start_uptime=100, step=45, boot=1, wall_base=0, flags=0, version=0):
    for i in range(n):
        up = start_uptime + i * step
        k.log.append(1 + i % 4, 4, i % 3, 20 + i % 70, flags, boot, up,
                     wall_base + up if wall_base else 0, version)

src = Source()
out = Out()

def make_sync(k, **kw):
    kw.setdefault("poll_ms", 1)
    return SerialSync(k, src, out.write, **kw)

async def _drain(sync):
    while (await sync.step()) or src.pending():
        pass

def signed(text):
    # A command line as the host sends it: with its ' *xxxx' checksum.
    return (text + " *%04x" % crc16(text.encode())).encode() + b"\\n"

def talk(sync, *lines):
    # Send lines (str: signed, with a newline; bytes: as they are), answer them all,
    # return the output as hex.
    for line in lines:
        src.feed(line if isinstance(line, bytes) else signed(line))
    asyncio.run(_drain(sync))
    return binascii.hexlify(out.take()).decode()

def frame_of(hex_out):
    data = binascii.unhexlify(hex_out)
    length = data[5] | data[6] << 8
    return chr(data[2]), data[3] | data[4] << 8, data[7:7 + length]

def records(k):
    return [list(r) for r in k.log.read(1, 1 << 20)]
""".replace("BOARD_JSON", repr(json.dumps(BOARD)))


def run(body: str, **kwargs: Any) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for row in mpy_json(SETUP + body, **kwargs):
        results[row[0]] = row[1]
    return results


def upload_lines(tag: int, data: bytes, size: int | None = None, crc: int | None = None,
                 chunk: int = 96) -> list[str]:
    size = len(data) if size is None else size
    crc = zlib.crc32(data) if crc is None else crc
    lines = [f"{tag} CONFIG BEGIN {size} {crc:08x}"]
    for i in range(0, len(data), chunk):
        lines.append(f"{tag} CONFIG DATA {base64.b64encode(data[i:i + chunk]).decode()}")
    lines.append(f"{tag} CONFIG END")
    return lines


# -- HELLO ----------------------------------------------------------------------------------
def test_hello_tells_who_the_device_is_its_status_anchors_and_sequence_window() -> None:
    r = run("""
k = RigKiosk(device_id="desk-7")
k.clock.anchors.append((0, 50, 1700000000, 1))  # a boot with no records left: not sent
k.rig.wait(3000)
k.clock.set_wall(1760000000, 1)
k.rig.wait(5000)
k.clock.set_wall(1760000010, 1)  # later anchor of the same boot: only it is needed
add(k, 5)
k.log.ack(2)
sync = make_sync(k)
emit(["hello", talk(sync, "7 HELLO 1")])
emit(["newer", talk(sync, "8 HELLO 3")])
emit(["older", talk(sync, "9 HELLO 0")])
emit(["args", talk(sync, "10 HELLO", "11 HELLO one")])
""")
    hello = one(r["hello"], "H", 7).json()
    assert hello["proto"] == 1
    assert (hello["device_id"], hello["board"], hello["firmware"]) == (
        "desk-7", BOARD["name"], "test")
    assert hello["status"]["log"]["unacked"] == 3 and hello["status"]["log"]["acked_upto"] == 2
    assert hello["status"]["clock"]["known"] is True
    assert hello["anchors"] == [[1, 8, 1760000010, 1]]
    assert (hello["first_seq"], hello["next_seq"]) == (3, 6)
    # A newer host hears this device's version and decides; an older one gets an error.
    assert one(r["newer"], "H", 8).json()["proto"] == 1
    assert "protocol 0 is not supported" in error_of(r["older"], 9)["error"]
    errors = only_frames(r["args"])
    assert [(f.kind, f.tag) for f in errors] == [("E", 10), ("E", 11)]
    assert errors[0].json() == {"error": "usage: <tag> HELLO <host protocol>",
                                "line": "10 HELLO *bfc5"}  # echoed as sent, checksum too
    assert "whole number" in errors[1].json()["error"]


# -- PULL -----------------------------------------------------------------------------------
PULL_BODY = """
k = RigKiosk()
add(k, 900, boot=1)
add(k, 700, start_uptime=3, step=31, boot=2, wall_base=1767225000, flags=1, version=4)
add(k, 900, start_uptime=8, step=140, boot=3, version=5)
sync = make_sync(k)
pages = []
seq = 1
tag = 100
while True:
    h = talk(sync, "%d PULL %d 4096" % (tag, seq))
    kind, got_tag, payload = frame_of(h)
    recs, more, head = decode(payload)
    pages.append(h)
    if not more:
        break
    seq = recs[-1][0] + 1
    tag += 1
emit(["pages", pages])
emit(["log", records(k)])
emit(["middle", talk(sync, "1 PULL 1234 100")])
emit(["tiny", talk(sync, "2 PULL 7 0")])
emit(["past", talk(sync, "3 PULL 999999 4096")])
emit(["huge", talk(sync, "4 PULL 1 65535")])
emit(["bad", talk(sync, "5 PULL 1", "6 PULL -1 100", "7 PULL 1 99999999999")])
"""


@pytest.mark.slow
def test_pull_pages_through_the_log_with_more_until_done() -> None:
    r = run(PULL_BODY)
    log = [tuple(rec) for rec in r["log"]]
    assert len(log) == 2500
    pulled: list[tuple[int, ...]] = []
    for index, hex_out in enumerate(r["pages"]):
        frame = one(hex_out, "B", 100 + index)
        assert len(frame.payload) <= 4096
        records, more, _ = batchdecode.decode(frame.payload)
        assert more == (0 if index == len(r["pages"]) - 1 else 1)
        assert records
        pulled += records
    assert len(r["pages"]) > 1
    assert pulled == log  # every field, across boots, clock and flag changes

    middle = one(r["middle"], "B", 1).payload
    records, more, header = batchdecode.decode(middle)
    assert len(middle) <= 100 and more == 1
    assert records == log[1233:1233 + len(records)] and header["first_seq"] == 1234
    # A budget too small for a record is raised to 64 bytes, so every PULL makes progress.
    records, more, _ = batchdecode.decode(one(r["tiny"], "B", 2).payload)
    assert records[0] == log[6] and more == 1
    records, more, header = batchdecode.decode(one(r["past"], "B", 3).payload)
    assert (records, more) == ([], 0)
    huge = one(r["huge"], "B", 4).payload
    assert len(huge) <= 4096  # capped by the device
    errors = only_frames(r["bad"])
    assert [(f.kind, f.tag) for f in errors] == [("E", 5), ("E", 6), ("E", 7)]
    assert errors[0].json()["error"] == "usage: <tag> PULL <from seq> <max bytes>"


# -- ACK ------------------------------------------------------------------------------------
def test_ack_frees_flash_is_idempotent_and_refuses_beyond_the_last_record() -> None:
    r = run("""
k = RigKiosk(segment_bytes=1024)
add(k, 300)
sync = make_sync(k)
before = k.log.status()
emit(["ack", talk(sync, "1 ACK 150")])
emit(["after", k.log.status()])
emit(["pull", talk(sync, "2 PULL 1 64")])
emit(["again", talk(sync, "3 ACK 150", "4 ACK 100", "5 ACK 0")])
emit(["beyond", talk(sync, "6 ACK 301")])
emit(["bad", talk(sync, "7 ACK", "8 ACK x")])
emit(["all", talk(sync, "9 ACK 300")])
emit(["end", k.log.status()])
emit(["before", before])
""")
    assert one(r["ack"], "A", 1).json() == {"acked": 150}
    assert r["before"]["stored"] == 300
    assert r["after"]["acked_upto"] == 150 and r["after"]["unacked"] == 150
    assert r["after"]["stored"] < 300  # whole segments at or below 150 are deleted
    records, _, _ = batchdecode.decode(one(r["pull"], "B", 2).payload)
    assert records[0][0] == 151
    again = only_frames(r["again"])
    assert [(f.kind, f.tag, f.json()) for f in again] == [
        ("A", 3, {"acked": 150}), ("A", 4, {"acked": 150}), ("A", 5, {"acked": 150})]
    assert error_of(r["beyond"], 6) == {"error": "ack 301 beyond last record 300",
                                        "line": "6 ACK 301 *62c9"}
    assert [f.kind for f in only_frames(r["bad"])] == ["E", "E"]
    assert one(r["all"], "A", 9).json() == {"acked": 300}
    assert r["end"]["stored"] == 0 and r["end"]["unacked"] == 0


# -- TIME -----------------------------------------------------------------------------------
def test_time_sets_the_clock_records_an_anchor_and_later_records_carry_wall_time() -> None:
    r = run(f"""
k = RigKiosk()
k.rig.wait(61000)
session(k, 3)
sync = make_sync(k)
emit(["before", k.status()["clock"]])
emit(["time", talk(sync, "1 TIME {EPOCH_2026}")])
emit(["after", k.status()["clock"]])
session(k, 4)
emit(["records", records(k)])
emit(["hello", talk(sync, "2 HELLO 1")])
emit(["bad", talk(sync, "3 TIME 12", "4 TIME soon", "5 TIME 1 2", "6 TIME 99999999999")])
emit(["journal", k.clock.anchors])
""")
    assert r["before"] == {"known": False}
    anchor = one(r["time"], "T", 1).json()["anchor"]
    boot, uptime_s, wall, source = anchor
    assert (boot, wall, source) == (1, EPOCH_2026, 1) and uptime_s >= 61
    assert r["after"]["known"] is True and r["after"]["source"] == "host"
    first, second = r["records"]
    assert first[8] == 0  # stored before the clock was set: the host resolves it by anchor
    assert second[8] == EPOCH_2026 + second[7] - uptime_s
    assert one(r["hello"], "H", 2).json()["anchors"] == [anchor]
    bad = only_frames(r["bad"])
    assert [(f.kind, f.tag) for f in bad] == [("E", 3), ("E", 4), ("E", 5), ("E", 6)]
    assert "between 946684800 and 4102444800" in bad[0].json()["error"]
    assert r["journal"] == [anchor]  # the rejected times changed nothing


def test_time_beyond_2100_is_refused_and_changes_nothing() -> None:
    """Records keep wall time as u32: a clock set near its end would wrap to 1970 within
    the boot. TIME takes 2000-01-01..2100-01-01 (kiosk.clock's bounds) and nothing else."""
    r = run("""
k = RigKiosk()
sync = make_sync(k)
def journal_size():
    try:
        return os.stat(MOUNT + "/time")[6]
    except OSError:
        return 0
emit(["size0", journal_size()])
emit(["bad", talk(sync, "1 TIME 4294967295", "2 TIME 4102444801", "3 TIME 946684799")])
emit(["after_bad", [k.clock.state(), k.clock.anchors, journal_size()]])
emit(["first", talk(sync, "4 TIME 946684800")])
emit(["last", talk(sync, "5 TIME 4102444800")])
emit(["clock", k.clock.state()])
""")
    bad = only_frames(r["bad"])
    assert [(f.kind, f.tag) for f in bad] == [("E", 1), ("E", 2), ("E", 3)]
    for f in bad:
        assert f.json()["error"] == "unix seconds must be between 946684800 and 4102444800"
    assert r["after_bad"] == [{"known": False}, [], r["size0"]]  # no anchor, no journal entry
    assert one(r["first"], "T", 4).json()["anchor"][2] == 946684800
    assert one(r["last"], "T", 5).json()["anchor"][2] == 4102444800
    assert r["clock"]["known"] is True and r["clock"]["wall"] == 4102444800


# -- CONFIG ---------------------------------------------------------------------------------
NEW_CONFIG = {
    "version": 7,
    "device_id": "desk-9",
    "scale": 3,
    "thank_you_s": 2,
    "texts": {"en": {"thanks": "Merci beaucoup, a bientot!", "question": "How did we do today?",
                     "sorry": "Sorry - tell us at the desk what went wrong, please."}},
}


def test_config_upload_is_saved_applied_and_a_session_in_progress_finishes() -> None:
    data = json.dumps(NEW_CONFIG).encode()
    assert len(data) > 2 * 96  # several DATA lines
    lines = upload_lines(40, data)
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
k.flow.face(2)  # a customer is answering the follow-up question meanwhile
k.rig.wait(1500)
emit(["upload", talk(sync, *{lines!r})])
emit(["state", [k.flow.state, k.config["scale"], k.flow.config is k.config]])
k.rig.wait(1000)
k.flow.answer(True)
k.rig.wait(2100)
emit(["four", k.flow.face(4)])
session(k, 3, yes=False)
with open(MOUNT + "/config.json", "rb") as f:
    emit(["file", binascii.hexlify(f.read()).decode()])
emit(["records", records(k)])
emit(["texts", cfg.texts(k.config)["thanks"]])
emit(["files", sorted(os.listdir(MOUNT))])
""")
    answers = only_frames(r["upload"])
    assert all(f.kind == "C" and f.tag == 40 for f in answers)
    received = [f.json()["received"] for f in answers]
    assert received[0] == 0 and received[-2] == len(data)
    assert received == sorted(received)
    assert answers[-1].json() == {"ok": True, "received": len(data), "version": 7}
    assert r["state"] == [1, 3, True]  # still in the follow-up question, config replaced
    assert bytes.fromhex(r["file"]) == data  # the host's own bytes
    first, second = r["records"]
    # The session that was in progress keeps its scale; the next one uses the new config.
    assert (first[1], first[2], first[3]) == (2, 4, 1)
    assert (second[1], second[2], second[3], second[9]) == (3, 3, 2, 7)
    assert r["four"] is False  # face 4 is beyond the new scale
    assert r["texts"] == "Merci beaucoup, a bientot!"
    assert "config.json.tmp" not in r["files"] and "config.json.new" not in r["files"]


BAD_UPLOADS = {
    "short": (b'{"version": 3}', {"size": 20}, "received 14 of the 20 bytes announced"),
    "crc": (b'{"version": 3}', {"crc": 0x1234}, "crc32 mismatch: announced 00001234"),
    "json": (b'{"version": 3,', {}, "config is not valid JSON"),
    "utf8": (b'{"device_id": "\xff"}', {}, "config is not valid UTF-8"),
    # MicroPython's own decoding would take a surrogate; the check does not.
    "surrogate": (b'{"texts": {"en": {"yes": "\xed\xa0\x80"}}}', {}, "config is not valid UTF-8"),
    "values": (b'{"scale": 9, "thank_you_s": "x", "colour": 1}', {}, "scale must be between"),
    "board": (b'{"scale": 5}', {}, "scale 5 needs 5 face buttons; this board has 4"),
}


def test_bad_config_uploads_are_refused_with_problems_and_the_old_config_stays() -> None:
    plays = {name: upload_lines(50 + i, data, **kw)
             for i, (name, (data, kw, _)) in enumerate(BAD_UPLOADS.items())}
    r = run(f"""
k = RigKiosk()
old = {{"version": 3, "scale": 4, "device_id": "old"}}
k.config = cfg.save(k.config_path, old)
k.flow.apply_config(k.config)
sync = make_sync(k)
for name, lines in {plays!r}.items():
    emit([name, talk(sync, *lines)])
emit(["too_big", talk(sync, "60 CONFIG BEGIN 9000 0")])
emit(["overflow", talk(sync, "61 CONFIG BEGIN 4 0", "61 CONFIG DATA eyJ2ZXJzaW9uIjogM30=",
                       "61 CONFIG END")])
emit(["orphans", talk(sync, "62 CONFIG DATA eyJ9", "63 CONFIG END", "64 CONFIG",
                      "65 CONFIG BEGIN 10 xyz", "66 CONFIG RESET")])
with open(k.config_path) as f:
    emit(["file", json.loads(f.read())])
emit(["config", [k.config["version"], k.config["device_id"], k.flow.config is k.config]])
emit(["files", sorted(os.listdir(MOUNT))])
""")
    assert "config.json" in r["files"]
    assert not [f for f in r["files"] if f.startswith("config.json.")], r["files"]
    for i, (name, (_, _, problem)) in enumerate(BAD_UPLOADS.items()):
        frames = only_frames(r[name])
        assert all(f.kind == "C" and f.tag == 50 + i for f in frames), name
        last = frames[-1].json()
        assert last["ok"] is False, name
        assert any(problem in p for p in last["problems"]), (name, last)
    values = only_frames(r["values"])[-1].json()["problems"]
    assert len(values) == 3  # every problem is reported, not just the first
    too_big = one(r["too_big"], "C", 60).json()
    assert too_big["ok"] is False and "over the 8192 limit" in too_big["problems"][0]
    overflow = only_frames(r["overflow"])
    assert [f.kind for f in overflow] == ["C", "C", "E"]  # the upload ended at the overflow
    assert overflow[1].json()["problems"] == ["more data than the 4 bytes announced"]
    assert overflow[2].json()["error"] == "CONFIG END without CONFIG BEGIN"
    orphans = only_frames(r["orphans"])
    assert [(f.kind, f.tag) for f in orphans] == [("E", t) for t in range(62, 67)]
    assert orphans[0].json()["error"] == "CONFIG DATA without CONFIG BEGIN"
    assert r["file"] == {"version": 3, "scale": 4, "device_id": "old"}
    assert r["config"] == [3, "old", True]


def test_a_malformed_data_line_changes_nothing_and_the_upload_goes_on() -> None:
    data = json.dumps({"version": 9}).encode()
    good = upload_lines(70, data)
    lines = [good[0], "70 CONFIG DATA not*base64", "70 CONFIG DATA " + "QUJD" * 40,
             "70 CONFIG DATA QQ=Q", "70 CONFIG DATA Q===", *good[1:]]
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
emit(["out", talk(sync, *{lines!r})])
emit(["version", k.config["version"]])
""")
    frames = only_frames(r["out"])
    assert [f.kind for f in frames] == ["C", "E", "E", "E", "E", "C", "C"]
    assert "base64 of at most 96 bytes" in frames[1].json()["error"]
    assert frames[-1].json()["ok"] is True and r["version"] == 9


def test_an_abandoned_upload_leaves_no_file_to_be_taken_for_a_config() -> None:
    """An upload cut short (no END: the host went away, or the kiosk was reset) leaves its
    temp file only until the next BEGIN or the next boot, and never in place of the
    config; the next upload starts afresh."""
    first = upload_lines(90, json.dumps({"version": 4, "scale": 3}).encode())
    second = upload_lines(91, json.dumps({"version": 5}).encode())
    r = run(f"""
k = RigKiosk()
k.config = cfg.save(k.config_path, {{"version": 2}})
sync = make_sync(k)
def files():
    return sorted(os.listdir(MOUNT))
emit(["cut", talk(sync, *{first[:-1]!r})])
emit(["during", files()])
emit(["second", talk(sync, *{second!r})])
emit(["after", [files(), cfg.load(k.config_path)[0]["version"], k.config["version"]]])
emit(["cut_again", talk(sync, *{first[:-1]!r})])
sync = make_sync(k)  # the next boot
emit(["reboot", [files(), cfg.load(k.config_path)[0]["version"]]])
emit(["late_end", talk(sync, {first[-1]!r})])
""")
    assert [f.json()["ok"] for f in only_frames(r["cut"])] == [True, True]
    assert "config.json.new" in r["during"]  # the bytes went to the flash as they came
    assert only_frames(r["second"])[-1].json() == {"ok": True, "received": 14, "version": 5}
    assert r["after"] == [["config.json", "log"], 5, 5]
    assert r["reboot"] == [["config.json", "log"], 5]
    assert one(r["late_end"], "E", 90).json()["error"] == "CONFIG END without CONFIG BEGIN"


FRAGMENT = """
def fragment(hole):
    # Fill the free heap with blocks of `hole` bytes, then free every other one: about
    # half of it stays free, in pieces of about that size and none bigger.
    gc.collect()
    held = [None] * 8192
    n = 0
    try:
        while n < len(held):
            held[n] = bytearray(hole)
            n += 1
    except MemoryError:
        pass
    for i in range(0, n, 2):
        held[i] = None
    gc.collect()
    return held
"""


def big_config() -> dict[str, Any]:
    """About 7.7 KB compacted, as the heap benchmark's upload: texts in nine languages and a
    week of opening hours (the kiosk takes at most 8 KB)."""
    words = ("visit", "service", "help", "today", "answer", "staff", "time", "desk")
    texts = {lang: {key: (f"{lang} {key} " + " ".join(words[(n + i) % 8] for i in range(16)))
                    [:100] for key in ("question", "follow_up", "yes", "no", "thanks", "sorry",
                                       "closed")}
             for n, lang in enumerate(("en", "fr", "de", "es", "it", "nl", "pt", "sv", "da"))}
    return {"version": 2, "device_id": "desk-1", "scale": 4, "language": "fr", "texts": texts,
            "opening_hours": {day: ["00:00-12:00", "12:00-24:00"]
                              for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}}


def test_an_upload_needs_no_block_of_heap_near_its_size() -> None:
    """The upload goes to the flash as it comes and is parsed from there: a 7.7 KB config
    is received, checked, parsed and installed with the free heap cut into 1 KB pieces
    (which a whole copy of the text in RAM, 7.7 KB in one piece, cannot get). The kept
    config holds only the texts shown."""
    data = json.dumps(big_config(), separators=(",", ":")).encode()
    assert 7000 < len(data) <= 8192
    lines = upload_lines(12, data)
    r = run(FRAGMENT + f"""
k = RigKiosk()
sync = make_sync(k)
talk(sync, "1 HELLO 1")  # what the first command needs once: the status, json.dumps
held = fragment(1024)
answers = []
for line in {lines!r}:
    # One line at a time, as a host sends them: the test's own buffers stay small.
    answers.append(talk(sync, line))
held = None
emit(["answers", answers])
emit(["kept", [k.config["version"], k.config["language"], sorted(k.config["texts"]),
               cfg.texts(k.config)["thanks"]]])
with open(k.config_path, "rb") as f:
    emit(["same", f.read() == binascii.unhexlify({data.hex()!r})])
""", heap="1M")
    last = only_frames(r["answers"][-1])[-1].json()
    assert last == {"ok": True, "received": len(data), "version": 2}, last
    assert all(only_frames(a)[0].json()["ok"] for a in r["answers"])
    assert r["kept"] == [2, "fr", ["fr"], big_config()["texts"]["fr"]["thanks"]]
    assert r["same"] is True


def read_pieces(frames: list[Frame]) -> tuple[int, bytes, list[tuple[int, int, int]]]:
    """(size, the bytes, [(size, offset, piece length), ...]) of R frames, in order."""
    data = b""
    heads = []
    size = 0
    for frame in frames:
        assert frame.kind == "R", frame
        size = int.from_bytes(frame.payload[0:2], "little")
        offset = int.from_bytes(frame.payload[2:4], "little")
        heads.append((size, offset, len(frame.payload) - 4))
        data += frame.payload[4:]
    return size, data, heads


def test_config_read_sends_the_file_in_pieces_with_its_size_and_offset() -> None:
    """CONFIG READ <offset> answers with an R frame: the file's size, the offset and the
    bytes from there, as many as a frame holds; a 7.7 KB config takes two. Without a
    file the size is 0 (the kiosk runs on its defaults)."""
    data = json.dumps(big_config(), separators=(",", ":")).encode()
    assert 4092 < len(data) <= 8192
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
emit(["none", talk(sync, "1 CONFIG READ 0")])
emit(["past_none", talk(sync, "2 CONFIG READ 1")])
with open(k.config_path, "wb") as f:
    f.write(binascii.unhexlify({data.hex()!r}))
emit(["first", talk(sync, "3 CONFIG READ 0")])
emit(["second", talk(sync, "4 CONFIG READ 4092")])
emit(["end", talk(sync, "5 CONFIG READ {len(data)}")])
emit(["middle", talk(sync, "6 CONFIG READ 100")])
emit(["past", talk(sync, "7 CONFIG READ {len(data) + 1}")])
emit(["bad", talk(sync, "8 CONFIG READ -1", "9 CONFIG READ", b"10 CONFIG READ 0\\n")])
""")
    assert read_pieces([one(r["none"], "R", 1)]) == (0, b"", [(0, 0, 0)])
    assert error_of(r["past_none"], 2)["error"] == "offset 1 is past the config's 0 bytes"
    size, got, heads = read_pieces([one(r["first"], "R", 3), one(r["second"], "R", 4)])
    assert (size, got) == (len(data), data)
    assert heads == [(len(data), 0, 4092), (len(data), 4092, len(data) - 4092)]
    assert read_pieces([one(r["end"], "R", 5)]) == (len(data), b"", [(len(data), len(data), 0)])
    assert read_pieces([one(r["middle"], "R", 6)])[1] == data[100:100 + 4092]
    assert error_of(r["past"], 7)["error"] == (
        f"offset {len(data) + 1} is past the config's {len(data)} bytes")
    bad = only_frames(r["bad"])
    assert [f.kind for f in bad] == ["E", "E", "E"]
    assert "whole number" in bad[0].json()["error"]
    assert bad[1].json()["error"] == "usage: <tag> CONFIG READ <offset>"
    assert "needs a line checksum" in bad[2].json()["error"]
    # The line of an E frame about a config command shows no argument of it.
    assert bad[0].json()["line"] == "8 CONFIG READ <redacted>"


def test_config_read_leaves_an_upload_in_progress_alone() -> None:
    """A host may read the config between an upload's lines: the upload goes on, and what
    is read is the config in force until END."""
    old = json.dumps({"version": 3}).encode()
    new = json.dumps({"version": 4, "scale": 3}).encode()
    lines = upload_lines(20, new, chunk=10)
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
talk(sync, *{upload_lines(10, old)!r})
talk(sync, *{lines[:2]!r})
emit(["read", talk(sync, "30 CONFIG READ 0")])
emit(["rest", talk(sync, *{lines[2:]!r})])
emit(["after", talk(sync, "31 CONFIG READ 0")])
""")
    assert read_pieces([one(r["read"], "R", 30)])[1] == old
    assert only_frames(r["rest"])[-1].json() == {"ok": True, "received": len(new),
                                                 "version": 4}
    assert read_pieces([one(r["after"], "R", 31)])[1] == new


def test_reading_a_full_size_config_needs_no_block_of_heap_near_its_size() -> None:
    """The pieces go from the file straight into the frame buffer: a 7.7 KB config comes
    back with the free heap cut into 1 KB pieces (a copy of the file, or of a 4 KB piece,
    in RAM could not be made)."""
    data = json.dumps(big_config(), separators=(",", ":")).encode()
    r = run(FRAGMENT + f"""
k = RigKiosk()
sent = bytearray(9000)  # the console's other end, made before the heap is cut up
at = [0]
def console(data):
    sent[at[0]:at[0] + len(data)] = data
    at[0] += len(data)
sync = SerialSync(k, src, console, poll_ms=1)
with open(k.config_path, "wb") as f:
    f.write(binascii.unhexlify({data.hex()!r}))
talk(sync, "1 HELLO 1")  # what the first command needs once
at[0] = 0
lines = [signed("2 CONFIG READ 0"), signed("3 CONFIG READ 4092")]
held = fragment(1024)
for line in lines:
    src.feed(line)
    asyncio.run(_drain(sync))
held = None
emit(["out", binascii.hexlify(sent[:at[0]]).decode()])
""", heap="1M")
    frames = only_frames(r["out"])
    assert [(f.kind, f.tag) for f in frames] == [("R", 2), ("R", 3)]
    assert read_pieces(frames)[1] == data


SWEEP = """
from harness import ram_flash, mount, unmount

class SweepLog:
    def counts(self):
        return (0, 0)

class SweepFlow:
    config_problem = False
    def apply_config(self, config):
        pass

class SweepKiosk:
    # What SerialSync uses of app.Kiosk for CONFIG, over a flash that may lose power.
    def __init__(self):
        self.config_path = MOUNT + "/config.json"
        self.config, self.config_problems = cfg.load(self.config_path)
        self.log = SweepLog()
        self.flow = SweepFlow()
        self.hal = Hal(BOARD)
        self.mac = None

image, blocks = ram_flash(24)
mount(image, blocks)
cfg.save(MOUNT + "/config.json", OLD)
unmount()
pristine = bytes(image.data)

def attempt(cut):
    # The upload with the power cut at flash operation `cut` (-1: never), then a boot:
    # (operations done, the answers, what the boot loads, the files left after it).
    image.data[:] = pristine
    dev = mount(image, blocks)
    dev.cut_at = dev.ops + cut if cut >= 0 else -1
    start = dev.ops
    answers = talk(make_sync(SweepKiosk()), *UPLOAD)
    done = dev.ops - start
    try:
        unmount()
    except OSError:
        pass
    mount(image, blocks)
    kiosk = SweepKiosk()
    make_sync(kiosk)
    loaded = [kiosk.config["version"], kiosk.config_problems]
    files = sorted(os.listdir(MOUNT))
    unmount()
    return [done, answers, loaded, files]

whole = attempt(-1)
emit(["whole", whole])
for cut in range(whole[0]):
    emit(["cut", [cut] + attempt(cut)])
"""


def test_a_power_cut_anywhere_in_an_upload_leaves_the_old_config_or_the_new_one() -> None:
    """Every flash operation of an upload (the temp file's writes, its close, the rename)
    cut in turn, then a boot: it loads the old config or the new one, whole, and the new
    one whenever the kiosk had said it took it. A config over a flash block, so that the
    temp file spans blocks."""
    old = {"version": 3, "device_id": "old"}
    new = big_config() | {"version": 4, "device_id": "old"}
    del new["texts"]["da"]  # a little under 8 KB as CPython writes it (with spaces)
    data = json.dumps(new).encode()
    assert 4096 < len(data) <= 8192
    body = SWEEP.replace("OLD", repr(old)).replace("UPLOAD", repr(upload_lines(3, data)))
    rows = run(body.replace("emit([\"cut\", ", "emit([\"cut%d\" % cut, "), heap="4M")
    done, answers, loaded, files = rows["whole"]
    assert only_frames(answers)[-1].json()["ok"] is True
    assert loaded == [4, []] and files == ["config.json"]
    cuts = [rows[f"cut{k}"] for k in range(done)]
    assert done > 10 and len(cuts) == done
    for cut, _, answers, (version, problems), files in cuts:
        said_ok = only_frames(answers)[-1].json().get("ok") is True
        assert problems == [] and version in (3, 4), (cut, version, problems)
        assert not said_ok or version == 4, cut  # a promise kept
        assert files == ["config.json"], (cut, files)  # the boot removed any leftover
    # The rename is the upload's last flash operation: cut there too, the old config
    # stays (LittleFS's commit is atomic), and the kiosk says it did not take the new one.
    last = cuts[-1]
    assert last[3][0] == 3
    assert only_frames(last[2])[-1].json()["problems"][0].startswith("config not saved: ")


# -- garbage, unknown commands, overlong lines, floods ---------------------------------------
def test_garbage_unknown_commands_and_overlong_lines_get_one_error_frame_each() -> None:
    rng = random.Random(4)
    garbage = bytes(rng.choice(b"\x00\x01\x1b\x7f\x80\xfe\xff\n\r Aa9:") for _ in range(600))
    lines = [
        garbage + b"\n",
        b"5 FROB 1\n",
        b"6 hello 1\n",
        b"7 PULL " + b"1" * 300 + b"\n",
        b"HELLO 1\n",
        b"70000 HELLO 1\n",
        b"8 PULL x 10\r\n",
        b"\n\r\n",
        b"9 HELLO 1\n",
    ]
    # Empty lines, bare CR LF ones too, are ignored: no frame, not counted.
    expected_lines = sum(1 for part in b"".join(lines).split(b"\n")[:-1]
                         if part not in (b"", b"\r"))
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
emit(["out", talk(sync, *{lines!r})])
emit(["counts", [sync.lines, sync.errors]])
""")
    frames = only_frames(r["out"])
    assert len(frames) == expected_lines
    assert [f.kind for f in frames[:-1]] == ["E"] * (expected_lines - 1)
    assert (frames[-1].kind, frames[-1].tag) == ("H", 9)
    by_line = {f.json()["line"][:12]: (f.tag, f.json()["error"]) for f in frames[:-1]}
    assert by_line["5 FROB 1"] == (5, "unknown command 'FROB'")
    assert by_line["6 hello 1"] == (6, "unknown command 'hello'")
    assert by_line["7 PULL 11111"] == (7, "line longer than 200 bytes: ignored")
    assert by_line["HELLO 1"][0] == 0  # no readable tag: E frames carry tag 0
    assert by_line["70000 HELLO "][0] == 0
    assert by_line["8 PULL x 10"][0] == 8
    for f in frames[:-1]:
        shown = f.json()["line"]
        assert len(shown) <= 51 and all(32 <= ord(c) < 127 for c in shown)
    assert r["counts"] == [expected_lines, expected_lines - 1]


def test_a_flood_of_1000_lines_is_answered_while_customers_keep_tapping() -> None:
    r = run("""
k = RigKiosk()
sync = make_sync(k)
flood = b"".join(b"%d FLOOD %d\\n" % (i + 1, i) for i in range(1000))
src.feed(flood)  # all of it waiting at once, as from a runaway host
taps = []

async def customers():
    for i in range(20):
        await asyncio.sleep_ms(1)
        k.flow.face(1 + i % 4)
        k.rig.wait(1500)
        await asyncio.sleep_ms(1)
        k.flow.answer(i % 2 == 0)
        taps.append(sync.lines)
        k.rig.wait(3100)

async def main():
    task = asyncio.create_task(sync.run())
    await customers()
    while src.pending() or sync.lines < 1000:
        await asyncio.sleep_ms(5)
    src.feed(b"1001 HELLO 1\\n")
    while sync.lines < 1001:
        await asyncio.sleep_ms(5)
    task.cancel()

asyncio.run(main())
emit(["out", binascii.hexlify(out.take()).decode()])
emit(["taps", taps])
emit(["records", records(k)])
""")
    frames = only_frames(r["out"])
    assert len(frames) == 1001
    assert [f.tag for f in frames] == list(range(1, 1002))
    assert all(f.kind == "E" and f.json()["error"] == "unknown command 'FLOOD'"
               for f in frames[:-1])
    assert frames[-1].kind == "H" and frames[-1].json()["status"]["log"]["stored"] == 20
    # Every customer was served while the flood was still being answered, not after it.
    assert len(r["taps"]) == 20 and r["taps"][-1] < 1000
    assert [(rec[1], rec[3]) for rec in r["records"]] == [
        (1 + i % 4, 1 if i % 2 == 0 else 2) for i in range(20)]


# -- batch encoding ---------------------------------------------------------------------------
def typical_day(seed: int, n: int, first_seq: int = 1) -> list[list[int]]:
    """A busy counter with its clock set: a customer every 10 s to 4 min, most answer the
    follow-up within 1.5-9 s, a few time out, a few rapid or closed taps."""
    rng = random.Random(seed)
    base = EPOCH_2026 + 8 * 3600
    uptime = 900
    out = []
    for i in range(n):
        uptime += rng.randint(10, 240)
        told = rng.choice((1, 1, 1, 2, 2, 0))
        latency = 100 if told == 0 else rng.randint(15, 90)
        flags = (1 if rng.random() < 0.03 else 0) | (2 if rng.random() < 0.02 else 0)
        rating = rng.choice((1, 2, 3, 3, 4, 4, 4))
        out.append([first_seq + i, rating, 4, told, latency, flags | 4, 2, uptime,
                    base + uptime, 3])
    return out


def odd_records(seed: int, n: int) -> list[list[int]]:
    """Everything the encoder must carry: gaps, new boots (and boot numbers going back),
    clock flips, wall base changes, flag and config changes, big values."""
    rng = random.Random(seed)
    seq, boot, uptime, base, known = rng.randint(1, 5000), rng.randint(0, 3), 0, 0, False
    out = []
    for _ in range(n):
        seq += 1 + (rng.choice((0, 0, 0, 1, 7, 300, 70000)) if rng.random() < 0.1 else 0)
        roll = rng.random()
        if roll < 0.05:
            boot += rng.choice((1, 1, 2, 500))
            uptime = rng.choice((0, 3, 40))
            known = rng.random() < 0.5
            base = EPOCH_2026 + rng.randint(-10**6, 10**7)
        elif roll < 0.06 and boot > 0:
            boot -= 1  # a lost boot journal restarts the count: a new batch must begin
            uptime = 5
        elif roll < 0.07:
            uptime = max(0, uptime - 30)  # uptime going back: a new batch must begin
        else:
            uptime += rng.choice((0, 1, 60, 127, 128, 5000, 2**21))
        if rng.random() < 0.05:
            known = not known
        if rng.random() < 0.05:
            base += rng.choice((-1, 1, -3600, 86400))
        scale = rng.choice((3, 4, 5))
        wall = base + uptime if known else 0
        if wall > 0xFFFFFFFF or wall < 0:
            wall = 0
        out.append([seq, rng.randint(1, scale), scale, rng.randint(0, 2),
                    rng.choice((0, 1, 99, 100, 127, 128, 1200, 70000)),
                    rng.randint(0, 3) | (4 if wall else 0), boot, uptime, wall,
                    rng.choice((0, 0, 0, 1, 255, 65535))])
    return out


ENCODE_BODY = """
from kiosk import batch
from kiosk.frames import FrameBuffer, HEAD
with open(%r) as f:
    cases = json.load(f)
fb = FrameBuffer(batch.HEADER_ROOM + 4096 + batch.MAX_RECORD)
enc = batch.BatchEncoder(fb.buf, HEAD + batch.HEADER_ROOM)
for name, budget, recs in cases:
    recs = [tuple(r) for r in recs]
    i = 0
    payloads = []
    back = []
    while i < len(recs):
        enc.begin(recs[i][0], budget)
        start = i
        while i < len(recs) and enc.add(recs[i]):
            i += 1
        offset, length = enc.finish(i < len(recs))
        payload = bytes(fb.buf[offset:offset + length])
        got, more, head = decode(payload)
        back += got
        payloads.append(binascii.hexlify(payload).decode())
    emit([name, {"same": back == recs, "payloads": payloads,
                 "first_diff": next((j for j in range(len(recs))
                                     if j >= len(back) or back[j] != recs[j]), None)}])
"""


def test_batches_round_trip_through_the_decoder_for_random_record_sequences(
    tmp_path: Path,
) -> None:
    cases: list[tuple[str, int, list[list[int]]]] = []
    for seed in range(12):
        budget = (64, 100, 300, 4096)[seed % 4]
        cases.append((f"odd{seed}", budget, odd_records(seed, 400)))
    cases.append(("typical", 4096, typical_day(1, 3000)))
    cases.append(("single", 64, typical_day(2, 1)))
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    r = run(ENCODE_BODY % str(path))
    for name, budget, recs in cases:
        result = r[name]
        assert result["same"], (name, result["first_diff"])
        # The same payloads decode the same in CPython (what the host will run).
        back: list[tuple[int, ...]] = []
        for index, hex_payload in enumerate(result["payloads"]):
            payload = bytes.fromhex(hex_payload)
            assert len(payload) <= budget
            got, more, _ = batchdecode.decode(payload)
            assert more == (index < len(result["payloads"]) - 1)
            back += got
        assert back == [tuple(x) for x in recs], name
    # Going back in boot number or uptime ends a batch early rather than failing.
    assert any(len(r[f"odd{seed}"]["payloads"]) > 1 for seed in range(3, 12, 4))


def test_a_typical_record_takes_at_most_4_bytes(tmp_path: Path) -> None:
    records = typical_day(7, 5000)
    path = tmp_path / "cases.json"
    path.write_text(json.dumps([["typical", 4096, records]]))
    r = run(ENCODE_BODY % str(path))
    payloads = [bytes.fromhex(h) for h in r["typical"]["payloads"]]
    assert r["typical"]["same"]
    payload_bytes = sum(len(p) for p in payloads)
    framed = payload_bytes + 11 * len(payloads)
    assert payload_bytes / len(records) <= 4.0
    assert framed / len(records) <= 4.1
    assert all(len(p) > 4000 for p in payloads[:-1])  # batches are filled


def test_encoding_a_4k_batch_needs_under_8k_of_heap_and_nothing_per_record() -> None:
    records = typical_day(3, 1500)
    r = run(f"""
import micropython
from kiosk import batch
from kiosk.frames import FrameBuffer, HEAD
recs = [tuple(x) for x in {records!r}]
gc.collect()
gc.disable()
before = gc.mem_alloc()
fb = FrameBuffer(batch.HEADER_ROOM + 4096 + batch.MAX_RECORD)
enc = batch.BatchEncoder(fb.buf, HEAD + batch.HEADER_ROOM)
enc.begin(recs[0][0], 4096)
count = 0
micropython.heap_lock()
for rec in recs:
    if not enc.add(rec):
        break
    count += 1
micropython.heap_unlock()
offset, length = enc.finish(True)
frame = fb.seal(0x42, 1, offset, length)
after = gc.mem_alloc()
gc.enable()
emit(["heap", {{"bytes": after - before, "count": count, "length": length,
                "frame": len(frame)}}])
""")
    heap = r["heap"]
    assert heap["length"] > 4000 and heap["count"] > 1000
    assert heap["bytes"] <= 8192, heap  # the frame buffer itself is most of it


def test_the_sync_keeps_little_memory_and_pulls_in_bounded_reads() -> None:
    r = run("""
k = RigKiosk()
add(k, 3000)
sync = None
gc.collect()
base = gc.mem_alloc()
sync = make_sync(k)
gc.collect()
built = gc.mem_alloc() - base
reads = [0, 0, 0]  # calls, most records in one call, calls with another budget
log_read = k.log.read
def counting_read(seq, max_bytes):
    got = log_read(seq, max_bytes)
    reads[0] += 1
    reads[1] = max(reads[1], len(got))
    reads[2] += max_bytes != 1024
    return got
k.log.read = counting_read
sizes = [0, 0, 0]
kept = [0, 0, 0]
for i in range(3):
    sizes[i] = len(frame_of(talk(sync, "1 PULL %d 4096" % (1, 1500, 2900)[i]))[2])
    gc.collect()
    kept[i] = gc.mem_alloc() - base
emit(["memory", {"sizes": sizes, "built": built, "kept": kept, "reads": reads}])
""")
    memory = r["memory"]
    assert memory["sizes"][0] > 4000 and memory["sizes"][2] < 4000
    # The frame buffer (4.2 KB) is most of it, and pulling thousands of records adds nothing.
    assert memory["built"] < 6 * 1024
    assert max(memory["kept"]) - min(memory["kept"]) <= 256
    calls, most, other = memory["reads"]
    assert calls > 3 and most <= 1024 // 11 and other == 0  # records are 11+ bytes


# -- frames -----------------------------------------------------------------------------------
def test_frames_have_the_documented_layout() -> None:
    r = run("""
from kiosk import frames
emit(["frame", binascii.hexlify(frames.encode(0x48, 0x1234, b'{"a": 1}')).decode()])
emit(["empty", binascii.hexlify(frames.encode(0x42, 0, b"")).decode()])
""")
    payload = b'{"a": 1}'
    body = b"H" + (0x1234).to_bytes(2, "little") + len(payload).to_bytes(2, "little") + payload
    assert bytes.fromhex(r["frame"]) == START + body + zlib.crc32(body).to_bytes(4, "little")
    assert len(bytes.fromhex(r["empty"])) == 11


# -- the real console -------------------------------------------------------------------------
CONSOLE_SCRIPT = """
import asyncio, json, sys
from harness import Rig, MOUNT
from kiosk import config as cfg
from kiosk.serial_sync import ConsoleReader, SerialSync

class Kiosk:
    def __init__(self):
        self.config = cfg.defaults()
        self.rig = Rig(self.config)
        self.log, self.clock, self.flow = self.rig.log, self.rig.clock, self.rig.survey
        self.config_path = MOUNT + "/config.json"
        self.config_problems = []
        self.hal = None
        self.mac = None
    def status(self):
        return {"device_id": "pty", "board": "none", "firmware": "test",
                "log": self.log.status(), "clock": self.clock.state()}

k = Kiosk()
reader = ConsoleReader()
sync = SerialSync(k, reader)  # sys.stdin and sys.stdout.buffer, as on the device
ticks = [0]

async def survey():
    while True:
        ticks[0] += 1
        await asyncio.sleep_ms(2)

async def main():
    asyncio.create_task(survey())
    asyncio.create_task(sync.run())
    while ticks[0] < 50:
        await asyncio.sleep_ms(2)
    print("@" + json.dumps(["idle", sync.lines]))  # the loop runs while stdin is silent
    while sync.lines < 3 and not reader.closed:
        await asyncio.sleep_ms(2)
    seen = sync.lines
    while not reader.closed and sync.lines < 4:
        await asyncio.sleep_ms(2)
    print("@" + json.dumps(["done", seen, reader.closed, ticks[0] > 50]))

asyncio.run(main())
"""


def _read_until(stream: Any, marker: bytes, buffer: bytearray, deadline: float) -> None:
    while marker not in buffer:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} in {bytes(buffer)[-400:]!r}")
        ready, _, _ = select.select([stream], [], [], left)
        if ready:
            chunk = os.read(stream.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"output ended before {marker!r}: {bytes(buffer)!r}")
            buffer += chunk


def test_the_console_reader_serves_a_real_pty_without_blocking_the_loop() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    prelude = (f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\n"
               f"sys.path.insert(0, {str(FW_TESTS)!r})\n")
    proc = subprocess.Popen(
        [micropython_binary(), "-X", "heapsize=2M", "-c", prelude + CONSOLE_SCRIPT],
        stdin=slave, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    os.close(slave)
    got = bytearray()
    deadline = time.monotonic() + 60
    try:
        _read_until(proc.stdout, b'@["idle", 0]', got, deadline)
        os.write(master, b"1 HELLO 1\n")
        _read_until(proc.stdout, b"\xd5\xaaH\x01\x00", got, deadline)
        os.write(master, b"2 TI")  # half a line, the rest later
        os.write(master, b"ME 1767225600 *d917\r\n3 PING\n")  # TIME is signed
        _read_until(proc.stdout, b"\xd5\xaaE\x03\x00", got, deadline)
        os.close(master)  # the host goes away: the reader sees the hang-up and stops
        master = -1
        _read_until(proc.stdout, b'@["done"', got, deadline)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if master >= 0:
            os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
    rest = proc.stdout.read() if proc.stdout else b""
    frames, _ = parse_frames(bytes(got) + rest)
    assert [(f.kind, f.tag) for f in frames] == [("H", 1), ("T", 2), ("E", 3)]
    assert frames[1].json()["anchor"][2] == 1767225600
    # Frames end without a newline, so a print can follow one on the same line.
    done = (bytes(got) + rest).split(b'@["done"', 1)[1].split(b"\n", 1)[0]
    assert json.loads(b'["done"' + done) == ["done", 3, True, True]


def test_the_console_reader_stops_at_end_of_input() -> None:
    prelude = f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\n"
    proc = subprocess.run(
        [micropython_binary(), "-c", prelude + """
from kiosk.serial_sync import ConsoleReader
reader = ConsoleReader()
buf = bytearray(8)
print("@", reader.readinto(buf), reader.closed, reader.readinto(buf))
"""],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, check=True,
    )
    assert proc.stdout.strip() == "@ 0 True 0"


# -- the real app ------------------------------------------------------------------------------
def test_sync_against_the_real_kiosk_and_simulated_hardware(tmp_path: Path) -> None:
    # A bare kiosk (no config file) goes by its MAC's id: it syncs as it is, and its own id
    # given in a config is no rename; another id waits until its responses are confirmed.
    new = json.dumps({"version": 2, "device_id": "desk-1", "scale": 4}).encode()
    same = json.dumps({"version": 1, "device_id": "kiosk-240ac4123456"}).encode()
    lines = upload_lines(6, same) + upload_lines(7, new) + upload_lines(5, new)
    r = run(f"""
from kiosk import app
from kiosk.hal.sim import SimHal
from kiosk.screen import TextScreen
hal = SimHal(BOARD, {str(tmp_path)!r}, "power_on", TextScreen(),
             mac=binascii.unhexlify("240ac4123456"))
kiosk = app.Kiosk(hal)
kiosk.start()
sync = make_sync(kiosk)
emit(["hello", talk(sync, "1 HELLO 1")])
emit(["time", talk(sync, "2 TIME {EPOCH_2026}")])
def on_glass():
    # No refresh task runs here: say the panel shows the newest view, as it would.
    kiosk.display.shown, kiosk.display.shown_ms = kiosk.display.requests, hal.ticks_ms()
    hal.jump_ms(1000)
for rating in (4, 1):
    on_glass()
    kiosk.press(rating - 1)  # face buttons are in order
    on_glass()
    kiosk.press(3)  # the "yes" button
    hal.jump_ms(4000)
    kiosk.flow.tick()
emit(["pull", talk(sync, "3 PULL 1 4096")])
emit(["same", talk(sync, *{lines[:-len(upload_lines(5, new))]!r})])
emit(["ack", talk(sync, "4 ACK 2")])
emit(["config", talk(sync, *{upload_lines(5, new)!r})])
emit(["status", kiosk.status()])
kiosk.close()
hal.unmount()
""")
    hello = one(r["hello"], "H", 1).json()
    assert hello["board"] == BOARD["name"] and hello["status"]["boot"] == 1
    assert (hello["device_id"], hello["mac"]) == ("kiosk-240ac4123456", "240ac4123456")
    assert (hello["first_seq"], hello["next_seq"]) == (1, 1)
    assert one(r["time"], "T", 2).json()["anchor"][2] == EPOCH_2026
    records, more, _ = batchdecode.decode(one(r["pull"], "B", 3).payload)
    assert more == 0
    assert [(rec[0], rec[1], rec[3]) for rec in records] == [(1, 4, 1), (2, 1, 1)]
    assert all(rec[8] >= EPOCH_2026 for rec in records)
    answers = [f.json() for f in only_frames(r["same"]) if f.tag in (6, 7)]
    assert answers[len(upload_lines(6, same)) - 1] == {"ok": True, "received": len(same),
                                                       "version": 1}
    assert answers[-1] == {"ok": False, "received": len(new), "problems": [
        "device_id cannot change from kiosk-240ac4123456 to desk-1 while 2 responses are "
        "not confirmed by a host: sync them first"]}
    assert one(r["ack"], "A", 4).json() == {"acked": 2}
    assert only_frames(r["config"])[-1].json() == {"ok": True, "received": len(new),
                                                   "version": 2}
    assert r["status"]["device_id"] == "desk-1" and r["status"]["config_version"] == 2
    assert r["status"]["config_problems"] == []


@pytest.mark.parametrize("chunk", [0, 7, 256])
@pytest.mark.slow
def test_long_frames_go_out_in_bounded_writes(chunk: int) -> None:
    r = run(f"""
k = RigKiosk()
add(k, 2000)
sync = make_sync(k, write_chunk={chunk})
h = talk(sync, "1 PULL 1 4096")
emit(["out", [h, out.writes]])
""")
    h, writes = r["out"]
    frame = one(h, "B", 1)
    total = len(frame.payload) + 11
    assert writes == (1 if chunk == 0 else -(-total // chunk))


def test_the_host_decoder_reads_the_firmware_batches_the_same(tmp_path: Path) -> None:
    # The contract from both ends: host/deskpulse/batch.py decodes what the firmware wrote.
    cases = [(f"odd{seed}", 300, odd_records(seed, 300)) for seed in range(4)]
    cases.append(("typical", 4096, typical_day(5, 2000)))
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    r = run(ENCODE_BODY % str(path))
    for name, _, recs in cases:
        got = []
        for hex_payload in r[name]["payloads"]:
            got += decode_batch(bytes.fromhex(hex_payload)).responses
        assert [(x.seq, x.rating, x.scale, x.told_next, x.latency_ds, x.rapid, x.closed,
                 x.boot, x.uptime_s, x.wall or 0, x.config_version) for x in got] == [
            (rec[0], rec[1], rec[2], ("no_answer", "yes", "no")[rec[3]], rec[4],
             bool(rec[5] & 1), bool(rec[5] & 2), rec[6], rec[7], rec[8], rec[9])
            for rec in recs], name


def test_state_changing_commands_need_an_intact_line_checksum() -> None:
    r = run("""
k = RigKiosk()
add(k, 10)
sync = make_sync(k)
emit(["unsigned", talk(sync, b"1 ACK 5\\n")])
emit(["flipped", talk(sync, signed("2 ACK 5").replace(b"ACK 5", b"ACK 9"))])
emit(["after", k.log.acked_upto])
emit(["good", talk(sync, "3 ACK 5")])
emit(["acked", k.log.acked_upto])
emit(["pull_unsigned", talk(sync, b"4 PULL 1 100\\n")])
""")
    unsigned, flipped, good, pull = (only_frames(r[k]) for k in (
        "unsigned", "flipped", "good", "pull_unsigned"))
    assert unsigned[0].kind == "E" and "needs a line checksum" in unsigned[0].json()["error"]
    assert flipped[0].kind == "E" and "checksum does not match" in flipped[0].json()["error"]
    assert r["after"] == 0  # neither the damaged nor the unsigned ACK freed anything
    assert good[0].kind == "A" and r["acked"] == 5
    assert pull[0].kind == "B"  # reading needs no checksum


# -- empty lines, redaction, identity, strict JSON --------------------------------------------
def test_empty_lines_and_bare_crlf_lines_are_ignored() -> None:
    r = run("""
k = RigKiosk()
sync = make_sync(k)
emit(["out", talk(sync, b"\\n", b"\\r\\n", b"\\r\\n\\r\\n\\n", "1 HELLO 1", b"\\r\\n")])
emit(["counts", [sync.lines, sync.errors]])
""")
    assert [(f.kind, f.tag) for f in only_frames(r["out"])] == [("H", 1)]
    assert r["counts"] == [1, 0]


SECRET_CHUNK = base64.b64encode(
    b'{"sync": {"wifi_ssid": "shop", "wifi_password": "hunter2-very-secret", "x": 1}}'
).decode()


def test_an_error_frame_never_echoes_the_argument_of_a_config_data_line() -> None:
    """A CONFIG DATA line carries part of the config, WiFi password and key included: the
    E frame for a damaged one shows its tag and CONFIG words only, whatever went wrong."""
    flipped = ("21 CONFIG DATA " + SECRET_CHUNK).encode()
    lines = [
        "20 CONFIG BEGIN 300 1234abcd",
        # a checksum that does not match (a byte damaged on the way)
        flipped + b" *%04x\n" % (zlib.crc32(flipped[:-1] + b"x") & 0xFFFF),
        "22 CONFIG DATA " + SECRET_CHUNK[:40] + "*!" + SECRET_CHUNK[42:60],  # bad base64
        "23 CONFIG DATA " + SECRET_CHUNK * 2,  # overlong
        ("24 CONFIG DATA " + SECRET_CHUNK[:60] + "\n").encode(),  # unsigned
        # damaged command words: a long base64-like word is hidden all the same
        ("25 CONFXG DATA " + SECRET_CHUNK[:60] + "\n").encode(),
        ("26 CXNFIG DXTA " + SECRET_CHUNK[:60] + "\n").encode(),
        ("27 CONFIG DATA " + SECRET_CHUNK[:8] + "\x01" + SECRET_CHUNK[8:30] + "\n").encode(),
    ]
    r = run(f"""
k = RigKiosk()
sync = make_sync(k)
emit(["out", talk(sync, *{lines!r})])
""")
    frames = only_frames(r["out"])
    assert [(f.kind, f.tag) for f in frames] == [("C", 20)] + [("E", t) for t in range(21, 28)]
    shown = {f.tag: f.json()["line"] for f in frames[1:]}
    errors = {f.tag: f.json()["error"] for f in frames[1:]}
    assert "checksum does not match" in errors[21]
    assert "base64" in errors[22]
    assert "longer than 200 bytes" in errors[23]
    assert "needs a line checksum" in errors[24]
    assert "not a command line" in errors[27]
    for tag in (21, 22, 23, 24, 27):
        assert shown[tag] == f"{tag} CONFIG DATA <redacted>", shown[tag]
    assert shown[25] == "25 <redacted>"
    assert shown[26] == "26 CXNFIG DXTA <redacted>"
    for tag, line in shown.items():
        for i in range(len(SECRET_CHUNK) - 6):
            assert SECRET_CHUNK[i:i + 6] not in line, (tag, line)


def test_other_lines_are_still_echoed_as_sent() -> None:
    r = run("""
k = RigKiosk()
sync = make_sync(k)
emit(["out", talk(sync, b"8 PULL x 10\\n", b"9 FROB 12345678901234567890\\n")])
""")
    frames = only_frames(r["out"])
    assert [f.json()["line"] for f in frames] == ["8 PULL x 10", "9 FROB 12345678901234567890"]


RENAME_BODY = """
k = RigKiosk(device_id=CURRENT_ID, mac=MAC)
if CURRENT_ID:
    k.config = cfg.save(k.config_path, {"device_id": CURRENT_ID})
add(k, 3)
sync = make_sync(k)
def saved():
    try:
        with open(k.config_path) as f:
            return json.loads(f.read())
    except OSError:
        return None
emit(["upload", talk(sync, *UPLOAD)])
emit(["after", [k.config["device_id"], saved(), k.log.counts()[1]]])
emit(["ack", talk(sync, "5 ACK 3")])
emit(["again", talk(sync, *UPLOAD)])
emit(["end", [k.config["device_id"], saved()]])
"""


def rename(current: str, new_config: dict[str, Any], mac: bytes | None = None
           ) -> dict[str, Any]:
    lines = upload_lines(4, json.dumps(new_config).encode())
    return run(RENAME_BODY.replace("CURRENT_ID", repr(current)).replace("UPLOAD", repr(lines))
               .replace("MAC", repr(mac)))


def test_a_config_cannot_rename_a_kiosk_that_holds_unconfirmed_responses() -> None:
    """The host stores responses under the id the kiosk reports: renamed before they are
    confirmed, the same responses would be stored again under the new id."""
    r = rename("desk-1", {"device_id": "desk-2", "version": 5})
    refused = only_frames(r["upload"])[-1].json()
    assert refused["ok"] is False
    assert refused["problems"] == [
        "device_id cannot change from desk-1 to desk-2 while 3 responses are not confirmed "
        "by a host: sync them first"]
    assert r["after"] == ["desk-1", {"device_id": "desk-1"}, 3]  # nothing changed
    assert one(r["ack"], "A", 5).json() == {"acked": 3}
    assert only_frames(r["again"])[-1].json() == {"ok": True, "received": 37, "version": 5}
    assert r["end"] == ["desk-2", {"device_id": "desk-2", "version": 5}]


def test_a_config_cannot_take_the_id_away_while_responses_wait() -> None:
    r = rename("desk-1", {"version": 5})
    refused = only_frames(r["upload"])[-1].json()
    assert refused["problems"] == [
        'device_id cannot change from desk-1 to "" while 3 responses are not confirmed by a '
        "host: sync them first"]
    assert only_frames(r["again"])[-1].json()["ok"] is True


def test_a_kiosk_without_an_id_can_be_named_and_the_same_id_kept_with_responses_waiting(
) -> None:
    named = rename("", {"device_id": "desk-2"})
    assert only_frames(named["upload"])[-1].json()["ok"] is True
    assert named["after"] == ["desk-2", {"device_id": "desk-2"}, 3]
    same = rename("desk-1", {"device_id": "desk-1", "version": 6})
    assert only_frames(same["upload"])[-1].json()["ok"] is True
    assert same["after"][:2] == ["desk-1", {"device_id": "desk-1", "version": 6}]


MAC = bytes.fromhex("240ac4123456")


def test_a_bare_kiosk_goes_by_its_mac_id_and_keeps_it_when_named_so() -> None:
    """A kiosk whose config names no id goes by kiosk- and its MAC: the host stores its
    responses under that id, so a config naming it the same way (or naming no id) is no
    rename, with responses waiting or not."""
    for new in ({"device_id": "kiosk-240ac4123456", "version": 6}, {"version": 6}):
        r = rename("", new, MAC)
        assert only_frames(r["upload"])[-1].json()["ok"] is True, new
        assert r["after"] == ["kiosk-240ac4123456", new, 3]


def test_a_bare_kiosk_with_responses_waiting_cannot_be_given_another_id() -> None:
    r = rename("", {"device_id": "desk-2", "version": 5}, MAC)
    assert only_frames(r["upload"])[-1].json()["problems"] == [
        "device_id cannot change from kiosk-240ac4123456 to desk-2 while 3 responses are not "
        "confirmed by a host: sync them first"]
    assert r["after"] == ["kiosk-240ac4123456", None, 3]  # no file, nothing changed
    assert one(r["ack"], "A", 5).json() == {"acked": 3}
    assert only_frames(r["again"])[-1].json()["ok"] is True
    assert r["end"] == ["desk-2", {"device_id": "desk-2", "version": 5}]


def test_a_named_kiosk_given_no_id_takes_its_mac_id_only_once_its_responses_are_confirmed(
) -> None:
    r = rename("desk-1", {"version": 5}, MAC)
    assert only_frames(r["upload"])[-1].json()["problems"] == [
        "device_id cannot change from desk-1 to kiosk-240ac4123456 while 3 responses are not "
        "confirmed by a host: sync them first"]
    assert only_frames(r["again"])[-1].json()["ok"] is True
    assert r["end"] == ["kiosk-240ac4123456", {"version": 5}]


BROKEN_JSON = {
    "double_comma": (b'{"scale": 3,,}',
                     "config is not valid JSON: expected '\"' (a key) at byte 12"),
    "no_comma": (b'{"version": 1 "scale": 3}', "config is not valid JSON: expected ',' or '}' at "
                                                "byte 14"),
    "trailing": (b'{"scale": 3,}', "config is not valid JSON: expected '\"' (a key) at byte 12"),
    "nan": (b'{"version": NaN}', "config is not valid JSON: expected a value at byte 12"),
    "deep": (b'{"texts": ' + b"[" * 9 + b"]" * 9 + b"}",
             "config is nested too deeply: more than 8 levels of arrays and objects at byte 17"),
    "very_deep": (b"[" * 4000 + b"]" * 4000,
                  "config is nested too deeply: more than 8 levels of arrays and objects at "
                  "byte 8"),
}


def test_an_upload_that_is_not_strictly_valid_json_is_refused() -> None:
    """MicroPython's json.loads takes '{"scale": 3,,}' as {"scale": 3}: the device checks
    the syntax itself before it parses, and says where the text goes wrong."""
    plays = {name: upload_lines(80 + i, data) for i, (name, (data, _)) in
             enumerate(BROKEN_JSON.items())}
    r = run(f"""
k = RigKiosk()
k.config = cfg.save(k.config_path, {{"version": 2, "scale": 4}})
sync = make_sync(k)
for name, lines in {plays!r}.items():
    emit([name, talk(sync, *lines)])
with open(k.config_path) as f:
    emit(["file", json.loads(f.read())])
emit(["config", [k.config["version"], k.config["scale"]]])
""")
    for name, (_, problem) in BROKEN_JSON.items():
        last = only_frames(r[name])[-1].json()
        assert last["ok"] is False and last["problems"] == [problem], (name, last)
    assert r["file"] == {"version": 2, "scale": 4}
    assert r["config"] == [2, 4]
