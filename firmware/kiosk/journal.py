# A small append-only file of CRC-checked entries, for state that changes rarely
# (acks, drops, boots, time anchors). Each change is one flushed append; when the file
# grows past a limit the caller's snapshot is written to a temp file and renamed over it,
# so the file is never rewritten in place.
#
# Entry: length byte (bytes that follow) | kind byte | payload | crc16 of all before it.
import os

from kiosk import varint
from kiosk.crc import crc16

_MAX_ENTRY = 60


class JournalError(Exception):
    pass


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


class Journal:
    def __init__(self, path, compact_at=4096):
        self.path = path
        self.compact_at = compact_at
        self.size = 0
        self.corrupt_tails = 0
        self._file = None
        self._buf = bytearray(_MAX_ENTRY + 4)

    def scan(self):
        """Return the intact entries as a list of (kind, [ints]); a torn or corrupt
        tail is skipped and counted in corrupt_tails. Must be called before append."""
        tmp = self.path + ".tmp"
        if _exists(tmp):
            # A compaction cut before its rename: the old file is still whole.
            os.remove(tmp)
        entries = []
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        pos = 0
        end = len(data)
        while pos < end:
            length = data[pos]
            stop = pos + 1 + length
            if length < 3 or stop > end or crc16(data[pos:stop - 2]) != (
                data[stop - 2] | (data[stop - 1] << 8)
            ):
                self.corrupt_tails += 1
                break
            values = []
            p = pos + 2
            try:
                while p < stop - 2:
                    v, p = varint.get(data, p, stop - 2)
                    values.append(v)
            except ValueError:
                self.corrupt_tails += 1
                break
            entries.append((data[pos + 1], values))
            pos = stop
        if pos < end:
            # Never append after garbage: rewrite what is intact so new entries stay readable.
            self.rewrite(entries)
        else:
            self.size = end
        return entries

    def _encode(self, kind, values):
        buf = self._buf
        buf[1] = kind
        pos = 2
        for v in values:
            pos = varint.put(buf, pos, v)
            if pos > _MAX_ENTRY:
                raise JournalError("journal entry too long")
        buf[0] = pos + 1  # length counts kind, payload and crc
        c = crc16(memoryview(buf)[:pos])
        buf[pos] = c & 0xFF
        buf[pos + 1] = c >> 8
        return memoryview(buf)[: pos + 2]

    def append(self, kind, values):
        """Append one entry and flush it: durable when this returns."""
        if self._file is None:
            self._file = open(self.path, "ab")
        entry = self._encode(kind, values)
        self._file.write(entry)
        self._file.flush()
        self.size += len(entry)
        return self.size >= self.compact_at

    def rewrite(self, entries):
        """Replace the journal by these entries: write a temp file, then rename."""
        self.close()
        tmp = self.path + ".tmp"
        size = 0
        with open(tmp, "wb") as f:
            for kind, values in entries:
                entry = self._encode(kind, values)
                f.write(entry)
                size += len(entry)
            f.flush()
        os.rename(tmp, self.path)
        self.size = size

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None
