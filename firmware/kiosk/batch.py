# The compact batch of responses carried by a `B` frame (docs/protocol.md, "Batch
# encoding"). Sequence numbers and uptimes are nearly consecutive, so each record is a
# delta against the one before it: a typical record takes 3-4 bytes.
#
# The encoder writes straight into the caller's buffer (the frame buffer, see frames.py)
# and allocates nothing per record on ports with wide small ints. The header is written
# last, right-aligned into HEADER_ROOM bytes reserved before the records, because its
# first field is the record count.
from kiosk import record, varint
from micropython import const

HEADER_ROOM = const(32)  # >= the largest header (count 3 + seq 5 + boot 5 + up 5 + wall 6 + 1)
MAX_RECORD = const(40)  # >= the largest record: b1, ext, 5 varints, flags, zigzag wall base
MIN_BUDGET = const(64)  # HEADER_ROOM + MAX_RECORD fit, so every batch holds one record

_COUNT_ROOM = const(2)  # varint bytes kept for the count: up to 16383 records
_X = const(0x80)
EXT_GAP = const(1)
EXT_BOOT = const(2)
EXT_FLAGS = const(4)
EXT_CONFIG = const(8)
EXT_WALL = const(16)
EXT_CLOCK = const(32)

_SEQ = record.SEQ
_RATING = record.RATING
_SCALE = record.SCALE
_TOLD = record.TOLD
_LATENCY = record.LATENCY_DS
_FLAGS = record.FLAGS
_BOOT = record.BOOT
_UPTIME = record.UPTIME_S
_WALL = record.WALL
_CONFIG = record.CONFIG_VERSION
_CLOCK_FLAG = record.FLAG_CLOCK_KNOWN


def zigzag(n):
    return n << 1 if n >= 0 else ((-n) << 1) - 1


def varint_size(n):
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


class BatchEncoder:
    """Encodes records into buf[start - HEADER_ROOM : ...]: call begin(), add() each
    record until it returns False, then finish(). buf needs MAX_RECORD bytes of slack
    after start + budget, because a record that overshoots is written, then dropped."""

    def __init__(self, buf, start):
        if start < HEADER_ROOM or len(buf) < start + MIN_BUDGET + MAX_RECORD:
            raise ValueError("batch buffer too small")
        self.buf = buf
        self.start = start  # records begin here; the header ends here
        self._head = bytearray(HEADER_ROOM)
        self._head_mv = memoryview(self._head)
        self.begin(0, MIN_BUDGET)

    def begin(self, from_seq, budget):
        """Start an empty batch whose payload (header included) stays within budget."""
        budget = max(MIN_BUDGET, min(budget, len(self.buf) - self.start - MAX_RECORD))
        self.budget = budget
        self.count = 0
        self.pos = self.start
        self.limit = self.start  # set by the first record, once the header is known
        self.first_seq = from_seq
        self.boot0 = self.uptime0 = self.base0 = 0
        self.seq = self.boot = self.uptime = 0
        self.flags = self.config = 0
        self.base = 0
        self.known = False

    def _header_size(self):
        return (_COUNT_ROOM + varint_size(self.first_seq) + varint_size(self.boot0)
                + varint_size(self.uptime0) + varint_size(zigzag(self.base0)) + 1)

    def add(self, rec):
        """Append one record tuple (see record.SEQ...). Returns False, changing nothing,
        when it does not fit in the budget or cannot follow the previous record as a
        delta (a boot number or uptime going backwards): the batch ends there."""
        seq = rec[_SEQ]
        boot = rec[_BOOT]
        uptime = rec[_UPTIME]
        wall = rec[_WALL]
        if not self.count:
            self.first_seq = seq
            self.boot0 = self.boot = boot
            self.uptime0 = self.uptime = uptime
            self.base0 = self.base = wall - uptime if wall else 0
            self.known = self.base != 0
            self.seq = seq - 1
            self.limit = self.start + self.budget - self._header_size()
        gap = seq - self.seq - 1
        if gap < 0:
            return False
        ext = 0
        if gap:
            ext = EXT_GAP
        boot_delta = boot - self.boot
        if boot_delta:
            if boot_delta < 0:
                return False
            ext |= EXT_BOOT
            up_delta = uptime
        else:
            up_delta = uptime - self.uptime
            if up_delta < 0:
                return False
        flags = rec[_FLAGS] & ~_CLOCK_FLAG & 0xFF
        if flags != self.flags:
            ext |= EXT_FLAGS
        config = rec[_CONFIG]
        if config != self.config:
            ext |= EXT_CONFIG
        known = wall != 0
        base = self.base
        if known:
            base = wall - uptime
            if base != self.base:
                ext |= EXT_WALL
        if known != self.known:
            ext |= EXT_CLOCK

        buf = self.buf
        pos = self.pos
        buf[pos] = ((rec[_RATING] & 7) | ((rec[_SCALE] - 3) & 3) << 3 | (rec[_TOLD] & 3) << 5
                    | (_X if ext else 0))
        pos += 1
        if ext:
            buf[pos] = ext
            pos += 1
            if ext & EXT_GAP:
                pos = varint.put(buf, pos, gap - 1)  # seq = previous + 2 + g
            if ext & EXT_BOOT:
                pos = varint.put(buf, pos, boot_delta)
            if ext & EXT_FLAGS:
                buf[pos] = flags
                pos += 1
            if ext & EXT_CONFIG:
                pos = varint.put(buf, pos, config)
            if ext & EXT_WALL:
                pos = varint.put(buf, pos, zigzag(base - self.base))
        pos = varint.put(buf, pos, up_delta)
        pos = varint.put(buf, pos, rec[_LATENCY])
        if pos > self.limit:
            if not self.count:
                raise ValueError("record larger than a batch")  # MIN_BUDGET rules it out
            return False
        self.pos = pos
        self.count += 1
        self.seq = seq
        self.boot = boot
        self.uptime = uptime
        self.flags = flags
        self.config = config
        self.base = base
        self.known = known
        return True

    def finish(self, more):
        """Write the header; return (offset, length) of the payload in buf."""
        head = self._head
        p = varint.put(head, 0, self.count)
        p = varint.put(head, p, self.first_seq)
        p = varint.put(head, p, self.boot0)
        p = varint.put(head, p, self.uptime0)
        p = varint.put(head, p, zigzag(self.base0))
        head[p] = 1 if more else 0
        p += 1
        offset = self.start - p
        self.buf[offset:self.start] = self._head_mv[:p]
        return offset, self.pos - offset
