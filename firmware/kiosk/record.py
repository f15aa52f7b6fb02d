# The on-flash encoding of one response (and of a segment's header and seal).
#
# Response record, 12-22 bytes:
#   length | b1 | flags | varint seq-base | varint boot | varint uptime_s |
#   varint latency_ds | varint config_version | [u32 wall, if flags & CLOCK_KNOWN] | crc16
#   b1 = rating (bits 0-2) | (scale - 3) << 3 | told << 5; bit 7 is never set, so that
#   b1 == 0xFF marks a seal record instead.
# Seal record (last in a finished segment): length=11 | 0xFF | u32 count | u32 last_seq | crc16
# Segment header: b"DPS1" | u32 base_seq | crc16
import struct

from kiosk import varint
from kiosk.crc import crc16
from micropython import const

TOLD_NO_ANSWER = const(0)
TOLD_YES = const(1)
TOLD_NO = const(2)
TOLD_NAMES = ("no_answer", "yes", "no")

FLAG_RAPID = const(1)
FLAG_CLOSED = const(2)
FLAG_CLOCK_KNOWN = const(4)

MAX_RECORD = const(40)
SEAL = const(0xFF)
SEAL_SIZE = const(12)
HEADER_SIZE = const(10)
_MAGIC = b"DPS1"
_MAX_WALL = 0xFFFFFFFF  # wall time is a u32

# Field positions in a decoded response tuple.
SEQ = const(0)
RATING = const(1)
SCALE = const(2)
TOLD = const(3)
LATENCY_DS = const(4)
FLAGS = const(5)
BOOT = const(6)
UPTIME_S = const(7)
WALL = const(8)
CONFIG_VERSION = const(9)


class RecordError(ValueError):
    pass


def _finish(buf, pos):
    buf[0] = pos + 1  # bytes after the length byte, crc included
    c = crc16(memoryview(buf)[:pos])
    buf[pos] = c & 0xFF
    buf[pos + 1] = c >> 8
    return pos + 2


def encode_response(buf, base_seq, seq, rating, scale, told, latency_ds, flags, boot,
                    uptime_s, wall, config_version):
    """Encode into buf (>= MAX_RECORD bytes); return the record's length."""
    if not 1 <= rating <= scale or not 3 <= scale <= 5:
        raise RecordError("rating out of scale")
    if told not in (TOLD_NO_ANSWER, TOLD_YES, TOLD_NO):
        raise RecordError("bad told-next answer")
    if seq < base_seq:
        raise RecordError("sequence before segment base")
    # A wall past u32 would wrap to 1970 and still say "known": store it as unknown (the
    # host resolves the record from the boot's anchor instead).
    if 0 < wall <= _MAX_WALL:
        flags |= FLAG_CLOCK_KNOWN
    else:
        flags &= ~FLAG_CLOCK_KNOWN
    buf[1] = rating | ((scale - 3) << 3) | (told << 5)
    buf[2] = flags
    pos = varint.put(buf, 3, seq - base_seq)
    pos = varint.put(buf, pos, boot)
    pos = varint.put(buf, pos, uptime_s)
    pos = varint.put(buf, pos, latency_ds)
    pos = varint.put(buf, pos, config_version)
    if flags & FLAG_CLOCK_KNOWN:
        struct.pack_into("<I", buf, pos, wall)
        pos += 4
    return _finish(buf, pos)


def encode_seal(buf, count, last_seq):
    buf[1] = SEAL
    struct.pack_into("<II", buf, 2, count, last_seq)
    return _finish(buf, 10)


def encode_header(base_seq):
    head = _MAGIC + struct.pack("<I", base_seq)
    c = crc16(head)
    return head + bytes((c & 0xFF, c >> 8))


def decode_header(data):
    """Return the base sequence number of a segment header, or raise RecordError."""
    if len(data) < HEADER_SIZE or data[:4] != _MAGIC:
        raise RecordError("not a segment header")
    if crc16(data[:8]) != data[8] | (data[9] << 8):
        raise RecordError("segment header checksum")
    return struct.unpack_from("<I", data, 4)[0]


def check(data, pos, end):
    """Length of the intact record at data[pos:end], or 0 when it is torn or corrupt."""
    if pos >= end:
        return 0
    size = data[pos] + 1
    if size < 8 or size > MAX_RECORD or pos + size > end:
        return 0
    stop = pos + size - 2
    if crc16(data[pos:stop]) != data[stop] | (data[stop + 1] << 8):
        return 0
    return size


def is_seal(data, pos):
    return data[pos + 1] == SEAL


def decode_seal(data, pos):
    """(count, last_seq) of a checked seal record."""
    return struct.unpack_from("<II", data, pos + 2)


def decode_response(data, pos, size, base_seq):
    """Decode a checked response record into a tuple indexed by SEQ, RATING, ..."""
    end = pos + size - 2
    b1 = data[pos + 1]
    flags = data[pos + 2]
    offset, p = varint.get(data, pos + 3, end)
    boot, p = varint.get(data, p, end)
    uptime_s, p = varint.get(data, p, end)
    latency_ds, p = varint.get(data, p, end)
    config_version, p = varint.get(data, p, end)
    wall = 0
    if flags & FLAG_CLOCK_KNOWN:
        if p + 4 > end:
            raise RecordError("truncated wall time")
        wall = struct.unpack_from("<I", data, p)[0]
        p += 4
    if p != end:
        raise RecordError("record length mismatch")
    return (base_seq + offset, b1 & 7, ((b1 >> 3) & 3) + 3, (b1 >> 5) & 3, latency_ds,
            flags, boot, uptime_s, wall, config_version)
