# The serial sync protocol, device side (docs/protocol.md): command lines in on the
# console, frames out, from an asyncio task that shares the loop with the survey.
#
# The survey comes first: each pass reads at most _BYTES_PER_STEP bytes and answers at
# most _LINES_PER_STEP lines, then sleeps; a PULL yields between log reads and long frames
# go out in slices, so a flood of commands or a big batch never stalls the buttons.
# Memory is bounded: one preallocated frame buffer (a batch is encoded straight into it)
# and a 200-byte line buffer. A config upload goes to a file as its lines arrive.
#
# The technician's hardware test (INPUT, PATTERN) borrows the screen and the inputs for a
# bounded time, and only from an idle kiosk: while INPUT lasts, the kiosk's press() and
# tap() (its entry points for debounced input) are this module's, so a press is reported
# as a frame and never rated; at the end, or at the deadline if the host has gone, the
# survey gets them and its screen back.
import asyncio
import binascii
import json
import os
import select
import sys

from kiosk import batch, frames, jsoncheck, outbox
from kiosk import config as cfg
from kiosk import flow as flow_mod
from kiosk.clock import EARLIEST_WALL, LATEST_WALL, SOURCE_HOST
from kiosk.log import LogError
from kiosk.crc import crc16
from micropython import const

PROTOCOL = const(1)
MAX_LINE = const(200)
MAX_PAYLOAD = const(4096)  # every frame's payload, and so every batch, stays within this
CONFIG_CHUNK = const(96)  # decoded bytes per CONFIG DATA line
POLL_MS = const(20)
WRITE_CHUNK = const(256)  # about 22 ms of a 115200 baud UART

_LINES_PER_STEP = const(4)
_BYTES_PER_STEP = const(256)
_SHOWN = const(48)  # characters of an offending line quoted back in an E frame
_PIECE_HEAD = const(4)  # an R frame's size and offset, before the config's bytes
_LONG_WORD = const(16)
MIN_MAINTENANCE_S = const(10)  # MAINT: the REPL free for this long at least
MAX_MAINTENANCE_S = const(3600)  # and at most an hour: the kiosk always comes back
_CONFIG_WORDS = ("CONFIG", "BEGIN", "DATA", "END", "READ")
_INCOMING = ".new"  # the config path + this: the upload in progress
_MAX_SEQ = 0xFFFFFFFF  # sequence numbers are u32 on the flash

_B = const(0x42)
_H = const(0x48)
_A = const(0x41)
_T = const(0x54)
_C = const(0x43)
_E = const(0x45)
_R = const(0x52)
_M = const(0x4D)
_NL = const(10)
_CR = const(13)
_SPACE = const(32)

_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_HEX = b"0123456789abcdefABCDEF"


# Commands that change the device's state must arrive intact: a digit flipped on the
# line in "ACK 1200" could free records the host never stored.
# INPUT and PATTERN take the screen from customers for minutes: a damaged number must not.
_NEED_CHECKSUM = ("ACK", "TIME", "CONFIG", "INPUT", "PATTERN", "MAINT")


def _checked_words(text):
    """The line's words without its ' *xxxx' checksum (CRC-32 of the text before it, low
    16 bits, 4 hex digits), which is verified; required for _NEED_CHECKSUM commands."""
    cut = text.rfind(" *")
    if cut >= 0:
        given = text[cut + 2:]
        if len(given) != 4 or "%04x" % crc16(text[:cut].encode()) != given.lower():
            raise _Reject("line checksum does not match: damaged on the way, send it again")
        return text[:cut].split()
    words = text.split()
    if len(words) > 1 and words[1] in _NEED_CHECKSUM:
        raise _Reject("%s needs a line checksum (' *xxxx', see docs/protocol.md)" % words[1])
    return words


