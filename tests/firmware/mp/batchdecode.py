# Test-only decoder of a B frame's batch (docs/protocol.md, "Batch encoding"), written
# from the spec rather than from the encoder. Plain Python: runs in MicroPython and CPython.
# Records come back as tuples in the firmware's order (kiosk/record.py):
#   (seq, rating, scale, told, latency_ds, flags, boot, uptime_s, wall, config_version)
# with flags bit 4 (clock known) set whenever wall is known, as on flash.


class BatchError(ValueError):
    pass


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def byte(self):
        if self.pos >= len(self.data):
            raise BatchError("batch truncated at byte %d" % self.pos)
        b = self.data[self.pos]
        self.pos += 1
        return b

    def varint(self):
        value = 0
        shift = 0
        while True:
            b = self.byte()
            value |= (b & 0x7F) << shift
            if b < 0x80:
                return value
            shift += 7
            if shift > 63:
                raise BatchError("varint too long")

    def zigzag(self):
        z = self.varint()
        return -((z + 1) >> 1) if z & 1 else z >> 1


def decode(payload):
    """(records, more, header) of a batch payload; raises BatchError when malformed."""
    r = _Reader(payload)
    count = r.varint()
    first_seq = r.varint()
    boot = r.varint()
    uptime = r.varint()
    base = r.zigzag()
    more = r.byte()
    if more > 1:
        raise BatchError("more must be 0 or 1")
    header = {"count": count, "first_seq": first_seq, "boot": boot, "uptime_s": uptime,
              "wall_base": base}
    seq = first_seq - 1
    flags = 0
    config = 0
    known = base != 0
    records = []
    for _ in range(count):
        b1 = r.byte()
        new_boot = False
        gap = 0
        if b1 & 0x80:
            ext = r.byte()
            if ext & 0xC0:
                raise BatchError("unknown ext bits 0x%02x" % ext)
            if ext & 1:
                gap = 1 + r.varint()
            if ext & 2:
                delta = r.varint()
                if not delta:
                    raise BatchError("new boot with boot delta 0")
                boot += delta
                new_boot = True
            if ext & 4:
                flags = r.byte()
            if ext & 8:
                config = r.varint()
            if ext & 16:
                base += r.zigzag()
            if ext & 32:
                known = not known
        seq += 1 + gap
        delta = r.varint()
        uptime = delta if new_boot else uptime + delta
        latency = r.varint()
        wall = base + uptime if known else 0
        records.append((seq, b1 & 7, ((b1 >> 3) & 3) + 3, (b1 >> 5) & 3, latency,
                        flags | (4 if known else 0), boot, uptime, wall, config))
    if r.pos != len(payload):
        raise BatchError("%d bytes after the last record" % (len(payload) - r.pos))
    return records, more, header
