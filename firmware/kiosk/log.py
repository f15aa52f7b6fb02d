# The response log: append-only segment files on the flash filesystem.
#
# log/open/<base seq, 8 hex>    the segment being written: header, response records
# log/<base seq, 8 hex digits>  a finished segment: the same, then a seal record
# log/acks                      journal of acks and drops (see journal.py)
#
# Every flushed append commits to the metadata of the directory that holds the file, and
# LittleFS reads that metadata log (and compacts it) in proportion to how many entries the
# directory has. The segment being written therefore sits alone in log/open and moves
# to log/ when it is sealed (a rename, which LittleFS makes atomic): the cost of an append
# stays the same however many finished segments the flash holds. Segments that an older
# layout left in log/ are read, appended to and finished where they are.
#
# Every append is flushed before it returns, so a response is durable before the
# customer sees "thank you". A segment is deleted only once every record in it is
# acknowledged, or when the storage cap forces the oldest records out (counted as drops).
# The next sequence number is derived from the segments and the journal, so nothing is
# rewritten per response and numbers are never reused, even after every record is deleted.
import os

from kiosk import record
from kiosk.record import SEQ
from kiosk.journal import Journal
from micropython import const

_ACK = const(1)
_DROP = const(2)
_CORRUPT = const(3)
_READ_CHUNK = const(512)
_REOPEN_EVERY = const(64)
DEFAULT_SEGMENT_BYTES = const(32768)


class LogError(Exception):
    pass


class _Segment:
    def __init__(self, base, folder):
        self.base = base
        self.folder = folder  # the directory holding its file
        self.last = base - 1
        self.count = 0
        self.sealed = False
        self.size = 0


class _Reader:
    """Streams the records of one segment file through a small fixed buffer."""

    def __init__(self, path, buf, start=0):
        self.file = open(path, "rb")
        if start:
            self.file.seek(start)
        self.buf = buf
        self.pos = 0
        self.end = self.file.readinto(buf)
        self.offset = start  # file offset of buf[0]

    def next(self):
        """(pos, size) of the next intact record in buf, or (pos, 0) at the end or at
        damage; the caller tells the two apart with at_eof()."""
        buf = self.buf
        if self.end - self.pos < record.MAX_RECORD:
            keep = self.end - self.pos
            buf[:keep] = buf[self.pos : self.end]
            self.offset += self.pos
            self.pos = 0
            n = self.file.readinto(memoryview(buf)[keep:])
            self.end = keep + (n or 0)
        size = record.check(buf, self.pos, self.end)
        return self.pos, size

    def advance(self, size):
        self.pos += size

    def at_eof(self):
        return self.pos >= self.end

    def close(self):
        self.file.close()