class ConsoleReader:
    """Bytes from the console without blocking, on the ESP32 and the unix port.

    ESP32's stdin read blocks until it has filled the whole buffer it is given, so this
    reads one byte at a time, and only while poll (timeout 0) says one is waiting."""

    def __init__(self, stream=None, pollable=None):
        if stream is None:
            stream = sys.stdin.buffer
            pollable = sys.stdin
        self._stream = stream
        self._byte = bytearray(1)
        self._byte_mv = memoryview(self._byte)
        self._poll = select.poll()
        self._poll.register(pollable or stream, select.POLLIN)
        self.closed = False

    def readinto(self, buf):
        """Copy the bytes available now, at most len(buf), into buf; return how many."""
        n = 0
        size = len(buf)
        while n < size and not self.closed:
            ready = False
            for _, event in self._poll.ipoll(0):
                if event & select.POLLIN:
                    ready = True
                elif event & (select.POLLHUP | select.POLLERR):
                    self.closed = True
            if not ready:
                break
            try:
                got = self._stream.readinto(self._byte_mv)
            except OSError:  # EIO once the other end of a pty has gone
                got = 0
            if not got:
                self.closed = True  # end of input: stop polling a stream that stays "ready"
                break
            buf[n] = self._byte[0]
            n += 1
        return n


class _Reject(Exception):
    """A command that cannot be carried out; its message becomes the E frame's error."""


def _number(word, low, high, what):
    if not word.isdigit() or len(word) > 10:
        raise _Reject("%s must be a whole number, not %r" % (what, word[:_SHOWN]))
    value = int(word)
    if not low <= value <= high:
        raise _Reject("%s must be between %d and %d" % (what, low, high))
    return value


def _only(word, allowed):
    """Whether every character of word is one of the bytes allowed. Walks the bytes: a
    str walked makes a str of each character, interned, and a new character can need a
    new block for the interned strings (1.3 KB on an ESP32, in a heap maybe in pieces)."""
    for b in word.encode():
        if b not in allowed:
            return False
    return True


def _args(args, count, usage):
    if len(args) != count:
        raise _Reject("usage: <tag> %s" % usage)
    return args


def _tag(line, n):
    """The tag at the start of line[:n], or 0 when there is none."""
    value = 0
    i = 0
    while i < n and i < 6 and 48 <= line[i] <= 57:
        value = value * 10 + line[i] - 48
        i += 1
    if 0 < i <= 5 and value <= 0xFFFF and (i == n or line[i] == _SPACE):
        return value
    return 0


def _shown(line, n):
    """The start of an offending line, printable ASCII only, for an E frame; never the
    argument of a CONFIG DATA line (see _redacted)."""
    m = min(n, _SHOWN)
    out = bytearray(m)
    for i in range(m):
        b = line[i]
        out[i] = b if 32 <= b < 127 else 63  # '?'
    text = out.decode()
    redacted = _redacted(text, bytes(line[:n]).upper())
    if redacted is not None:
        return redacted
    return text + "..." if n > _SHOWN else text


def _redacted(text, upper):
    """text up to the first word that may carry part of a config, then "<redacted>"; None
    when nothing needs hiding. The base64 of a CONFIG DATA line may hold a WiFi password
    or key, and a line that gets an E frame may be damaged anywhere, its command words
    too: so a line that mentions CONFIG or DATA keeps only its tag and the CONFIG words,
    and in any line a long word that is not a number is hidden (no command word or
    number is longer than _LONG_WORD; a base64 chunk is)."""
    config = b"CONFIG" in upper or b"DATA" in upper
    words = text.split()
    for i, word in enumerate(words):
        if config:
            hide = not (word in _CONFIG_WORDS or (i == 0 and word.isdigit()))
        else:
            hide = len(word) > _LONG_WORD and not word.isdigit()
        if hide:
            words[i] = "<redacted>"
            return " ".join(words[:i + 1])
    return None


