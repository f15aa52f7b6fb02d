# Unsigned LEB128 varints: small numbers (sequence offsets, boot numbers, latencies)
# take one or two bytes.


def put(buf, pos, value):
    """Write value at buf[pos:], return the position after it."""
    if value < 0:
        raise ValueError("varint must be >= 0")
    while value >= 0x80:
        buf[pos] = (value & 0x7F) | 0x80
        value >>= 7
        pos += 1
    buf[pos] = value
    return pos + 1


def get(buf, pos, end):
    """Read a varint from buf[pos:end]; return (value, next_pos) or raise ValueError."""
    value = 0
    shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, pos
        shift += 7
        if shift > 35:
            break
    raise ValueError("bad varint")
