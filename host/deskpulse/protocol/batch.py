"""The compact batch encoding of responses (the `B` frame payload, docs/protocol.md).

    varint count | varint first seq | varint boot | varint uptime_s | zigzag varint wall base
    | more (1 byte) | records...

Each record is one byte (rating, scale, told, X) plus, when X is set, an extension byte
announcing the fields that changed (sequence gap, new boot, flags, config version, wall
base, clock state), then the uptime delta and the latency. The serial and the WiFi paths
share it, and so do the benchmarks.

The decoder takes bytes from a cable or a network. It checks every bound before it acts:
a count is never trusted beyond what the payload can hold, varints have a maximum length,
and every field must be in range, so a malformed batch raises `BatchError` and never loops
or allocates without bound.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from deskpulse.errors import DeskPulseError

TellNext = Literal["yes", "no", "no_answer"]
TOLD_NAMES: tuple[TellNext, TellNext, TellNext] = ("no_answer", "yes", "no")
_TOLD_CODES: dict[str, int] = {name: code for code, name in enumerate(TOLD_NAMES)}

MAX_FIELD = 0xFFFF_FFFF
"""Upper bound of every unsigned field: the device keeps them in 32 bits."""
_MAX_WALL_BASE = 1 << 33
_MAX_VARINT_BYTES = 5  # 35 bits: enough for any 32-bit field and any zigzag wall change
_MIN_RECORD_BYTES = 3  # b1, uptime delta, latency

_X = 0x80
EXT_GAP = 0x01
EXT_BOOT = 0x02
EXT_FLAGS = 0x04
EXT_CONFIG = 0x08
EXT_WALL_BASE = 0x10
EXT_CLOCK = 0x20
_EXT_KNOWN_BITS = 0x3F
FLAG_RAPID = 1
FLAG_CLOSED = 2


class BatchError(DeskPulseError):
    """A batch that does not follow the encoding; nothing of it may be stored."""


@dataclass(frozen=True, slots=True)
class Response:
    """One customer's answers, as the device recorded them."""

    seq: int
    rating: int  # 1 = worst face
    scale: int  # 3, 4 or 5 faces
    told_next: TellNext
    latency_s: float  # from the face tap to the answer (or the timeout), 0.1 s steps
    rapid: bool  # came soon after the previous response
    closed: bool  # outside opening hours
    boot: int
    uptime_s: int
    wall: int | None  # unix seconds (UTC) when the device's clock was known, else None
    config_version: int

    @property
    def latency_ds(self) -> int:
        return round(self.latency_s * 10)


# The wall times a kiosk's clock accepts from any source: mirrors of
# firmware/kiosk/clock.py's EARLIEST_WALL and LATEST_WALL (2000-01-01 and 2100-01-01 UTC);
# tests compare them. A host whose own clock is outside them sets no kiosk's time.
EARLIEST_WALL = 946684800
LATEST_WALL = 4102444800


def clock_is_plausible(wall: float) -> bool:
    """Whether a kiosk would take this wall time (EARLIEST_WALL..LATEST_WALL)."""
    return EARLIEST_WALL <= wall <= LATEST_WALL


RECEIPT_SOURCE = 4
"""The source of an anchor `deskpulse serve` adds when a push arrives (its own clock at
receipt). The device's own anchors (1 host, 2 NTP, 3 RTC chip, 5 kept across a reset by
the ESP32's RTC) say what its clock was set to; a receipt anchor places a boot only when
the device sent none for it (docs/time.md)."""


class Anchor(NamedTuple):
    """A moment when the device's clock was set: `wall` was the time at `uptime_s` of
    boot `boot`. Sources: 1 host, 2 NTP, 3 RTC chip, 4 the server's receipt, 5 kept
    across a reset."""

    boot: int
    uptime_s: int
    wall: int
    source: int


@dataclass(frozen=True, slots=True)
class Batch:
    responses: list[Response]
    more: bool  # the device holds more records after this batch


def parse_anchor(value: Any) -> Anchor:
    """An anchor from its JSON form [boot, uptime_s, wall, source]."""
    if (
        not isinstance(value, list | tuple)
        or len(value) != 4
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise BatchError(f"bad time anchor {str(value)[:80]}")
    boot, uptime_s, wall, source = value
    if not (0 <= boot <= MAX_FIELD and 0 <= uptime_s <= MAX_FIELD and 0 < wall <= MAX_FIELD
            and 0 <= source <= 255):
        raise BatchError(f"time anchor out of range: {list(value)}")
    return Anchor(boot, uptime_s, wall, source)


# -- decoding -----------------------------------------------------------------------------


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise BatchError(f"batch ends early at byte {self.pos}")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES):
            b = self.byte()
            value |= (b & 0x7F) << (7 * i)
            if b < 0x80:
                return value
        raise BatchError(f"varint longer than {_MAX_VARINT_BYTES} bytes at {self.pos}")

    def field(self, what: str, limit: int = MAX_FIELD) -> int:
        value = self.varint()
        if value > limit:
            raise BatchError(f"{what} {value} out of range")
        return value

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def left(self) -> int:
        return len(self.data) - self.pos


