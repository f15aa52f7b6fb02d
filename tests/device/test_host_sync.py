"""Host side of the serial sync: frame parser, batch codec, database, sync over a real pty.

The sync tests here talk to a stand-in kiosk (a thread speaking docs/protocol.md on a real
pty, with faults on request); tests/device/test_sync_e2e.py runs the same host code against the
real firmware.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import json
import os
import select
import signal
import sqlite3
import subprocess
import sys
import threading
import tty
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import REPO, run_mpy
from deskpulse import cli
from deskpulse.device import ports as ports_mod
from deskpulse.device.link import SyncError
from deskpulse.device.ports import find_ports, open_port, resolve_port
from deskpulse.device.sync import sync
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import (
    Anchor,
    Batch,
    BatchError,
    Response,
    decode_batch,
    encode_batch,
    parse_anchor,
)
from deskpulse.protocol.frames import MARKER, MAX_PAYLOAD, Frame, FrameParser, encode_frame
from deskpulse.store import base, open_store
from deskpulse.store.sqlite import schema

sys.path.insert(0, str(REPO / "tools"))
from bench_sync import PtyRelay  # noqa: E402

PATIENCE = 30.0  # an upper bound for a thread to finish; never asserted as a duration
FAST = {"timeout": 0.5, "attempts": 3}  # sync options: the stand-in answers at once

# -- frames -------------------------------------------------------------------------------

frame_types = st.sampled_from("HBATCE")
frames_st = st.builds(
    Frame, frame_types, st.integers(0, 0xFFFF), st.binary(max_size=300))


def feed_in_chunks(parser: FrameParser, data: bytes, cuts: Sequence[int]) -> list[Frame]:
    out: list[Frame] = []
    points = sorted({c % (len(data) + 1) for c in cuts})
    start = 0
    for point in [*points, len(data)]:
        out += parser.feed(data[start:point])
        start = point
    return out


def wire(frames: Sequence[Frame]) -> list[bytes]:
    return [encode_frame(f.type, f.tag, f.payload) for f in frames]


def test_a_frame_survives_the_noise_around_it() -> None:
    frame = Frame("H", 513, b'{"proto": 1}')
    noise = b"MicroPython v1.29 on 2026-11-22\r\n[screen] idle\r\n\xd5"
    got = FrameParser().feed(noise + encode_frame(*_fields(frame)) + b">>> ")
    assert got == [frame]


def _fields(frame: Frame) -> tuple[str, int, bytes]:
    return frame.type, frame.tag, frame.payload


def test_a_false_start_cannot_hide_a_complete_frame_behind_it() -> None:
    # The marker bytes inside a text line, followed by a length far past the real frame.
    false_start = MARKER + b"E\x00\x00\xff\x7f" + b"text"
    frame = Frame("A", 9, b'{"acked": 4}')
    parser = FrameParser()
    assert parser.feed(false_start + encode_frame(*_fields(frame))) == [frame]
    # The parser holds nothing back for the false start: the next frame comes at once.
    second = Frame("T", 10, b"{}")
    assert parser.feed(encode_frame(*_fields(second))) == [second]


def test_a_length_beyond_the_limit_is_noise() -> None:
    too_long = MARKER + b"B\x01\x00" + (MAX_PAYLOAD + 1).to_bytes(2, "little")
    frame = Frame("B", 2, b"\x00" * 10)
    assert FrameParser().feed(too_long + encode_frame(*_fields(frame))) == [frame]


def test_a_bad_crc_is_skipped_and_the_next_frame_found() -> None:
    good = Frame("C", 77, b'{"ok": true}')
    broken = bytearray(encode_frame("C", 76, b'{"ok": false}'))
    broken[-1] ^= 0x40
    parser = FrameParser()
    assert parser.feed(bytes(broken) + encode_frame(*_fields(good))) == [good]
    assert parser.skipped == len(broken)


@settings(max_examples=300, deadline=None)
@given(st.lists(frames_st, max_size=6), st.lists(st.binary(max_size=40), min_size=7,
       max_size=7), st.lists(st.integers(0, 10_000), max_size=12))
def test_frames_come_through_any_noise_and_any_chunking(
    frames: list[Frame], noise: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(n + w for n, w in zip(noise, wire(frames), strict=False)) + noise[-1]
    assert feed_in_chunks(FrameParser(), data, cuts) == frames


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_random_bytes_never_give_a_frame_that_was_not_sent(
    data: bytes, cuts: list[int]
) -> None:
    for frame in feed_in_chunks(FrameParser(), data, cuts):
        assert encode_frame(*_fields(frame)) in data


@st.composite
def mutated_streams(draw: st.DrawFn) -> tuple[list[Frame], bytes]:
    frames = draw(st.lists(frames_st, min_size=1, max_size=5))
    data = bytearray(b"".join(wire(frames)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "drop" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=12))
        elif kind == "cut":
            del data[at:]
    return frames, bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_streams(), st.lists(st.integers(0, 10_000), max_size=8))
def test_damaged_streams_give_only_frames_that_were_sent_intact(
    case: tuple[list[Frame], bytes], cuts: list[int]
) -> None:
    frames, data = case
    for frame in feed_in_chunks(FrameParser(), data, cuts):
        assert encode_frame(*_fields(frame)) in data
        assert frame in frames


# -- batches ------------------------------------------------------------------------------

# Assembled by hand from docs/protocol.md, so the codec is pinned to the document and
# not only to itself.
SPEC_BATCH = bytes.fromhex(
    "03 0a 03 f403 00 01"  # 3 records from seq 10, boot 3, uptime 500, clock unknown, more
    " 2c 00 17"  # 4 of 4, told yes, same uptime, 2.3 s
    " c9 34 01 f0aaa0b00d 3c 64"  # 1 of 4, told no; flags rapid, wall base, clock known
    " 92 2f 03 01 02 07 2a 00"  # 2 of 5, no answer; gap 3, new boot, closed, config 7, clock
)


def test_a_batch_assembled_from_the_spec_decodes() -> None:
    batch = decode_batch(SPEC_BATCH)
    assert batch.more
    assert batch.responses == [
        Response(10, 4, 4, "yes", 2.3, False, False, 3, 500, None, 0),
        Response(11, 1, 4, "no", 10.0, True, False, 3, 560, 1795427560, 0),
        Response(16, 2, 5, "no_answer", 0.0, False, True, 4, 42, None, 7),
    ]
    assert encode_batch(batch.responses, more=True) == SPEC_BATCH


@pytest.mark.parametrize("payload, problem", [
    (b"", "ends early"),
    (bytes.fromhex("05 01 01 00 00 00 2c 00 00"), "claims 5 records"),
    (bytes.fromhex("01 01 01 00 00 02 2c 00 00"), "more flag"),
    (bytes.fromhex("01 01 01 00 00 00 2c 00 00 00"), "after the last record"),
    (bytes.fromhex("01 01 01 00 00 00 2c 00 ffffffffff7f"), "varint longer"),
    (bytes.fromhex("01 00 01 00 00 00 2c 00 00"), "start at 1"),
    (bytes.fromhex("01 01 01 00 00 00 0d 00 00"), "rating 5 outside 1..4"),
    (bytes.fromhex("01 01 01 00 00 00 18 00 00"), "bad scale"),
    (bytes.fromhex("01 01 01 00 00 00 6c 00 00"), "bad scale or told"),
    (bytes.fromhex("01 01 01 00 00 00 ac 40 00 00"), "unknown extension bits"),
    (bytes.fromhex("01 01 01 00 00 00 ac 04 08 00 00"), "unknown flags"),
    (bytes.fromhex("01 01 01 00 00 00 ac 20 00 00"), "wall time 0"),
    (bytes.fromhex("01 8080808010 01 00 00 00 2c 00 00"), "first seq 4294967296 out of range"),
])
def test_malformed_batches_are_refused(payload: bytes, problem: str) -> None:
    with pytest.raises(BatchError, match=problem):
        decode_batch(payload)


def test_a_huge_count_is_refused_before_anything_is_allocated() -> None:
    with pytest.raises(BatchError, match="claims"):
        decode_batch(bytes.fromhex("ffffffff0f 01 01 00 00 00") + b"\x2c\x00\x00" * 10)


@st.composite
def response_runs(draw: st.DrawFn, max_size: int = 60) -> list[Response]:
    count = draw(st.integers(0, max_size))
    seq = draw(st.integers(1, 1 << 31))
    boot = draw(st.integers(0, 1000))
    uptime = draw(st.integers(0, 1 << 20))
    base = draw(st.integers(1_600_000_000, 1_900_000_000))
    known = draw(st.booleans())
    out = []
    for _ in range(count):
        seq += draw(st.sampled_from([1, 1, 1, 2, draw(st.integers(1, 5000))]))
        if draw(st.integers(0, 9)) == 0:
            boot += draw(st.integers(1, 3))
            uptime = draw(st.integers(0, 100))
            known = False
        uptime += draw(st.integers(0, 5000))
        if draw(st.integers(0, 9)) == 0:
            known = not known
            base += draw(st.integers(-3600, 3600))
        scale = draw(st.integers(3, 5))
        if seq > 0xFFFF_FFFF or uptime > 0xFFFF_FFFF:
            break
        out.append(Response(
            seq=seq, rating=draw(st.integers(1, scale)), scale=scale,
            told_next=draw(st.sampled_from(["yes", "no", "no_answer"])),
            latency_s=draw(st.integers(0, 1200)) / 10, rapid=draw(st.booleans()),
            closed=draw(st.booleans()), boot=boot, uptime_s=uptime,
            wall=base + uptime if known else None,
            config_version=draw(st.sampled_from([0, 0, 3, draw(st.integers(0, 0xFFFF))])),
        ))
    return out


@settings(max_examples=150, deadline=None)
@given(response_runs(), st.booleans())
@pytest.mark.slow
def test_batches_round_trip(responses: list[Response], more: bool) -> None:
    assert decode_batch(encode_batch(responses, more)) == Batch(responses, more)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=600))
def test_random_payloads_decode_or_raise_batch_error(payload: bytes) -> None:
    with contextlib.suppress(BatchError):
        batch = decode_batch(payload)
        assert len(batch.responses) <= len(payload) // 3


@settings(max_examples=300, deadline=None)
@given(response_runs(max_size=20), st.data())
@pytest.mark.slow
def test_mutated_batches_decode_or_raise_batch_error(
    responses: list[Response], data: st.DataObject
) -> None:
    payload = bytearray(encode_batch(responses))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(payload) - 1))
        action = data.draw(st.sampled_from(["flip", "drop", "insert"]))
        if action == "flip":
            payload[at] ^= data.draw(st.integers(1, 255))
        elif action == "drop":
            del payload[at]
        else:
            payload.insert(at, data.draw(st.integers(0, 255)))
        if not payload:
            break
    with contextlib.suppress(BatchError):
        for r in decode_batch(bytes(payload)).responses:
            assert 1 <= r.rating <= r.scale <= 5 and r.seq >= 1
            assert r.wall is None or r.wall > 0


def day_of_responses(count: int, start_seq: int = 1) -> list[Response]:
    """A realistic run: mostly consecutive, minutes apart, clock known, a reboot now
    and then (that boot's clock unknown)."""
    out = []
    boot, uptime, known, base = 1, 40, True, 1_795_400_000
    for i in range(count):
        if i and i % 997 == 0:
            boot, uptime, known = boot + 1, 30, False
        uptime += 30 + (i * 7919) % 570
        scale = 4
        out.append(Response(
            seq=start_seq + i, rating=1 + (i * 31) % 4 if i % 5 else 4, scale=scale,
            told_next=("yes", "no", "no_answer")[(i * 13) % 3], latency_s=(5 + i % 90) / 10,
            rapid=i % 17 == 0, closed=False, boot=boot, uptime_s=uptime,
            wall=base + uptime if known else None, config_version=2))
    return out


def test_a_typical_response_takes_three_to_five_bytes() -> None:
    responses = day_of_responses(1000)
    size = sum(len(encode_batch(responses[i:i + 250])) for i in range(0, 1000, 250))
    assert 3 <= size / 1000 <= 5


FIRMWARE_ENCODER = """
import json, sys
from kiosk.batch import BatchEncoder, HEADER_ROOM, MAX_RECORD
told = {"no_answer": 0, "yes": 1, "no": 2}
recs = [(r["seq"], r["rating"], r["scale"], told[r["told_next"]], r["latency_ds"],
         (1 if r["rapid"] else 0) | (2 if r["closed"] else 0) | (4 if r["wall"] else 0),
         r["boot"], r["uptime_s"], r["wall"] or 0, r["config_version"])
        for r in json.loads(open(sys.argv[1]).read())]
buf = bytearray(HEADER_ROOM + 4096 + MAX_RECORD)
enc = BatchEncoder(buf, HEADER_ROOM)
i = 0
while i < len(recs):
    enc.begin(recs[i][0], 4096)
    while i < len(recs) and enc.add(recs[i]):
        i += 1
    off, n = enc.finish(i < len(recs))
    print("@" + bytes(buf[off:off + n]).hex())
"""


def test_the_firmware_encoder_and_this_decoder_agree(tmp_path: Path) -> None:
    """The device's own encoder (firmware/kiosk/batch.py on MicroPython) against the host's
    decoder, on runs with gaps, reboots, flag and config changes and clock changes."""
    responses = day_of_responses(3000)
    # Gaps (dropped or corrupt records), closed flags and a config change on top.
    responses = [replace(r, seq=r.seq + (r.seq // 700) * 5 + (3 if r.seq > 2500 else 0),
                         closed=r.seq % 11 == 0, config_version=2 + (r.seq > 1800))
                 for r in responses]
    records = tmp_path / "records.json"
    records.write_text(json.dumps([_as_json(r) for r in responses]))
    payloads = [bytes.fromhex(line[1:]) for line in run_mpy(
        FIRMWARE_ENCODER, str(records)).stdout.split() if line.startswith("@")]
    decoded = [r for p in payloads for r in decode_batch(p).responses]
    assert [decode_batch(p).more for p in payloads] == [True] * (len(payloads) - 1) + [False]
    mismatches = [(want, got) for want, got in zip(responses, decoded, strict=True)
                  if want != got]
    assert not mismatches, f"first of {len(mismatches)}: {mismatches[0]}"


def _as_json(r: Response) -> dict[str, Any]:
    return {"seq": r.seq, "rating": r.rating, "scale": r.scale, "told_next": r.told_next,
            "latency_ds": r.latency_ds, "rapid": r.rapid, "closed": r.closed, "boot": r.boot,
            "uptime_s": r.uptime_s, "wall": r.wall, "config_version": r.config_version}


def test_anchors_are_checked() -> None:
    assert parse_anchor([2, 10, 1795428000, 1]) == Anchor(2, 10, 1795428000, 1)
    for bad in ([1, 2, 3], [1, 2, 0, 1], ["1", 2, 3, 4], [1, True, 3, 4], None):
        with pytest.raises(BatchError):
            parse_anchor(bad)


# -- database -----------------------------------------------------------------------------

STATUS = {"firmware": "0.1.0", "device_id": "desk-1", "board": "esp32-devkitc-ssd1680",
          "boot": 3, "reset_cause": "power_on", "crashes": 0,
          "log": {"stored": 4, "unacked": 4, "dropped": 2, "corrupt": 1, "next_seq": 5,
                  "acked_upto": 0, "fs_fill": 0.031},
          "clock": {"known": True, "source": "host", "wall": 1795428000}}


def resp(seq: int, boot: int, uptime: int, wall: int | None = None, rating: int = 3,
         **kw: Any) -> Response:
    base: dict[str, Any] = {
        "seq": seq, "rating": rating, "scale": 4, "told_next": "yes", "latency_s": 1.5,
        "rapid": False, "closed": False, "boot": boot, "uptime_s": uptime, "wall": wall,
        "config_version": 0}
    base.update(kw)
    return Response(**base)


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = open_store(tmp_path / "deskpulse.db")
    yield c
    c.close()


def walls(conn: sqlite3.Connection, device: str = "desk-1") -> dict[int, Any]:
    return {r["seq"]: (r["wall"], r["time_source"]) for r in conn.responses_of(device)}


def test_the_database_is_wal_versioned_and_reopens(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "d.db"
    first = open_store(path)
    assert first.connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert first.connection.execute("PRAGMA busy_timeout").fetchone()[0] == schema.BUSY_TIMEOUT_MS
    assert first.schema_version() == schema.SCHEMA_VERSION
    first.close()
    again = open_store(path)
    assert again.schema_version() == schema.SCHEMA_VERSION
    again.connection.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    again.close()
    with pytest.raises(DeskPulseError, match="newer than this deskpulse"):
        open_store(path)


def test_not_a_database_is_a_domain_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DeskPulseError, match="the database is damaged: .*restore a backup"):
        open_store(path)


def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DESKPULSE_DB", str(tmp_path / "x.db"))
    assert base.default_db_path() == tmp_path / "x.db"
    monkeypatch.delenv("DESKPULSE_DB")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert base.default_db_path() == tmp_path / "data" / "deskpulse" / "deskpulse.db"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert base.default_db_path() == tmp_path / "home/.local/share/deskpulse/deskpulse.db"


def test_store_counts_new_and_duplicates(conn: sqlite3.Connection) -> None:
    first = [resp(1, 1, 10, 1795428010), resp(2, 1, 20, 1795428020)]
    assert conn.store_batch("desk-1", first, [], STATUS, "serial") == (2, 0)
    again = [*first, resp(3, 1, 30, 1795428030)]
    assert conn.store_batch("desk-1", again, [], STATUS, "serial") == (1, 2)
    assert [r["seq"] for r in conn.responses_of("desk-1")] == [1, 2, 3]
    # Another device may use the same numbers.
    assert conn.store_batch("desk-2", first, [], STATUS, "wifi") == (2, 0)
    record = conn.latest_sync("desk-1")
    assert record is not None
    assert (record.received, record.new, record.duplicates) == (3, 1, 2)
    assert record.status == STATUS


def test_a_store_is_all_or_nothing(conn: sqlite3.Connection) -> None:
    bad = [resp(1, 1, 10), resp(2, 1, 20, rating=5)]  # 5 of 4 breaks a CHECK constraint
    with pytest.raises(DeskPulseError, match="CHECK constraint failed"):
        conn.store_batch("desk-1", bad, [Anchor(1, 0, 1795428000, 1)], STATUS, "serial")
    assert conn.connection.execute("SELECT count(*) FROM responses").fetchone()[0] == 0
    assert conn.connection.execute("SELECT count(*) FROM anchors").fetchone()[0] == 0
    assert conn.connection.execute("SELECT count(*) FROM syncs").fetchone()[0] == 0
    assert conn.connection.execute("SELECT count(*) FROM devices").fetchone()[0] == 0


def test_times_resolve_from_the_latest_anchor_of_the_boot(conn: sqlite3.Connection) -> None:
    batch = [
        resp(1, 1, 100),  # boot 1: never anchored
        resp(2, 2, 100),  # boot 2: before its clock was set
        resp(3, 2, 250, 1795428150),  # boot 2: the device knew the time
        resp(4, 3, 50),  # boot 3: anchored only in a later sync
    ]
    anchors = [Anchor(2, 200, 1795428000, 1), Anchor(2, 300, 1795428111, 1)]
    assert conn.store_batch("desk-1", batch, anchors, STATUS, "serial") == (4, 0)
    assert walls(conn) == {
        1: (None, None),
        2: (1795428111 - 200, "anchor"),  # latest anchor of boot 2, not the first one
        # The device's stamp (150 s after the first anchor) is overruled by the latest
        # anchor of its boot, which shows its clock was 39 s fast; the stamp is kept as
        # device_wall.
        3: (1795428111 - 50, "anchor"),
        4: (None, None),
    }
    record = conn.latest_sync("desk-1")
    assert record is not None and record.time_unknown == 2
    assert conn.count_time_unknown("desk-1") == 2
    # A later sync brings boot 3's anchor and a new response: the earlier row is placed.
    later = [resp(5, 3, 400)]
    assert conn.store_batch("desk-1", later, [Anchor(3, 500, 1795500000, 1)], STATUS,
                          "serial") == (1, 0)
    got = walls(conn)
    assert got[4] == (1795500000 - 450, "anchor")
    assert got[5] == (1795500000 - 100, "anchor")
    assert got[1] == (None, None)
    assert conn.count_time_unknown("desk-1") == 1


def test_a_renumbered_device_is_refused_not_merged(conn: sqlite3.Connection) -> None:
    conn.store_batch("desk-1", [resp(1, 1, 10), resp(2, 1, 20)], [], STATUS, "serial")
    erased = [resp(1, 1, 10), resp(2, 1, 35, rating=1)]
    with pytest.raises(base.ConflictError, match="seq 2"):
        conn.store_batch("desk-1", erased, [], STATUS, "serial")
    assert [r["uptime_s"] for r in conn.responses_of("desk-1")] == [10, 20]


def test_devices_list_their_latest_health(conn: sqlite3.Connection) -> None:
    conn.store_batch("desk-1", [resp(1, 1, 10)], [], STATUS, "serial", now=1795428000)
    later = {**STATUS, "log": {**STATUS["log"], "fs_fill": 0.5, "dropped": 7}}
    conn.store_batch("desk-1", [resp(2, 1, 20)], [], later, "serial", now=1795429000)
    (d,) = conn.devices()
    assert (d.device_id, d.syncs, d.responses, d.last_seq, d.last_sync) == (
        "desk-1", 2, 2, 2, 1795429000)
    assert (d.fill, d.dropped, d.corrupt, d.boot, d.reset_cause, d.clock_known) == (
        0.5, 7, 1, 3, "power_on", True)
    assert d.board == "esp32-devkitc-ssd1680" and d.time_unknown == 2


# -- a stand-in kiosk on a real pty ------------------------------------------------------


@dataclass
class StandIn:
    """A kiosk that speaks the protocol from Python, with faults on request."""

    records: list[Response]
    device_id: str = "desk-1"
    proto: int = 1
    per_batch: int = 40
    anchors: list[list[int]] = field(default_factory=list)
    mute: dict[str, int] = field(default_factory=dict)  # verb: answers to swallow
    noise: bytes = b""  # printed before every answer
    acked: int = 0
    boot: int = 5
    uptime: int = 1000
    config: bytes | None = None
    reads_config: bool = True  # False: an app from before CONFIG READ
    mac_id: str = ""  # the id it takes from a config naming none
    piece: int = 4092  # config bytes per R frame
    seen: list[str] = field(default_factory=list)
    _upload: bytearray = field(default_factory=bytearray)
    _expect: tuple[int, int] = (0, 0)

    def status(self) -> dict[str, Any]:
        unacked = [r for r in self.records if r.seq > self.acked]
        return {**STATUS, "device_id": self.device_id, "boot": self.boot,
                "log": {**STATUS["log"], "unacked": len(unacked), "stored": len(unacked)}}

    def answer(self, line: str) -> tuple[str, int, dict[str, Any] | bytes] | None:
        try:
            return self._answer(line)
        except (ValueError, IndexError):
            self.seen.append("?")
            return "E", 0, {"error": "bad line", "line": line[:40]}

    def _answer(self, line: str) -> tuple[str, int, dict[str, Any] | bytes] | None:
        tag_text, _, rest = line.partition(" ")
        verb, *args = rest.split(" ")
        tag = int(tag_text)
        self.seen.append(verb if verb != "CONFIG" else f"CONFIG {args[0]}")
        pending = [r for r in self.records if r.seq > self.acked]
        if verb == "HELLO":
            first = pending[0].seq if pending else self.next_seq()
            return "H", tag, {"proto": self.proto, "device_id": self.device_id,
                              "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0",
                              "status": self.status(), "anchors": self.anchors,
                              "first_seq": first, "next_seq": self.next_seq()}
        if verb == "TIME":
            anchor = [self.boot, self.uptime, int(args[0]), 1]
            self.anchors.append(anchor)
            return "T", tag, {"anchor": anchor}
        if verb == "PULL":
            chosen = [r for r in pending if r.seq >= int(args[0])]
            more = len(chosen) > self.per_batch
            return "B", tag, encode_batch(chosen[:self.per_batch], more)
        if verb == "ACK":
            self.acked = max(self.acked, int(args[0]))
            return "A", tag, {"acked": self.acked}
        if verb == "CONFIG" and args[0] == "BEGIN":
            self._upload = bytearray()
            self._expect = (int(args[1]), int(args[2], 16))
            return "C", tag, {"ok": True, "received": 0}
        if verb == "CONFIG" and args[0] == "DATA":
            self._upload += base64.b64decode(args[1])
            return "C", tag, {"ok": True, "received": len(self._upload)}
        if verb == "CONFIG" and args[0] == "READ" and self.reads_config:
            data = self.config or b""
            at = int(args[1])
            head = len(data).to_bytes(2, "little") + at.to_bytes(2, "little")
            return "R", tag, head + data[at:at + self.piece]
        if verb == "CONFIG" and args[0] == "END":
            if (len(self._upload), binascii.crc32(self._upload)) != self._expect:
                return "C", tag, {"ok": False, "problems": ["length or crc mismatch"]}
            self.config = bytes(self._upload)
            self.device_id = json.loads(self.config).get("device_id") or self.mac_id
            return "C", tag, {"ok": True}
        return "E", tag, {"error": "unknown command", "line": line[:40]}

    def next_seq(self) -> int:
        return (self.records[-1].seq + 1) if self.records else 1


@contextlib.contextmanager
def stand_in(kiosk: StandIn) -> Iterator[str]:
    """Serve kiosk on a pty; yield the path the host opens."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop_r, stop_w = os.pipe()

    def serve() -> None:
        pending = b""
        while True:
            ready, _, _ = select.select([master, stop_r], [], [])
            if stop_r in ready:
                return
            pending += os.read(master, 4096)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                reply = kiosk.answer(line.decode("ascii").rstrip("\r"))
                if reply is None:
                    continue
                kind, tag, body = reply
                verb = kiosk.seen[-1]
                if kiosk.mute.get(verb, 0) > 0:
                    kiosk.mute[verb] -= 1
                    continue
                payload = body if isinstance(body, bytes) else json.dumps(body).encode()
                os.write(master, kiosk.noise + encode_frame(kind, tag, payload))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield path
    finally:
        os.write(stop_w, b"x")
        thread.join(PATIENCE)
        for fd in (master, slave, stop_r, stop_w):
            os.close(fd)


def test_a_sync_stores_everything_sets_the_clock_and_acks(tmp_path: Path) -> None:
    records = day_of_responses(130)
    kiosk = StandIn(records, anchors=[[1, 0, 1795400000, 1]])
    seen: list[tuple[int, int]] = []
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", progress=lambda a, b: seen.append((a, b)),
                       **FAST)
    assert (summary.device_id, summary.received, summary.new, summary.duplicates) == (
        "desk-1", 130, 130, 0)
    assert (summary.first_seq, summary.last_seq, summary.acked) == (1, 130, 130)
    assert summary.batches == 4 and seen[-1] == (130, 130)
    assert kiosk.acked == 130
    assert kiosk.seen == ["HELLO", "TIME", "PULL", "PULL", "PULL", "PULL", "ACK"]
    assert (summary.dropped, summary.corrupt, summary.fill) == (2, 1, 0.031)
    with open_store(tmp_path / "d.db") as conn:
        stored = conn.responses_of("desk-1")
        assert [r["seq"] for r in stored] == [r.seq for r in records]
        assert stored[5]["told_next"] == records[5].told_next
        anchors = conn.connection.execute("SELECT boot, wall, source FROM anchors").fetchall()
        assert (1, 1795400000, 1) in anchors and len(anchors) == 2
    # Nothing left: the next sync pulls nothing and acks nothing.
    with stand_in(kiosk) as path:
        again = sync(path, tmp_path / "d.db", **FAST)
    assert (again.received, again.new, again.acked) == (0, 0, None)


def test_noise_and_stale_frames_are_ignored(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(20), noise=b"[screen] thanks\r\n\xd5\xaa" +
                    encode_frame("B", 0, encode_batch(day_of_responses(3, 900))))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", **FAST)
    assert (summary.new, summary.last_seq) == (20, 20)


@pytest.mark.slow
def test_a_lost_answer_is_asked_again_and_a_lost_ack_costs_only_duplicates(
    tmp_path: Path,
) -> None:
    kiosk = StandIn(day_of_responses(50), mute={"PULL": 1, "ACK": 99})
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", **FAST)
    assert summary.new == 50 and summary.acked is None and summary.retries >= 1
    assert "did not confirm ACK 50" in summary.warnings[0]
    kiosk.acked = 0  # the device never heard the ACK either
    kiosk.mute = {}
    with stand_in(kiosk) as path:
        again = sync(path, tmp_path / "d.db", **FAST)
    assert (again.new, again.duplicates, again.acked) == (0, 50, 50)


@pytest.mark.slow
def test_a_lossy_line_costs_only_retries(tmp_path: Path) -> None:
    records = day_of_responses(600)
    kiosk = StandIn(records)
    offsets = {"to_host": 0, "to_device": 0}

    def tamper(direction: str, data: bytes) -> bytes:
        start = offsets[direction]
        offsets[direction] += len(data)
        out = bytearray(data)
        if direction == "to_device":
            if start <= 60 < start + len(out):  # a damaged command line: E, then a retry
                out[60 - start] = ord("?")
            return bytes(out)
        for at in (500, 1200, 2000, 2600):
            if start <= at < start + len(out):
                if at % 1000:
                    out[at - start] ^= 0x08
                else:
                    del out[at - start:at - start + 2]
        return bytes(out)

    with stand_in(kiosk) as device, PtyRelay(device, tamper=tamper) as relay:
        summary = sync(relay.path, tmp_path / "d.db", **FAST)
    assert (summary.new, summary.acked) == (600, 600) and summary.retries >= 3
    with open_store(tmp_path / "d.db") as conn:
        assert [r["seq"] for r in conn.responses_of("desk-1")] == list(range(1, 601))


def test_a_killed_host_stores_nothing_and_the_next_sync_everything(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(600), per_batch=20)
    victim: list[subprocess.Popen[bytes]] = []
    received = [0]

    def tamper(direction: str, data: bytes) -> bytes:
        if direction == "to_host" and victim:
            received[0] += len(data)
            if received[0] > 1000:
                victim[0].kill()
                return b""
        return data

    code = "import sys\nfrom deskpulse.device.sync import sync\nsync(sys.argv[1], sys.argv[2])\n"
    with stand_in(kiosk) as device, PtyRelay(device, tamper=tamper) as relay:
        victim.append(subprocess.Popen([sys.executable, "-c", code, relay.path,
                                        str(tmp_path / "d.db")]))
        assert victim[0].wait(PATIENCE) == -signal.SIGKILL
        relay.tamper = None
        assert "PULL" in kiosk.seen and "ACK" not in kiosk.seen
        summary = sync(relay.path, tmp_path / "d.db", **FAST)
    assert (summary.new, summary.duplicates, kiosk.acked) == (600, 0, 600)


def test_a_newer_device_is_told_apart(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(5), proto=2)
    with stand_in(kiosk) as path, pytest.raises(DeskPulseError) as err:
        sync(path, tmp_path / "d.db", **FAST)
    assert str(err.value).startswith("this kiosk speaks protocol 2; upgrade deskpulse")
    assert kiosk.seen == ["HELLO"] and kiosk.acked == 0


def test_silence_is_a_clear_error(tmp_path: Path) -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    try:
        with pytest.raises(SyncError, match="no DeskPulse kiosk answers"):
            sync(os.ttyname(slave), tmp_path / "d.db", timeout=0.2, attempts=2)
    finally:
        os.close(master)
        os.close(slave)


def test_a_device_without_an_id_needs_a_config(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(5), device_id="")
    with stand_in(kiosk) as path, pytest.raises(DeskPulseError, match="no device_id"):
        sync(path, tmp_path / "d.db", **FAST)
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"device_id": "front-1", "version": 3, "scale": 4,
                                  "texts": {"en": {"question": "How did we do?" * 5}}}))
    kiosk.seen.clear()
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=config, **FAST)
    assert (summary.device_id, summary.new, summary.config_version) == ("front-1", 5, 3)
    assert kiosk.seen[:3] == ["HELLO", "CONFIG READ", "CONFIG BEGIN"]
    assert kiosk.config is not None and json.loads(kiosk.config)["version"] == 3
    assert kiosk.seen.count("CONFIG DATA") == -(-len(kiosk.config) // 96) > 1


def test_a_config_goes_after_the_data_of_a_device_with_an_id(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(5), mute={"CONFIG DATA": 1})
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"device_id": "desk-1", "version": 4}))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=config, **FAST)
    assert summary.config_version == 4
    assert kiosk.seen[:5] == ["HELLO", "CONFIG READ", "TIME", "PULL", "ACK"]
    # The lost DATA answer made the chunk arrive twice: the upload restarted from BEGIN.
    assert kiosk.seen.count("CONFIG BEGIN") == 2
    assert kiosk.config is not None and json.loads(kiosk.config) == {
        "device_id": "desk-1", "version": 4}


def test_a_bad_config_never_reaches_the_port(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"scale": 9, "colour": "red"}))
    with pytest.raises(DeskPulseError) as err:
        sync(str(tmp_path / "no-such-port"), tmp_path / "d.db", config_file=config)
    assert "scale must be between 3 and 5 (got 9)" in str(err.value)
    assert "unknown key 'colour'" in str(err.value)
    config.write_text("{not json")
    with pytest.raises(DeskPulseError, match="not valid JSON"):
        sync(str(tmp_path / "no-such-port"), tmp_path / "d.db", config_file=config)


def test_the_port_opens_with_dtr_and_rts_inactive(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        os.write(master, b"stale boot chatter")
        port = open_port(os.ttyname(slave))
        try:
            assert port.is_open and port.dtr is False and port.rts is False
            assert port.baudrate == 115200
            assert port.read(100) == b""  # flushed
        finally:
            port.close()
    finally:
        os.close(master)
        os.close(slave)
    with pytest.raises(DeskPulseError, match="no serial port"):
        open_port(str(tmp_path / "ttyUSB9"))


def test_a_port_that_goes_away_while_it_is_set_up_is_a_sentence(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """pyserial lets the termios error through (EIO: a board resetting as the port opens);
    await_kiosk retries only on DeskPulseError, so it must become one."""
    import termios

    def gone(*args: object) -> None:
        raise termios.error(errno.EIO, "Input/output error")

    master, slave = os.openpty()
    try:
        monkeypatch.setattr(termios, "tcsetattr", gone)
        with pytest.raises(DeskPulseError, match=r"cannot open .*: Input/output error$"):
            open_port(os.ttyname(slave))
    finally:
        os.close(master)
        os.close(slave)


def fake_port(device: str, vid: int | None, pid: int | None) -> SimpleNamespace:
    return SimpleNamespace(device=device, vid=vid, pid=pid, description=f"USB {device}",
                           serial_number="0001")


def test_find_ports_by_usb_id(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = [fake_port("/dev/ttyS0", None, None), fake_port("/dev/ttyUSB1", 0x1A86, 0x7523),
             fake_port("/dev/ttyACM0", 0x303A, 0x1001), fake_port("/dev/ttyUSB0", 0x10C4, 0xEA60),
             fake_port("/dev/ttyUSB7", 0x0403, 0x6010)]  # an FTDI part no ESP32 board uses
    monkeypatch.setattr(ports_mod.list_ports, "comports", lambda: ports)
    found = find_ports()
    assert [(p.device, p.bridge) for p in found] == [
        ("/dev/ttyACM0", "Espressif USB serial/JTAG"), ("/dev/ttyUSB0", "CP210x"),
        ("/dev/ttyUSB1", "CH340")]
    with pytest.raises(DeskPulseError) as err:
        resolve_port("auto")
    assert "3 ESP32 USB ports found, pick one with --port" in str(err.value)
    assert "/dev/ttyUSB1 (CH340" in str(err.value)
    monkeypatch.setattr(ports_mod.list_ports, "comports", lambda: ports[3:])
    assert resolve_port("auto") == "/dev/ttyUSB0"
    assert resolve_port("/dev/ttyS3") == "/dev/ttyS3"
    monkeypatch.setattr(ports_mod.list_ports, "comports", lambda: ports[:1])
    with pytest.raises(DeskPulseError, match="dialout"):
        resolve_port("auto")


# -- the commands -------------------------------------------------------------------------


def deskpulse(argv: list[str]) -> int:
    """`deskpulse ...` in-process."""
    return cli.main(argv)


def test_sync_and_devices_commands(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = [replace(r, wall=None) if r.seq <= 2 else r for r in day_of_responses(12)]
    kiosk = StandIn(records)
    dbfile = str(tmp_path / "d.db")
    with stand_in(kiosk) as path:
        assert deskpulse(["sync", "--port", path, "--db", dbfile]) == 0
    out = capsys.readouterr().out
    assert f"synced desk-1 (esp32-devkitc-ssd1680, firmware 0.1.0) on {path}" in out
    assert "new responses: 12; duplicates ignored: 0" in out
    assert "drops reported by the device: 2" in out
    assert "flash 3.1% full, 1 corrupt records" in out
    # seq 1 and 2 were before any clock in boot 1, and the device has no anchor for boot 1.
    assert "time unknown: 2 of the new (2 in all for this kiosk)" in out
    assert deskpulse(["devices", "--db", dbfile]) == 0
    out = capsys.readouterr().out
    assert out.startswith("desk-1\n  last sync ")
    assert "over serial (1 in all); 12 responses stored, 2 with time unknown" in out
    assert "flash 3.1% full, 2 dropped, 1 corrupt, boot 5 (power_on), 0 crashes, clock set" in out


def test_command_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ports_mod.list_ports, "comports", list)
    assert deskpulse(["sync", "--port", "auto", "--db", str(tmp_path / "d.db")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("deskpulse: no ESP32 USB serial port found") and "dialout" in err


def test_help_says_where_the_database_lives(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    monkeypatch.delenv("DESKPULSE_DB", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    with pytest.raises(SystemExit):
        deskpulse(["sync", "--help"])
    out = "".join(capsys.readouterr().out.split())  # undo the help's line wrapping
    assert "$DESKPULSE_DB" in out and str(tmp_path / "deskpulse" / "deskpulse.db") in out


def test_devices_on_an_empty_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    open_store(tmp_path / "d.db").close()
    assert deskpulse(["devices", "--db", str(tmp_path / "d.db")]) == 0
    assert "no kiosks in the database yet" in capsys.readouterr().out



# -- a config merged into the kiosk's own ---------------------------------------------------

GERMAN = {"device_id": "desk-1", "version": 3, "scale": 3, "language": "de",
          "texts": {"de": {"question": "Wie war Ihr Besuch?", "yes": "Ja", "no": "Nein"}},
          "opening_hours": {"mon": ["08:00-18:00"], "sat": ["09:00-13:00"]},
          "sync": {"wifi_ssid": "Alt", "wifi_password": "old-secret"}}


def compact(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def test_a_config_is_merged_into_the_kiosk_s_own_and_its_changes_listed(tmp_path: Path) -> None:
    """The README's WiFi step: a file with the WiFi and a key leaves a German 3-face kiosk
    with opening hours German, 3-face and open when it was."""
    kiosk = StandIn(day_of_responses(4), config=compact(GERMAN))
    wifi = tmp_path / "wifi.json"
    wifi.write_text(json.dumps({"device_id": "desk-1", "version": 4, "sync": {
        "wifi_ssid": "Filiale", "wifi_password": "new-secret", "device_key": "ab" * 32,
        "server_url": "http://192.168.1.20:8080"}, "texts": {"de": {"thanks": "Danke!"}}}))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=wifi, **FAST)
    assert summary.new == 4 and summary.config_version == 4
    assert kiosk.config is not None
    sent = json.loads(kiosk.config)
    assert sent == {**GERMAN, "version": 4, "texts": {"de": {**GERMAN["texts"]["de"],
                                                              "thanks": "Danke!"}},
                    "sync": {"wifi_ssid": "Filiale", "wifi_password": "new-secret",
                             "device_key": "ab" * 32,
                             "server_url": "http://192.168.1.20:8080"}}
    assert summary.config_changes == [
        'sync.device_key: "" -> ***',
        'sync.server_url: "" -> "http://192.168.1.20:8080"',
        "sync.wifi_password: *** -> *** (changed)",
        'sync.wifi_ssid: "Alt" -> "Filiale"',
        'texts.de.thanks: "Thank you!" -> "Danke!"',
        "version: 3 -> 4",
    ]
    assert not any("secret" in line or "abab" in line for line in summary.config_changes)
    assert kiosk.seen[:3] == ["HELLO", "CONFIG READ", "TIME"]


def test_a_config_that_changes_nothing_is_not_sent(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    kiosk = StandIn(day_of_responses(3), config=compact(GERMAN))
    same = tmp_path / "same.json"
    # Values the kiosk has, and a default it takes anyway: no change.
    same.write_text(json.dumps({"scale": 3, "thank_you_s": 3, "texts": {"de": {"no": "Nein"}}}))
    with stand_in(kiosk) as path:
        assert deskpulse(["sync", "--port", path, "--db", str(tmp_path / "d.db"),
                          "--config", str(same)]) == 0
    assert "config: nothing changes; nothing was sent" in capsys.readouterr().out
    assert "CONFIG BEGIN" not in kiosk.seen and kiosk.acked == 3
    assert kiosk.config == compact(GERMAN)


def test_replace_installs_the_file_whole_and_lists_what_goes_back_to_its_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kiosk = StandIn(day_of_responses(2), config=compact(GERMAN))
    whole = tmp_path / "whole.json"
    whole.write_text(json.dumps({"device_id": "desk-1", "version": 5}))
    with stand_in(kiosk) as path:
        assert deskpulse(["sync", "--port", path, "--db", str(tmp_path / "d.db"),
                          "--config", str(whole), "--replace"]) == 0
    out = capsys.readouterr().out
    assert json.loads(kiosk.config or b"") == {"device_id": "desk-1", "version": 5}
    for line in ('  language: "de" -> "en"', "  scale: 3 -> 4",
                 '  opening_hours: {"mon": ["08:00-18:00"], "sat": ["09:00-13:00"]} -> null',
                 '  sync.wifi_password: *** -> ""', "  version: 3 -> 5",
                 '  texts.de.question: "Wie war Ihr Besuch?" -> (none)'):
        assert line in out, out
    assert "old-secret" not in out


def test_a_merge_the_firmware_refuses_changes_and_pulls_nothing(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(3), config=compact(GERMAN))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"language": "fr"}))  # the kiosk has no French texts
    with stand_in(kiosk) as path, pytest.raises(DeskPulseError) as err:
        sync(path, tmp_path / "d.db", config_file=bad, **FAST)
    assert str(err.value) == (f"the kiosk's config with {bad} merged in rejected: "
                              "language 'fr' has no texts")
    assert kiosk.seen == ["HELLO", "CONFIG READ"] and kiosk.acked == 0


def test_what_a_file_sets_is_checked_before_any_kiosk_is_asked(tmp_path: Path) -> None:
    overlay = tmp_path / "o.json"
    overlay.write_text(json.dumps({"language": "fr", "sync": {"push_interval_s": 1}}))
    with pytest.raises(DeskPulseError) as err:
        sync(str(tmp_path / "no-such-port"), tmp_path / "d.db", config_file=overlay)
    # The language may have texts on the kiosk: only the interval is wrong here.
    assert str(err.value) == (f"config {overlay} rejected: sync.push_interval_s must be "
                              "between 5 and 86400 (got 1)")


def test_an_app_that_cannot_send_its_config_back_needs_replace(tmp_path: Path) -> None:
    kiosk = StandIn(day_of_responses(3), config=compact(GERMAN), reads_config=False)
    file = tmp_path / "f.json"
    file.write_text(json.dumps({"device_id": "desk-1", "version": 7}))
    with stand_in(kiosk) as path, pytest.raises(DeskPulseError, match="--replace"):
        sync(path, tmp_path / "d.db", config_file=file, **FAST)
    assert "CONFIG BEGIN" not in kiosk.seen and kiosk.acked == 0
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=file, replace=True, **FAST)
    assert summary.config_version == 7 and "could not be read" in summary.warnings[0]


def test_a_config_over_one_frame_is_read_in_pieces(tmp_path: Path) -> None:
    big = {**GERMAN, "texts": {f"l{i}": {"question": "q" * 100} for i in range(40)}
           | GERMAN["texts"]}
    kiosk = StandIn(day_of_responses(1), config=compact(big), piece=1000)
    assert len(kiosk.config or b"") > 4000
    file = tmp_path / "f.json"
    file.write_text(json.dumps({"scale": 5}))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=file, **FAST)
    assert kiosk.seen.count("CONFIG READ") == -(-len(compact(big)) // 1000) > 4
    assert summary.config_changes == ["scale: 3 -> 5"]
    assert json.loads(kiosk.config or b"") == {**big, "scale": 5}


def test_naming_a_bare_kiosk_after_its_mac_is_no_rename_but_another_name_is(
        tmp_path: Path) -> None:
    """A kiosk with no id in its config goes by its MAC id; a file naming no id keeps it
    (sent after the pull, no settling), one naming another id waits until the kiosk has
    confirmed every response."""
    kiosk = StandIn(day_of_responses(3), device_id="kiosk-240ac4123456",
                    mac_id="kiosk-240ac4123456", config=compact({"version": 1}))
    file = tmp_path / "f.json"
    file.write_text(json.dumps({"scale": 5}))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=file, **FAST)
    assert summary.device_id == "kiosk-240ac4123456" and summary.new == 3
    assert kiosk.seen.count("HELLO") == 2  # the first, and the one after the config
    kiosk.records += day_of_responses(2, 4)
    kiosk.seen.clear()
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"device_id": "front-1"}))
    with stand_in(kiosk) as path:
        summary = sync(path, tmp_path / "d.db", config_file=named, **FAST)
    assert kiosk.device_id == "front-1" and summary.config_changes == [
        'device_id: "" -> "front-1"']
    assert kiosk.seen.index("ACK") < kiosk.seen.index("CONFIG BEGIN")
    assert kiosk.seen.count("HELLO") == 3  # the settling HELLO before the rename
    with open_store(tmp_path / "d.db") as conn:
        assert [r["seq"] for r in conn.responses_of("kiosk-240ac4123456")] == [1, 2, 3, 4, 5]
        assert conn.responses_of("front-1") == []


def test_config_show_prints_the_kiosk_s_config_with_its_secrets_hidden(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = {**GERMAN, "sync": {**GERMAN["sync"], "device_key": "cd" * 32}}
    kiosk = StandIn(day_of_responses(2), config=compact(config), piece=100)
    with stand_in(kiosk) as path:
        assert deskpulse(["config", "show", "--port", path]) == 0
    captured = capsys.readouterr()
    shown = json.loads(captured.out)
    assert shown == {**GERMAN, "sync": {"wifi_ssid": "Alt", "wifi_password": "***",
                                        "device_key": "***"}}
    assert "old-secret" not in captured.out + captured.err and "cdcd" not in captured.out
    assert set(kiosk.seen) == {"HELLO", "CONFIG READ"} and kiosk.acked == 0
    bare = StandIn([], device_id="kiosk-240ac4123456")
    with stand_in(bare) as path:
        assert deskpulse(["config", "show", "--port", path]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out) == {}
    assert "kiosk-240ac4123456 has no config file: it runs on its defaults" in captured.err
    old = StandIn([], reads_config=False)
    with stand_in(old) as path:
        assert deskpulse(["config", "show", "--port", path]) == 2
    assert "predates CONFIG READ" in capsys.readouterr().err


def test_a_kiosk_without_a_config_file_gets_one_even_when_no_setting_changes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kiosk = StandIn(day_of_responses(1), device_id="kiosk-240ac4123456",
                    mac_id="kiosk-240ac4123456")  # no config file: it runs on its defaults
    file = tmp_path / "f.json"
    file.write_text(json.dumps({"scale": 4}))
    with stand_in(kiosk) as path:
        assert deskpulse(["sync", "--port", path, "--db", str(tmp_path / "d.db"),
                          "--config", str(file)]) == 0
    assert ("config: no setting changes (the kiosk had no config file: now it has one)"
            in capsys.readouterr().out)
    assert json.loads(kiosk.config or b"") == {"scale": 4}
    assert kiosk.device_id == "kiosk-240ac4123456"