class SerialSync:
    """Answers sync commands for `kiosk` (an app.Kiosk, or anything with its .log,
    .clock, .flow, .config, .config_problems, .config_path, .hal.board and .status(); for
    INPUT and PATTERN also .buttons, .display, .screens, .touch_taps, .hal.touch and the
    press(index) / tap(point) methods its input task calls).

    source.readinto(buf) returns the bytes available now without blocking (ConsoleReader
    for the real console); write(bytes) sends them all (sys.stdout.buffer.write by
    default). write_chunk bounds each write call, with a yield between (0: whole frames)."""

    def __init__(self, kiosk, source, write=None, poll_ms=POLL_MS, write_chunk=WRITE_CHUNK):
        self.kiosk = kiosk
        self._source = source
        self._write = write if write is not None else sys.stdout.buffer.write
        self.poll_ms = poll_ms
        self.write_chunk = write_chunk
        # One frame buffer for every answer; a batch is encoded in place, its header
        # right-aligned before the records, the frame head before that.
        self._frame = frames.FrameBuffer(batch.HEADER_ROOM + MAX_PAYLOAD + batch.MAX_RECORD)
        self._batch = batch.BatchEncoder(self._frame.buf, frames.HEAD + batch.HEADER_ROOM)
        self._in = bytearray(32)
        self._in_mv = memoryview(self._in)
        self._in_pos = self._in_end = 0
        self._line = bytearray(MAX_LINE)
        self._line_len = 0
        self._overlong = False
        # CONFIG BEGIN..END: the file the bytes go to (None: no upload), how many are
        # announced and have come, the crc32 announced and the one of what came, the
        # strict JSON check fed as they come, and why they could not be written.
        self._upload = None
        self._upload_size = 0
        self._upload_got = 0
        self._upload_crc = 0
        self._upload_sum = 0
        self._upload_check = None
        self._upload_fault = None
        self._drop_upload()  # one a reset or a power cut cut short
        self._test = None  # the hardware test (kiosk/hwtest.py) once INPUT or PATTERN came
        self.lines = 0  # command lines answered
        self.errors = 0  # E frames sent
        self.failures = 0  # passes cut short by an exception (a console write failing)

    async def run(self):
        sleep_ms = asyncio.sleep_ms
        while True:
            try:
                await self.step()
            except Exception:  # a console write failing must not stop the kiosk
                self.failures += 1
            await sleep_ms(self.poll_ms)

    async def step(self):
        """Take what has arrived and answer at most _LINES_PER_STEP complete lines."""
        handled = 0
        budget = _BYTES_PER_STEP
        line = self._line
        test = self._test
        if test is not None and test.active():
            await test.step()
        while handled < _LINES_PER_STEP:
            if self._in_pos == self._in_end:
                if budget <= 0:
                    break
                n = self._source.readinto(self._in_mv[:min(len(self._in), budget)])
                if not n:
                    break
                budget -= n
                self._in_pos = 0
                self._in_end = n
            b = self._in[self._in_pos]
            self._in_pos += 1
            if b == _NL:
                if self._line_len or self._overlong:
                    handled += 1
                    await self._line_done()
            elif self._line_len < MAX_LINE:
                line[self._line_len] = b
                self._line_len += 1
            else:
                self._overlong = True  # the rest, up to the newline, is dropped
        return handled

    # -- lines ---------------------------------------------------------------------
    async def _line_done(self):
        line = self._line
        n = self._line_len
        self._line_len = 0
        overlong = self._overlong
        self._overlong = False
        if n and line[n - 1] == _CR and not overlong:
            n -= 1
        if not n and not overlong:
            return  # an empty line, or a bare CR LF: ignored, as docs/protocol.md says
        self.lines += 1
        tag = _tag(line, n)
        if overlong:
            await self._error(tag, "line longer than %d bytes: ignored" % MAX_LINE, line, n)
            return
        for i in range(n):
            if not 32 <= line[i] < 127:
                await self._error(tag, "not a command line (byte 0x%02x)" % line[i], line, n)
                return
        text = bytes(line[:n]).decode()
        try:
            words = _checked_words(text)
            if len(words) < 2 or not words[0].isdigit() or tag != int(words[0]):
                raise _Reject("expected '<tag> <COMMAND> [arguments]' with a tag 1-65535")
            await self._execute(tag, words[1], words[2:])
        except _Reject as e:
            await self._error(tag, str(e), line, n)
        except Exception as e:
            await self._error(tag, "device error: %s: %s" % (type(e).__name__, e), line, n)

    async def _execute(self, tag, command, args):
        if command == "HELLO":
            await self._hello(tag, args)
        elif command == "PULL":
            await self._pull(tag, args)
        elif command == "ACK":
            await self._ack(tag, args)
        elif command == "TIME":
            await self._time(tag, args)
        elif command == "CONFIG":
            await self._config(tag, args)
        elif command == "INPUT":
            await self._hardware_test().input(tag, args)
        elif command == "PATTERN":
            await self._hardware_test().pattern(tag, args)
        elif command == "MAINT":
            await self._maintenance(tag, args)
        else:
            raise _Reject("unknown command %r" % command[:_SHOWN])

    # -- frames ----------------------------------------------------------------------
    async def _send(self, frame):
        chunk = self.write_chunk
        if not chunk or len(frame) <= chunk:
            self._write(frame)
            return
        for i in range(0, len(frame), chunk):
            self._write(frame[i:i + chunk])
            await asyncio.sleep_ms(0)

    async def send_json(self, kind, tag, obj):
        data = json.dumps(obj).encode()
        if len(data) > MAX_PAYLOAD:
            raise _Reject("answer of %d bytes is over %d" % (len(data), MAX_PAYLOAD))
        await self._send(self._frame.build(kind, tag, data))

    async def _error(self, tag, sentence, line, n):
        self.errors += 1
        await self.send_json(_E, tag, {"error": sentence, "line": _shown(line, n)})

    # -- commands --------------------------------------------------------------------
    async def _hello(self, tag, args):
        host = _number(_args(args, 1, "HELLO <host protocol>")[0], 0, 0xFFFF, "protocol")
        if host < 1:
            raise _Reject("protocol %d is not supported: this kiosk speaks protocol %d"
                          % (host, PROTOCOL))
        kiosk = self.kiosk
        status, anchors, first_seq = outbox.status_and_anchors(kiosk)
        mac = kiosk.mac
        answer = {"proto": PROTOCOL, "device_id": status.get("device_id"),
                  "mac": binascii.hexlify(mac).decode() if mac else None,
                  "board": status.get("board"), "firmware": status.get("firmware"),
                  "status": status, "anchors": anchors, "first_seq": first_seq,
                  "next_seq": kiosk.log.next_seq}
        data = json.dumps(answer).encode()
        while len(data) > MAX_PAYLOAD and anchors:
            del anchors[:8]  # the oldest boots' anchors; the host reports those times unknown
            data = json.dumps(answer).encode()
        if len(data) > MAX_PAYLOAD:
            raise _Reject("status of %d bytes is over %d" % (len(data), MAX_PAYLOAD))
        await self._send(self._frame.build(_H, tag, data))

    async def _pull(self, tag, args):
        args = _args(args, 2, "PULL <from seq> <max bytes>")
        from_seq = _number(args[0], 0, _MAX_SEQ, "from seq")
        budget = _number(args[1], 0, 0xFFFF, "max bytes")
        budget = max(batch.MIN_BUDGET, min(budget, MAX_PAYLOAD))
        offset, length, _, _ = await outbox.fill(self.kiosk.log, self._batch, from_seq, budget)
        await self._send(self._frame.seal(_B, tag, offset, length))

    async def _ack(self, tag, args):
        upto = _number(_args(args, 1, "ACK <upto seq>")[0], 0, _MAX_SEQ, "upto seq")
        log = self.kiosk.log
        try:
            log.ack(upto)
        except LogError as e:
            raise _Reject(str(e))
        await self.send_json(_A, tag, {"acked": log.acked_upto})

    async def _time(self, tag, args):
        # The range is the clock's (kiosk.clock): what a record's u32 wall can hold, with
        # years of uptime to spare; Clock.set_wall would refuse anything outside it too.
        wall = _number(_args(args, 1, "TIME <unix seconds>")[0], EARLIEST_WALL, LATEST_WALL,
                       "unix seconds")
        clock = self.kiosk.clock
        clock.set_wall(wall, SOURCE_HOST)
        await self.send_json(_T, tag, {"anchor": list(clock.anchors[-1])})

    # -- config upload ---------------------------------------------------------------
    # The bytes go to a temp file beside the config as each DATA line brings them, through
    # the running crc32 and the strict JSON check: the upload is never whole in RAM (a
    # busy heap may have no 8 KB in one piece). END parses the file a byte at a time,
    # validates the value and renames the file over the config, so a power cut leaves
    # the old config or the new one whole, and the bytes kept are the host's own.
    async def _config(self, tag, args):
        step = args[0] if args else ""
        if step == "BEGIN":
            size, crc = _args(args[1:], 2, "CONFIG BEGIN <bytes> <crc32 hex>")
            size = _number(size, 1, 0xFFFFFF, "bytes")
            if not 1 <= len(crc) <= 8 or not _only(crc, _HEX):
                raise _Reject("crc32 must be 1-8 hex digits")
            self._drop_upload()
            if size > cfg.MAX_FILE_BYTES:
                await self._config_answer(tag, False, ["config is %d bytes, over the %d limit"
                                                       % (size, cfg.MAX_FILE_BYTES)])
                return
            try:
                self._upload = open(self.kiosk.config_path + _INCOMING, "wb")
            except OSError as e:
                await self._config_answer(tag, False, ["config cannot be received: %s" % e])
                return
            self._upload_size = size
            self._upload_got = 0
            self._upload_crc = int(crc, 16)
            self._upload_sum = 0
            self._upload_check = jsoncheck.Checker()
            self._upload_fault = None
            await self._config_answer(tag, True)
        elif step == "DATA":
            text = _args(args[1:], 1, "CONFIG DATA <base64>")[0]
            if self._upload is None:
                raise _Reject("CONFIG DATA without CONFIG BEGIN")
            body = text.rstrip("=")
            if (len(text) % 4 or len(text) > (CONFIG_CHUNK // 3) * 4 or len(text) - len(body) > 2
                    or not _only(body, _B64)):
                raise _Reject("CONFIG DATA takes base64 of at most %d bytes" % CONFIG_CHUNK)
            try:
                data = binascii.a2b_base64(text)
            except ValueError:
                raise _Reject("CONFIG DATA takes base64 of at most %d bytes" % CONFIG_CHUNK)
            got = self._upload_got
            if got + len(data) > self._upload_size:
                size = self._upload_size
                self._drop_upload()
                await self._config_answer(tag, False, ["more data than the %d bytes announced"
                                                       % size])
                return
            self._upload_got = got + len(data)
            self._upload_sum = binascii.crc32(data, self._upload_sum)
            if self._upload_fault is None:
                try:
                    self._upload.write(data)
                except OSError as e:  # e.g. a full flash: told at END, after size and crc
                    self._upload_fault = "config not saved: %s" % e
            check = self._upload_check
            if check is not None and check.problem is None:
                try:
                    check.feed(data)
                except jsoncheck.JsonProblem:
                    pass  # kept by the checker: END tells it, after the size and the crc
            await self._config_answer(tag, True)
        elif step == "END":
            _args(args[1:], 0, "CONFIG END")
            upload = self._upload
            if upload is None:
                raise _Reject("CONFIG END without CONFIG BEGIN")
            got = self._upload_got
            try:
                problems = self._install(upload)
            finally:
                self._drop_upload()
            if problems:
                await self._config_answer(tag, False, problems, got)
            else:
                await self.send_json(_C, tag, {"ok": True, "received": got,
                                           "version": self.kiosk.config["version"]})
        elif step == "READ":
            offset = _number(_args(args[1:], 1, "CONFIG READ <offset>")[0], 0, 0xFFFF,
                             "offset")
            await self._send(self._config_piece(tag, offset))
        else:
            raise _Reject("usage: <tag> CONFIG BEGIN|DATA|END|READ ...")

    def _config_piece(self, tag, offset):
        """An R frame: the config file's size (u16 LE, 0 without a file), offset (u16 LE)
        and as many of its bytes from offset as fit, read straight into the frame buffer
        (the file may be twice a frame, and is never whole in RAM)."""
        path = self.kiosk.config_path
        try:
            size = os.stat(path)[6]
        except OSError:
            size = 0  # no config file: the kiosk runs on its defaults
        if size > 0xFFFF:
            raise _Reject("config file is %d bytes: not a config" % size)
        if offset > size:
            raise _Reject("offset %d is past the config's %d bytes" % (offset, size))
        buf = self._frame.buf
        start = frames.HEAD + _PIECE_HEAD
        n = 0
        if offset < size:
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    n = f.readinto(self._frame.mv[start:start + min(MAX_PAYLOAD - _PIECE_HEAD,
                                                                    size - offset)])
            except OSError as e:
                raise _Reject("config cannot be read: %s" % e)
        buf[start - 4] = size & 0xFF
        buf[start - 3] = size >> 8
        buf[start - 2] = offset & 0xFF
        buf[start - 1] = offset >> 8
        return self._frame.seal(_R, tag, frames.HEAD, _PIECE_HEAD + (n or 0))

    async def _config_answer(self, tag, ok, problems=None, received=None):
        answer = {"ok": ok, "received": self._upload_got if received is None else received}
        if problems:
            answer["problems"] = outbox.capped(problems)
        await self.send_json(_C, tag, answer)

    def _drop_upload(self):
        """End the upload in progress, if any, and remove its file if it is still there:
        nothing half received, or refused, stays beside the config."""
        upload = self._upload
        self._upload = None
        self._upload_check = None
        if upload is not None:
            try:
                upload.close()
            except OSError:
                pass
        try:
            os.remove(self.kiosk.config_path + _INCOMING)
        except OSError:
            pass  # none: installed, or never begun

    def _install(self, upload):
        """Check, install and apply the uploaded config (upload: its file, open); return
        its problems (none: applied)."""
        size = self._upload_size
        got = self._upload_got
        if got != size:
            return ["received %d of the %d bytes announced" % (got, size)]
        if self._upload_sum != self._upload_crc:
            return ["crc32 mismatch: announced %08x, received data has %08x"
                    % (self._upload_crc, self._upload_sum)]
        try:
            upload.close()  # writes what the file still buffers
        except OSError as e:
            self._upload_fault = self._upload_fault or "config not saved: %s" % e
        if self._upload_fault:
            return [self._upload_fault]
        kiosk = self.kiosk
        config, problems = cfg.install(kiosk, kiosk.config_path + _INCOMING,
                                       self._upload_check)
        if problems:
            return problems
        cfg.apply(kiosk, config)
        return None

    # -- the hardware test (kiosk/hwtest.py, loaded at its first command) and MAINT ---
    def _hardware_test(self):
        test = self._test
        if test is None:
            from kiosk.hwtest import HardwareTest

            test = self._test = HardwareTest(self)
        return test

    def check_idle(self):
        """Commands that take the screen run only between customers (or during a test)."""
        test = self._test
        if test is not None and test.active():
            return
        state = self.kiosk.flow.state
        if state != flow_mod.IDLE:
            raise _Reject("the kiosk is busy (%s): try again when it shows the question"
                          % flow_mod.STATE_NAMES[state])

    async def _maintenance(self, tag, args):
        # The app stops once the answer is out; kiosk/boot.py then leaves the REPL free
        # (for mpremote) with the watchdog fed, and restarts the board after `seconds`.
        seconds = _number(_args(args, 1, "MAINT <seconds>")[0], MIN_MAINTENANCE_S,
                          MAX_MAINTENANCE_S, "seconds")
        self.check_idle()
        await self.send_json(_M, tag, {"maintenance": seconds})
        self.kiosk.stop_for_maintenance(seconds)
