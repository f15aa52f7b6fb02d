# Device -> host frames on the console (docs/protocol.md):
#
#   0xD5 0xAA | type | tag (u16 LE) | length (u16 LE) | payload | crc32 (u32 LE)
#
# The CRC-32 covers type, tag, length and payload. One preallocated buffer holds a whole
# frame; a payload can be encoded in place (the batch encoder does) or copied in.
import binascii
import struct

from micropython import const

START = b"\xd5\xaa"
HEAD = const(7)  # start marker, type, tag, length
TAIL = const(4)  # crc32
MAX_PAYLOAD = const(0xFFFF)


class FrameError(ValueError):
    pass


class FrameBuffer:
    """A buffer for one frame of up to `room` payload bytes, placed at HEAD or, for a
    payload encoded in place, anywhere after HEAD bytes of room for the frame's head."""

    def __init__(self, room):
        if room > MAX_PAYLOAD:
            raise FrameError("frame payload over 65535 bytes")
        self.buf = bytearray(HEAD + room + TAIL)
        self.mv = memoryview(self.buf)
        self.room = room

    def seal(self, kind, tag, offset, length):
        """Frame the payload already at buf[offset:offset + length]; return a memoryview
        of the whole frame (valid until the buffer is reused)."""
        if offset < HEAD or offset + length + TAIL > len(self.buf):
            raise FrameError("payload outside the frame buffer")
        buf = self.buf
        head = offset - HEAD
        buf[head] = 0xD5
        buf[head + 1] = 0xAA
        buf[head + 2] = kind
        buf[head + 3] = tag & 0xFF
        buf[head + 4] = (tag >> 8) & 0xFF
        buf[head + 5] = length & 0xFF
        buf[head + 6] = length >> 8
        end = offset + length
        struct.pack_into("<I", buf, end, binascii.crc32(self.mv[head + 2:end]))
        return self.mv[head:end + TAIL]

    def build(self, kind, tag, payload):
        """Copy payload (bytes-like) into the buffer and frame it."""
        n = len(payload)
        if n > self.room:
            raise FrameError("payload of %d bytes over the frame's %d" % (n, self.room))
        self.buf[HEAD:HEAD + n] = payload
        return self.seal(kind, tag, HEAD, n)


def encode(kind, tag, payload):
    """A frame as new bytes (for tests and rare answers; the sync task uses FrameBuffer)."""
    fb = FrameBuffer(len(payload))
    return bytes(fb.build(kind, tag, payload))
