"""Device → host frames of the serial sync protocol (docs/protocol.md).

    0xD5 0xAA | type (1 byte, ASCII) | tag (u16 LE) | length (u16 LE) | payload | crc32 (u32 LE)

The console carries frames mixed with anything else the firmware prints (boot messages,
screen lines, tracebacks) and, on a real cable, with lost or damaged bytes. `FrameParser`
takes bytes as they arrive and yields only frames whose CRC-32 checks; everything else is
skipped. It never waits for more data than one frame can hold, and a false start (the two
marker bytes inside text, followed by a length that points past the real frame) cannot hide
a complete, valid frame that follows it.
"""

from __future__ import annotations

import binascii
import struct
from dataclasses import dataclass

MARKER = b"\xd5\xaa"
_HEAD = struct.Struct("<cHH")  # type, tag, length
HEADER_SIZE = len(MARKER) + _HEAD.size
CRC_SIZE = 4
MAX_PAYLOAD = 32768
"""Longest payload the host accepts. The device sends batches of at most 4 KB and JSON
frames of a few KB; a longer length field is taken as noise, never waited for."""


@dataclass(frozen=True, slots=True)
class Frame:
    type: str  # one ASCII letter: H, B, A, T, C, E, I, P
    tag: int
    payload: bytes


def encode_frame(type_: str, tag: int, payload: bytes) -> bytes:
    """A frame as the device sends it (for tests, stand-ins and benchmarks)."""
    if len(type_) != 1 or not type_.isascii():
        raise ValueError("frame type must be one ASCII character")
    if not 0 <= tag <= 0xFFFF or len(payload) > 0xFFFF:
        raise ValueError("tag or payload out of range")
    body = _HEAD.pack(type_.encode("ascii"), tag, len(payload)) + payload
    return MARKER + body + struct.pack("<I", binascii.crc32(body))


class FrameParser:
    """Incremental parser: `feed(data)` returns the valid frames completed by data."""

    def __init__(self, max_payload: int = MAX_PAYLOAD) -> None:
        self.max_payload = max_payload
        self._buf = bytearray()
        self._base = 0  # stream offset of _buf[0]
        self._bad: set[int] = set()  # stream offsets of complete candidates that failed
        self.skipped = 0  # bytes that were not part of a valid frame

    def feed(self, data: bytes) -> list[Frame]:
        self._buf += data
        out: list[Frame] = []
        while self._step(out):
            pass
        return out

    def _drop(self, count: int, skipped: bool = True) -> None:
        del self._buf[:count]
        self._base += count
        if skipped:
            self.skipped += count
        if self._bad:
            self._bad = {at for at in self._bad if at >= self._base}

    def _check(self, at: int) -> tuple[str, Frame | None]:
        """Judge the candidate starting at _buf[at] (which holds the marker):
        ('bad', None), ('short', None) or ('ok', frame)."""
        if self._base + at in self._bad:
            return "bad", None
        buf = self._buf
        if len(buf) - at < HEADER_SIZE:
            return "short", None
        type_b, tag, length = _HEAD.unpack_from(buf, at + len(MARKER))
        if length > self.max_payload or not 0x20 < type_b[0] < 0x7F:
            self._bad.add(self._base + at)
            return "bad", None
        end = at + HEADER_SIZE + length + CRC_SIZE
        if len(buf) < end:
            return "short", None
        body_end = end - CRC_SIZE
        (crc,) = struct.unpack_from("<I", buf, body_end)
        if binascii.crc32(memoryview(buf)[at + len(MARKER) : body_end]) != crc:
            self._bad.add(self._base + at)
            return "bad", None
        payload = bytes(buf[at + HEADER_SIZE : body_end])
        return "ok", Frame(type_b.decode("ascii"), tag, payload)

    def _frame_size(self, frame: Frame) -> int:
        return HEADER_SIZE + len(frame.payload) + CRC_SIZE

    def _step(self, out: list[Frame]) -> bool:
        """Make one decision; True when another may follow without new data."""
        buf = self._buf
        start = buf.find(MARKER)
        if start < 0:
            # Keep a last 0xD5: it may be the first half of a marker.
            keep = 1 if buf[-1:] == MARKER[:1] else 0
            if len(buf) > keep:
                self._drop(len(buf) - keep)
            return False
        if start:
            self._drop(start)
        verdict, frame = self._check(0)
        if verdict == "ok" and frame is not None:
            out.append(frame)
            self._drop(self._frame_size(frame), skipped=False)
            return True
        if verdict == "bad":
            self._drop(1)
            return True
        # The first candidate is incomplete. If it was a false start, a real frame may
        # already sit complete behind it: take the first such frame and drop what precedes.
        at = buf.find(MARKER, 1)
        while at >= 0:
            verdict, frame = self._check(at)
            if verdict == "ok" and frame is not None:
                self._drop(at)
                out.append(frame)
                self._drop(self._frame_size(frame), skipped=False)
                return True
            at = buf.find(MARKER, at + 1)
        return False


def command_line(tag: int, command: str) -> bytes:
    """A host → device command line with its checksum (docs/protocol.md): the low 16 bits
    of the CRC-32 of the text, so a damaged ACK, TIME or CONFIG is refused, not obeyed."""
    text = f"{tag} {command}"
    check = binascii.crc32(text.encode("ascii")) & 0xFFFF
    return f"{text} *{check:04x}\n".encode("ascii")