def _bounded(value: int, what: str) -> int:
    if not 0 <= value <= MAX_FIELD:
        raise BatchError(f"{what} {value} out of range")
    return value


def decode_batch(payload: bytes) -> Batch:
    """Decode a `B` payload; raises BatchError unless it is entirely well formed."""
    rows, more = decode_rows(payload)
    return Batch([Response(*row) for row in rows], more)


ResponseRow = tuple[int, int, int, TellNext, float, bool, bool, int, int, "int | None", int]
"""A Response's fields as a plain tuple, in the Response's order."""


def _byte_at(data: bytes, pos: int) -> tuple[int, int]:
    if pos >= len(data):
        raise BatchError(f"batch ends early at byte {pos}")
    return data[pos], pos + 1


def _varint_at(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """The unsigned field at `pos` (at most MAX_FIELD) and the position after it."""
    value = 0
    for i in range(_MAX_VARINT_BYTES):
        b, pos = _byte_at(data, pos)
        value |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            if value > MAX_FIELD:
                raise BatchError(f"{what} {value} out of range")
            return value, pos
    raise BatchError(f"varint longer than {_MAX_VARINT_BYTES} bytes at {pos}")


def decode_rows(payload: bytes) -> tuple[list[ResponseRow], bool]:
    """decode_batch's records as ResponseRows, and its `more` flag. The server takes
    these: building a Response costs several times a tuple, and a push carries 50."""
    r = _Reader(bytes(payload))
    count = r.varint()
    first_seq = r.field("first seq")
    boot = r.field("boot")
    uptime = r.field("uptime")
    wall_base = r.zigzag()
    more_byte = r.byte()
    if more_byte > 1:
        raise BatchError(f"more flag {more_byte} is neither 0 nor 1")
    if count > r.left() // _MIN_RECORD_BYTES:
        raise BatchError(f"batch claims {count} records but holds {r.left()} bytes")
    if count and first_seq < 1:
        raise BatchError("sequence numbers start at 1")
    data, pos, end = r.data, r.pos, len(r.data)
    known = wall_base != 0
    seq = first_seq - 1
    rapid = closed = False
    config_version = 0
    out: list[ResponseRow] = []
    for index in range(count):
        # Read in place, not through _Reader's methods: this loop is most of a push's
        # decoding, and a usual record is three bytes without an extension.
        if pos >= end:
            raise BatchError(f"batch ends early at byte {pos}")
        b1 = data[pos]
        pos += 1
        rating = b1 & 7
        scale_code = (b1 >> 3) & 3
        told = (b1 >> 5) & 3
        if scale_code == 3 or told == 3:
            raise BatchError(f"record {index}: bad scale or told code (byte {b1:#04x})")
        scale = scale_code + 3
        if not 1 <= rating <= scale:
            raise BatchError(f"record {index}: rating {rating} outside 1..{scale}")
        ext = 0
        if b1 & _X:
            ext, pos = _byte_at(data, pos)
            if ext & ~_EXT_KNOWN_BITS:
                raise BatchError(f"record {index}: unknown extension bits {ext:#04x}")
        if ext & EXT_GAP:
            gap, pos = _varint_at(data, pos, "sequence gap")
            seq = _bounded(seq + 2 + gap, "sequence number")
        else:
            seq = _bounded(seq + 1, "sequence number")
        if ext:
            if ext & EXT_BOOT:
                delta, pos = _varint_at(data, pos, "boot delta")
                boot = _bounded(boot + delta, "boot")
                uptime = 0
            if ext & EXT_FLAGS:
                flags, pos = _byte_at(data, pos)
                if flags & ~(FLAG_RAPID | FLAG_CLOSED):
                    raise BatchError(f"record {index}: unknown flags {flags:#04x}")
                rapid, closed = bool(flags & FLAG_RAPID), bool(flags & FLAG_CLOSED)
            if ext & EXT_CONFIG:
                config_version, pos = _varint_at(data, pos, "config version")
            if ext & EXT_WALL_BASE:
                r.pos = pos
                wall_base += r.zigzag()
                pos = r.pos
                if abs(wall_base) > _MAX_WALL_BASE:
                    raise BatchError(f"record {index}: wall base {wall_base} out of range")
            if ext & EXT_CLOCK:
                known = not known
        delta, pos = _varint_at(data, pos, "uptime delta")
        uptime = _bounded(uptime + delta, "uptime")
        latency_ds, pos = _varint_at(data, pos, "latency")
        wall: int | None = None
        if known:
            wall = wall_base + uptime
            if not 0 < wall <= MAX_FIELD:
                raise BatchError(f"record {index}: wall time {wall} out of range")
        out.append((seq, rating, scale, TOLD_NAMES[told], latency_ds / 10, rapid, closed,
                    boot, uptime, wall, config_version))
    if pos < end:
        raise BatchError(f"{end - pos} bytes after the last record")
    return out, bool(more_byte)


# -- encoding -----------------------------------------------------------------------------


def _put_varint(out: bytearray, value: int) -> None:
    if value < 0:
        raise BatchError("varint must be >= 0")
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _put_zigzag(out: bytearray, value: int) -> None:
    _put_varint(out, value * 2 if value >= 0 else -value * 2 - 1)


def _check_response(r: Response) -> None:
    if not 3 <= r.scale <= 5 or not 1 <= r.rating <= r.scale:
        raise BatchError(f"seq {r.seq}: rating {r.rating} of {r.scale} cannot be encoded")
    if r.told_next not in _TOLD_CODES:
        raise BatchError(f"seq {r.seq}: told_next {r.told_next!r}")
    if not math.isfinite(r.latency_s) or not 0 <= r.latency_ds <= MAX_FIELD:
        raise BatchError(f"seq {r.seq}: latency {r.latency_s}")
    for what, value in (("seq", r.seq), ("boot", r.boot), ("uptime", r.uptime_s),
                        ("config version", r.config_version)):
        if not 0 <= value <= MAX_FIELD:
            raise BatchError(f"seq {r.seq}: {what} {value} out of range")
    if r.seq < 1:
        raise BatchError("sequence numbers start at 1")
    if r.wall is not None and not 0 < r.wall <= MAX_FIELD:
        raise BatchError(f"seq {r.seq}: wall {r.wall} out of range")


def encode_batch(responses: Sequence[Response], more: bool = False) -> bytes:
    """Encode responses (in increasing seq, boots and uptimes never going back) as a
    `B` payload; decode_batch(encode_batch(rs)).responses == rs."""
    out = bytearray()
    if not responses:
        for value in (0, 0, 0, 0, 0):
            _put_varint(out, value)
        out.append(1 if more else 0)
        return bytes(out)
    first = responses[0]
    base = first.wall - first.uptime_s if first.wall is not None else 0
    _put_varint(out, len(responses))
    _put_varint(out, first.seq)
    _put_varint(out, first.boot)
    _put_varint(out, first.uptime_s)
    _put_zigzag(out, base)
    out.append(1 if more else 0)
    seq, boot, uptime = first.seq - 1, first.boot, first.uptime_s
    known = base != 0
    flags = config_version = 0
    for r in responses:
        _check_response(r)
        if r.seq <= seq or r.boot < boot or (r.boot == boot and r.uptime_s < uptime):
            raise BatchError(f"seq {r.seq}: records must go forward in seq, boot and uptime")
        ext = 0
        fields = bytearray()
        if r.seq != seq + 1:
            ext |= EXT_GAP
            _put_varint(fields, r.seq - seq - 2)
        if r.boot != boot:
            ext |= EXT_BOOT
            _put_varint(fields, r.boot - boot)
            uptime = 0
        r_flags = (FLAG_RAPID if r.rapid else 0) | (FLAG_CLOSED if r.closed else 0)
        if r_flags != flags:
            ext |= EXT_FLAGS
            fields.append(r_flags)
        if r.config_version != config_version:
            ext |= EXT_CONFIG
            _put_varint(fields, r.config_version)
        r_known = r.wall is not None
        if r.wall is not None and r.wall - r.uptime_s != base:
            ext |= EXT_WALL_BASE
            _put_zigzag(fields, r.wall - r.uptime_s - base)
            base = r.wall - r.uptime_s
        if r_known != known:
            ext |= EXT_CLOCK
        b1 = r.rating | (r.scale - 3) << 3 | _TOLD_CODES[r.told_next] << 5
        if ext:
            out.append(b1 | _X)
            out.append(ext)
            out += fields
        else:
            out.append(b1)
        _put_varint(out, r.uptime_s - uptime)
        _put_varint(out, r.latency_ds)
        seq, boot, uptime, flags, config_version, known = (
            r.seq, r.boot, r.uptime_s, r_flags, r.config_version, r_known)
    return bytes(out)