class ResponseLog:
    def __init__(self, root, segment_bytes=DEFAULT_SEGMENT_BYTES, cap_fraction=0.9,
                 statvfs=None):
        self.dir = root + "/log"
        self.open_dir = self.dir + "/open"
        self.segment_bytes = segment_bytes
        self.cap_fraction = cap_fraction
        self._statvfs = statvfs or os.statvfs
        self._journal = Journal(self.dir + "/acks")
        self._segments = []
        self._file = None
        self._buf = bytearray(record.MAX_RECORD)
        self._read_buf = bytearray(_READ_CHUNK)
        self.acked_upto = 0
        self.dropped_upto = 0
        self.dropped_total = 0
        self.corrupt = 0
        self.next_seq = 1
        self._resume = None  # (segment base, file offset, seq) where the last read stopped

    # -- boot ---------------------------------------------------------------
    def open(self):
        for folder in (self.dir, self.open_dir):
            try:
                os.mkdir(folder)
            except OSError:
                pass
        # A segment must be small against the filesystem, or making room for one new
        # segment could drop every stored record.
        _, total, bsize = self._fill()
        self.segment_bytes = min(self.segment_bytes, total * bsize // 16)
        for kind, values in self._journal.scan():
            if kind == _ACK and values:
                self.acked_upto = max(self.acked_upto, values[0])
            elif kind == _DROP and len(values) == 2:
                self.dropped_upto = max(self.dropped_upto, values[0])
                self.dropped_total += values[1]
            elif kind == _CORRUPT and values:
                self.corrupt += values[0]
        if self._journal.corrupt_tails:
            self._note_corrupt(self._journal.corrupt_tails)
        segments = []
        for folder in (self.dir, self.open_dir):
            for name in os.listdir(folder):
                if name.endswith(".tmp"):
                    os.remove(folder + "/" + name)  # a repair cut before its rename
                    continue
                try:
                    base = int(name, 16)
                except ValueError:
                    continue  # the journal, the open/ directory
                segments.append(_Segment(base, folder))
        segments.sort(key=lambda s: s.base)
        floor = max(self.acked_upto, self.dropped_upto)
        last = floor
        for i, seg in enumerate(segments):
            self._load(seg, full=(i == len(segments) - 1))
            last = max(last, seg.last)
            if seg.last <= floor or not seg.count:
                # Fully acked or dropped (a cut came between the journal entry and the
                # delete), or no record in it (a cut while the segment was being started).
                self._remove(seg)
            else:
                self._segments.append(seg)
        self.next_seq = last + 1
        # Only the newest segment may stay in open/; an older one there was finished by
        # a version that did not move it, or rotation was cut short.
        for seg in self._segments[:-1]:
            self._retire(seg)

    def _path(self, seg):
        return "%s/%08x" % (seg.folder, seg.base)

    def _retire(self, seg):
        """Move a finished segment out of the hot directory."""
        if seg.folder != self.dir:
            if seg is self._segments[-1] and self._file is not None:
                self._file.close()
                self._file = None
            old = self._path(seg)
            seg.folder = self.dir
            os.rename(old, self._path(seg))

    def _note_corrupt(self, n):
        self.corrupt += n
        self._journal_append(_CORRUPT, (n,))

    def _load(self, seg, full):
        """Fill in seg's count, last and size: from its seal when it has one and full is
        false, else by scanning. A damaged segment is repaired (see _repair)."""
        path = self._path(seg)
        seg.size = os.stat(path)[6]
        if not seg.size:
            return  # created, then the power went before its first flush: not damage
        if not full and seg.size >= record.HEADER_SIZE + record.SEAL_SIZE:
            with open(path, "rb") as f:
                f.seek(seg.size - record.SEAL_SIZE)
                tail = f.read(record.SEAL_SIZE)
            if record.check(tail, 0, len(tail)) == record.SEAL_SIZE and record.is_seal(tail, 0):
                seg.count, seg.last = record.decode_seal(tail, 0)
                seg.sealed = True
                return
        damaged_at = self._scan(seg, path)
        if damaged_at is not None:
            self._note_corrupt(1)
            self._repair(seg, path, damaged_at)

    def _scan(self, seg, path):
        """Count seg's records; return None, or the file offset where damage starts."""
        try:
            with open(path, "rb") as f:
                head = f.read(record.HEADER_SIZE)
            if record.decode_header(head) != seg.base:
                return 0
        except (OSError, record.RecordError):
            return 0
        reader = _Reader(path, self._read_buf)
        reader.advance(record.HEADER_SIZE)
        try:
            while True:
                pos, size = reader.next()
                if not size:
                    return None if reader.at_eof() else reader.offset + pos
                if record.is_seal(reader.buf, pos):
                    seg.sealed = True
                else:
                    try:
                        seq = record.decode_response(reader.buf, pos, size, seg.base)[SEQ]
                    except ValueError:
                        return reader.offset + pos
                    if seq <= seg.last:
                        return reader.offset + pos
                    seg.last = seq
                    seg.count += 1
                reader.advance(size)
        finally:
            reader.close()

    def _repair(self, seg, path, damaged_at):
        """Keep the intact records before the damage and seal them, by writing a temp
        file and renaming it over the segment: appending after garbage would hide every
        later record from the next scan."""
        if damaged_at < record.HEADER_SIZE or not seg.count:
            os.remove(path)
            seg.count = 0
            return
        tmp = path + ".tmp"
        buf = self._read_buf
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            left = damaged_at
            while left:
                n = src.readinto(memoryview(buf)[: min(left, len(buf))])
                dst.write(memoryview(buf)[:n])
                left -= n
            n = record.encode_seal(self._buf, seg.count, seg.last)
            dst.write(memoryview(self._buf)[:n])
        os.rename(tmp, path)
        seg.size = damaged_at + n
        seg.sealed = True

    # -- writing ------------------------------------------------------------
    def append(self, rating, scale, told, latency_ds, flags, boot, uptime_s, wall,
               config_version):
        """Store one response durably; return its sequence number."""
        seq = self.next_seq
        seg = self._segments[-1] if self._segments else None
        if seg is not None and (
            seg.sealed
            or seg.size + record.MAX_RECORD + record.SEAL_SIZE > self.segment_bytes
        ):
            if not seg.sealed:
                self._seal(seg)
            self._retire(seg)
            seg = None
        if seg is None:
            self._make_room()
            seg = _Segment(seq, self.open_dir)
            self._file = open(self._path(seg), "wb")
            header = record.encode_header(seq)
            self._file.write(header)
            seg.size = len(header)
            self._segments.append(seg)
        elif self._file is None:
            self._file = open(self._path(seg), "ab")
        size = record.encode_response(self._buf, seg.base, seq, rating, scale, told,
                                      latency_ds, flags, boot, uptime_s, wall,
                                      config_version)
        self._file.write(memoryview(self._buf)[:size])
        seg.count += 1
        if seg.count % _REOPEN_EVERY:
            self._file.flush()
        else:
            # Closing commits like flush() does. LittleFS decides once per open whether
            # the directory's metadata block still has erased room; a compaction while the
            # file stays open leaves that answer at "no", and then every later flush
            # compacts (erases) again until the file is reopened: measured as bursts of 2
            # erases per response for a whole segment.
            self._file.close()
            self._file = None
        seg.size += size
        seg.last = seq
        self.next_seq = seq + 1
        return seq

    def _seal(self, seg):
        if self._file is None:
            self._file = open(self._path(seg), "ab")
        n = record.encode_seal(self._buf, seg.count, seg.last)
        self._file.write(memoryview(self._buf)[:n])
        self._file.close()
        self._file = None
        seg.size += n
        seg.sealed = True

    def _fill(self):
        st = self._statvfs(self.dir)
        return st[2] - st[3], st[2], st[0]

    def _make_room(self):
        """Before a new segment: drop the oldest segments while the new one would take
        the filesystem past the cap."""
        while self._segments:
            used, total, bsize = self._fill()
            need = (self.segment_bytes + bsize - 1) // bsize
            if used + need <= total * self.cap_fraction:
                return
            seg = self._segments[0]
            unacked = self._unacked(seg)
            self.dropped_total += unacked
            self.dropped_upto = max(self.dropped_upto, seg.last)
            self._journal_append(_DROP, (self.dropped_upto, unacked))
            self._remove(seg)
            self._segments.pop(0)

    def _journal_append(self, kind, values):
        if self._journal.append(kind, values):
            self._journal.rewrite([(_ACK, [self.acked_upto]),
                                   (_DROP, [self.dropped_upto, self.dropped_total]),
                                   (_CORRUPT, [self.corrupt])])

    def _remove(self, seg):
        if self._segments and seg is self._segments[-1] and self._file is not None:
            self._file.close()
            self._file = None
        try:
            os.remove(self._path(seg))
        except OSError:
            pass

    # -- sync API -----------------------------------------------------------
    def read(self, from_seq, max_bytes=2048):
        """Unacknowledged responses with seq >= from_seq, oldest first, as decoded
        tuples (see record.SEQ...); their encoded size stays within max_bytes, but at
        least one is returned when any is available."""
        from_seq = max(from_seq, self.acked_upto + 1)
        out = []
        used = 0
        for seg in self._segments:
            if seg.last < from_seq:
                continue
            # A sync reads on from where the previous chunk stopped: start there instead
            # of scanning the segment from its header again.
            start = record.HEADER_SIZE
            resume = self._resume
            if resume is not None and resume[0] == seg.base and resume[2] <= from_seq:
                start = resume[1]
            reader = _Reader(self._path(seg), self._read_buf, start)
            try:
                while True:
                    pos, size = reader.next()
                    if not size or record.is_seal(reader.buf, pos):
                        break
                    rec = record.decode_response(reader.buf, pos, size, seg.base)
                    if rec[0] >= from_seq:
                        if out and used + size > max_bytes:
                            self._resume = (seg.base, reader.offset + pos, rec[0])
                            return out
                        out.append(rec)
                        used += size
                    reader.advance(size)
            finally:
                reader.close()
        return out

    def ack(self, upto):
        """Everything up to and including upto is safely stored by the host: record
        that durably, then delete the segments it fully covers."""
        if upto <= self.acked_upto:
            return
        if upto >= self.next_seq:
            raise LogError("ack %d beyond last record %d" % (upto, self.next_seq - 1))
        self.acked_upto = upto
        self._journal_append(_ACK, (upto,))
        keep = []
        for seg in self._segments:
            if seg.last <= upto:
                self._remove(seg)
            else:
                keep.append(seg)
        self._segments = keep

    # -- status -------------------------------------------------------------
    def counts(self):
        stored = unacked = 0
        for seg in self._segments:
            stored += seg.count
            unacked += self._unacked(seg)
        return stored, unacked

    def _unacked(self, seg):
        # Sequence numbers within a segment are consecutive (a gap only ever starts a
        # new segment), so the acked part is a prefix.
        if self.acked_upto < seg.base:
            return seg.count
        return max(0, seg.last - self.acked_upto)

    def status(self):
        stored, unacked = self.counts()
        used, total, _ = self._fill()
        return {
            "stored": stored,
            "unacked": unacked,
            "dropped": self.dropped_total,
            "corrupt": self.corrupt,
            "next_seq": self.next_seq,
            "acked_upto": self.acked_upto,
            "fs_fill": round(used / total, 3) if total else 0,
        }

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
        self._journal.close()
