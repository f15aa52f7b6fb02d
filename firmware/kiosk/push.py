# The WiFi push, device side (docs/wifi.md): an asyncio task that sends the unacknowledged
# responses to the `deskpulse serve` aggregator over HTTP/1.1 (plain, or TLS for an
# https:// server: kiosk/https.py), signed with the device key, and frees flash only for
# an answer whose signature it has verified.
#
# The survey comes first. Nothing here waits without yielding: the records are read and
# encoded by outbox.fill (a yield after every log read), every network step runs under
# asyncio with a timeout, and the answer is read into one fixed buffer. The one call that
# can block is the DNS lookup (socket.getaddrinfo blocks the whole loop on the ESP32,
# about 7 s per DNS server that does not answer: kiosk/resolve.py). So a request never
# looks the server's name up: it connects to the address kiosk.resolve.Resolver keeps,
# and the task's loop refreshes that address (run(), before a due push) only when it is
# missing, an hour old, or a connection to it failed, with a backoff after failed
# lookups. A server configured by IPv4 address is never looked up at all.
#
# Memory: one batch buffer (at most _BATCH_BYTES of records per request), one answer
# buffer and the HMAC pads are allocated once; a request allocates its status line only.
import asyncio
import binascii
import json
import random
import sys

from kiosk import batch, outbox, ticks
from kiosk.clock import EARLIEST_WALL, LATEST_WALL, SOURCE_HOST
from kiosk.config import is_ipv4
from kiosk.hmac import HmacSha256, same_hex
from micropython import const

CONTENT_TYPE = "application/vnd.deskpulse.batch"
_BATCH_BYTES = const(1024)  # records per request: ~250 typical ones; the contract allows 4096
_ANSWER_BYTES = const(1024)  # status line, headers and a JSON body of a few fields
_POLL_MS = const(500)
_STEP_TIMEOUT_MS = const(10000)  # connect, each write, each read of the answer
_ANSWER_TIMEOUT_MS = const(20000)  # the whole answer, however slowly it trickles in
_BASE_BACKOFF_MS = const(5000)
_MAX_BACKOFF_MS = const(600000)  # 10 minutes; also the pace of retries after a 4xx
_SOON_MS = const(1000)  # after a 409 replay: the next request has a higher nonce anyway
_CLOCK_SLACK_S = const(5)  # a host-set clock further off than this takes the server's time
_MAX_SHOWN = const(120)  # characters of a server's error sentence kept in the status
_KEY_BYTES = const(32)
_EHOSTUNREACH = const(113)  # the HAL's "WiFi not connected": no fault of the address


class PushError(Exception):
    """A push that did not free anything; its message goes to the status."""


class ConfigProblem(PushError):
    """Settings or a server refusal that retrying soon will not fix."""


class Unavailable(PushError):
    """A 5xx: the server's trouble, which passes. retry_after_ms is its Retry-After (0
    without one)."""

    def __init__(self, message, retry_after_ms=0):
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


def parse_url(url):
    """"http[s]://host[:port][/prefix]" -> (host, port, prefix without a trailing '/')."""
    if url.startswith("http://"):
        rest, port = url[7:], 80
    elif url.startswith("https://"):
        rest, port = url[8:], 443
    else:
        raise ConfigProblem("sync.server_url must start with http:// or https://")
    cut = rest.find("/")
    hostport, prefix = (rest, "") if cut < 0 else (rest[:cut], rest[cut:].rstrip("/"))
    host = hostport
    colon = hostport.rfind(":")
    if colon >= 0:
        host = hostport[:colon]
        text = hostport[colon + 1:]
        if not text.isdigit() or not 0 < int(text) < 65536:
            raise ConfigProblem("sync.server_url has a bad port %r" % text)
        port = int(text)
    if not host:
        raise ConfigProblem("sync.server_url has no host")
    if host.startswith("["):
        raise ConfigProblem("sync.server_url: IPv6 addresses are not supported; use an "
                            "IPv4 address or a name")
    if not is_ipv4(host):
        from kiosk.hostname import host_problem  # only for a name: most kiosks never load it

        problem = host_problem("the host of sync.server_url", host)
        if problem:
            raise ConfigProblem(problem)
    return host, port, prefix


def parse_key(text):
    """The 32-byte HMAC key from its 64 hex digits."""
    try:
        key = binascii.unhexlify(text)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise ConfigProblem("sync.device_key must be %d hex digits" % (2 * _KEY_BYTES))
    return key


class _Answer:
    __slots__ = ("code", "signature", "body", "retry_after_ms")

    def __init__(self, code, signature, body, retry_after_ms=0):
        self.code = code
        self.signature = signature
        self.body = body
        self.retry_after_ms = retry_after_ms


class Push:
    """Pushes kiosk.log to the server of kiosk.config["sync"] (an app.Kiosk, or anything
    with its .log, .clock, .config and .status()).

    connect(host, port) is a coroutine returning (reader, writer) asyncio streams, or
    raising OSError while the network is down (the HAL's open_connection); it is always
    given an IPv4 address. resolver keeps the server name's address: a
    kiosk.resolve.Resolver, made (and its module loaded) only for a server given by
    name."""

    def __init__(self, kiosk, connect=None, poll_ms=_POLL_MS, step_timeout_ms=_STEP_TIMEOUT_MS,
                 answer_timeout_ms=_ANSWER_TIMEOUT_MS, base_backoff_ms=_BASE_BACKOFF_MS,
                 max_backoff_ms=_MAX_BACKOFF_MS, batch_bytes=_BATCH_BYTES, resolver=None):
        self.kiosk = kiosk
        self._connect = connect or asyncio.open_connection
        self.resolver = resolver
        self.poll_ms = poll_ms
        self.step_timeout_ms = step_timeout_ms
        self.answer_timeout_ms = answer_timeout_ms
        self.base_backoff_ms = base_backoff_ms
        self.max_backoff_ms = max_backoff_ms
        self.batch_bytes = max(batch.MIN_BUDGET, batch_bytes)
        self._buf = bytearray(batch.HEADER_ROOM + self.batch_bytes + batch.MAX_RECORD)
        self._enc = batch.BatchEncoder(self._buf, batch.HEADER_ROOM)
        self._answer = bytearray(_ANSWER_BYTES)
        self._answer_mv = memoryview(self._answer)
        self._mac = None
        self._mac_source = None  # the key text self._mac was made from
        self._tls = None  # a kiosk.https.Verifier, for an https:// server only
        self.count = 0  # nonce count in this boot: one per request, retries included
        self.state = "idle"
        self.pending = 0
        self.attempts = 0
        self.pushes = 0  # verified, acknowledged requests
        self.freed = 0  # records this path acknowledged
        self.failures = 0  # in a row since the last success
        self.failures_total = 0
        self.backoff_ms = 0  # the delay chosen after the last failure
        self.max_backoff_ms_seen = 0
        self.last_error = None
        self.config_problem = None
        self.last_ok_uptime_s = None
        self.last_ok_wall = None
        self._retry_at = None  # ticks before which no attempt starts (after a failure)
        self._since = None  # ticks when records were first seen waiting
        self._last_code = 0
        # Config over the air (kiosk/ota.py, loaded only while it fetches): the version a
        # verified answer named, when it differs from the one running; its status.
        self.desired_config = None
        self.ota = None
        self.report_due = False  # a push goes out, records or not, to report the config

    # -- status ----------------------------------------------------------------------
    def status(self):
        """For kiosk.status(): counters and the last error, never a key or password."""
        retry_in_ms = 0
        if self._retry_at is not None:
            retry_in_ms = max(0, ticks.diff(self._retry_at, self.kiosk.clock.ticks_ms()))
        return {
            "state": self.state,
            "pending": self.pending,
            "attempts": self.attempts,
            "pushes": self.pushes,
            "freed": self.freed,
            "failures": self.failures,
            "failures_total": self.failures_total,
            "backoff_ms": self.backoff_ms,
            "max_backoff_ms": self.max_backoff_ms_seen,
            "retry_in_ms": retry_in_ms,
            "last_ok_uptime_s": self.last_ok_uptime_s,
            "last_ok_wall": self.last_ok_wall,
            "last_error": self.last_error,
            "config_problem": self.config_problem,
            "nonce": "%d.%d" % (self.kiosk.clock.boot, self.count),
            "dns": None if self.resolver is None else self.resolver.status(),
            "config": self.ota,
        }

    # -- the task --------------------------------------------------------------------
    async def run(self):
        sleep_ms = asyncio.sleep_ms
        while True:
            await sleep_ms(self.poll_ms)
            while self.due():
                self.refresh_address()
                if not await self.push_once():
                    break
                await sleep_ms(0)  # more records wait: next batch, after the survey's turn
            if self.desired_config is not None:
                await self.fetch_config()

    async def fetch_config(self):
        """Fetch the config the last answer named, once: a failed fetch is tried again
        after the next push that names it, a refused config not at all (kiosk/ota.py)."""
        desired = self.desired_config
        self.desired_config = None
        import kiosk

        try:
            from kiosk import ota

            await ota.fetch(self, desired)
        finally:
            # Fetches are rare: the module's code (in RAM unless frozen) goes until the next.
            sys.modules.pop("kiosk.ota", None)
            if hasattr(kiosk, "ota"):
                delattr(kiosk, "ota")

    def refresh_address(self):
        """Look the server's name up if its address is missing, stale or failed (and its
        backoff allows). The only place the push resolves: it blocks while DNS does not
        answer, so it runs in this task's loop, never in a request, and does nothing at
        all while the cached address is fresh or the server is given by address."""
        resolver = self.resolver
        if resolver is None:
            try:
                host = parse_url(self.kiosk.config["sync"]["server_url"])[0]
            except ConfigProblem:
                return  # push_once reports it
            if is_ipv4(host):
                return
            resolver = self._resolver(host)
        resolver.refresh()

    def _resolver(self, host):
        """The resolver, made (and its module loaded) for the first name; host is kept
        in it for refresh(). A name set later by a CONFIG upload joins it at the first
        request, which then fails once, "no address yet", until refresh() ran."""
        resolver = self.resolver
        if resolver is None:
            from kiosk.resolve import Resolver

            resolver = self.resolver = Resolver(self.kiosk.clock.ticks_ms)
        resolver.address(host)
        return resolver

    def due(self):
        """Whether to send now: records wait and either enough of them do, or the oldest
        has waited push_interval_s, or a retry's time has come."""
        clock = self.kiosk.clock
        now = clock.ticks_ms()
        if self._retry_at is not None and ticks.diff(now, self._retry_at) < 0:
            return False
        self.pending = pending = self.kiosk.log.counts()[1]
        if not pending:
            self._since = None
            return self.report_due
        if self._retry_at is not None:
            return True
        sync = self.kiosk.config["sync"]
        interval_ms = sync["push_interval_s"] * 1000
        if self._since is None:
            # A new record is seen at most one poll after it was stored; records left from
            # an earlier boot have waited long enough already.
            _, first_boot = outbox.first_seq(self.kiosk.log)
            old = first_boot is not None and first_boot < clock.boot
            self._since = ticks.add(now, -(interval_ms if old else self.poll_ms))
        if pending >= sync["push_min_pending"]:
            return True
        return ticks.diff(now, self._since) >= interval_ms

    async def push_once(self):
        """One request. Returns True when it succeeded and more records wait."""
        self.attempts += 1
        self.state = "pushing"
        try:
            more = await self._request()
        except ConfigProblem as e:
            self._failed(str(e), self.max_backoff_ms, config=True)
            return False
        except _Soon as e:
            self._failed(str(e), _SOON_MS)
            return False
        except Unavailable as e:
            self._failed(str(e), self._backoff(e.retry_after_ms))
            return False
        except PushError as e:
            self._failed(str(e), self._backoff())
            return False
        except Exception as e:  # network errors, timeouts, a malformed answer
            self._failed("%s: %s" % (type(e).__name__, e), self._backoff())
            return False
        self._succeeded()
        return more

    def _backoff(self, at_least_ms=0):
        # Exponential, with "equal jitter": half the step fixed, half random, so that
        # kiosks that lost the server together do not all come back at the same moment.
        # A server's Retry-After lengthens the delay, never beyond the cap.
        step = min(self.max_backoff_ms, self.base_backoff_ms << min(self.failures, 16))
        half = step // 2
        delay = half + random.getrandbits(20) % (half + 1)
        return max(delay, min(at_least_ms, self.max_backoff_ms))

    def _failed(self, error, delay_ms, config=False):
        self.failures += 1
        self.failures_total += 1
        self.last_error = error[:_MAX_SHOWN]
        self.config_problem = self.last_error if config else None
        self.backoff_ms = delay_ms
        if delay_ms > self.max_backoff_ms_seen:
            self.max_backoff_ms_seen = delay_ms
        self._retry_at = ticks.add(self.kiosk.clock.ticks_ms(), delay_ms)
        self.state = "backoff"

    def _succeeded(self):
        clock = self.kiosk.clock
        self.pushes += 1
        self.report_due = False
        self.failures = 0
        self.backoff_ms = 0
        self.config_problem = None
        self._retry_at = None
        self._since = None
        self.last_ok_uptime_s = clock.uptime_s()
        self.last_ok_wall = clock.wall() or None
        self.state = "idle"

    # -- one request -----------------------------------------------------------------
    def _settings(self):
        kiosk = self.kiosk
        sync = kiosk.config["sync"]
        device_id = kiosk.config["device_id"]
        if not device_id or not sync["server_url"] or not sync["device_key"]:
            raise ConfigProblem("push needs device_id, sync.server_url and sync.device_key")
        host, port, prefix = parse_url(sync["server_url"])
        if self._mac_source != sync["device_key"]:
            self._mac = HmacSha256(parse_key(sync["device_key"]))
            self._mac_source = sync["device_key"]
        path = "%s/v1/devices/%s/batches" % (prefix, device_id)
        return host, port, path.encode(), device_id.encode()

    def _address(self, host):
        """The address to connect to, without a lookup (see refresh_address)."""
        if is_ipv4(host):
            return host
        resolver = self._resolver(host)
        address = resolver.address(host)
        if address is None:
            raise PushError(resolver.error(host) or "no address for %s yet" % host)
        return address

    def _key(self):
        mac = self._mac
        if mac is None:
            raise ConfigProblem("no device key")
        return mac

    async def _request(self):
        host, port, path, device_id = self._settings()
        address = self._address(host)
        kiosk = self.kiosk
        log = kiosk.log
        clock = kiosk.clock
        offset, length, more, last = await outbox.fill(log, self._enc, log.acked_upto + 1,
                                                       self.batch_bytes)
        nonce = self.next_nonce()
        status, anchors, _ = outbox.status_and_anchors(kiosk)
        line = json.dumps({"status": status, "anchors": anchors, "boot": clock.boot,
                           "uptime_s": clock.uptime_s()}).encode()
        status = anchors = None
        records = memoryview(self._buf)[offset:offset + length]
        head = self.signed_head(host, port, path, device_id, nonce, CONTENT_TYPE, line, records)
        answer = await self._exchange(host, address, port, head, line, records)
        records = None
        return self._handle(answer, nonce, last) and more

    def signed_head(self, host, port, path, device_id, nonce, content_type, line, records):
        """The request head of a POST whose body is line, b"\n" and records, signed with
        the device key (docs/wifi.md)."""
        mac = self._key()
        mac.begin()
        mac.update(b"DP1\nPOST\n")
        mac.update(path)
        mac.update(b"\n")
        mac.update(device_id)
        mac.update(b"\n")
        mac.update(nonce)
        mac.update(b"\n")
        mac.update(line)
        mac.update(b"\n")
        mac.update(records)
        signature = mac.hexdigest()
        host_header = host if port == 80 else "%s:%d" % (host, port)
        return ("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "X-DeskPulse-Nonce: %s\r\nX-DeskPulse-Signature: %s\r\nConnection: close\r\n\r\n"
                % (path.decode(), host_header, content_type, len(line) + 1 + len(records),
                   nonce.decode(), signature.decode())).encode()

    def next_nonce(self):
        """The nonce of a new request: every request, retries included, takes the next."""
        self.count += 1
        return ("%d.%d" % (self.kiosk.clock.boot, self.count)).encode()

    async def _exchange(self, host, address, port, head, line, records, read=None):
        """Send the request; the answer as read(reader) gives it (default: _read_answer,
        into the fixed answer buffer)."""
        wait_for_ms = asyncio.wait_for_ms
        step = self.step_timeout_ms
        writer = None
        opening = self._open(host, address, port)
        try:
            try:
                reader, writer = await wait_for_ms(opening, step)
                # A non-blocking connect reports a refusal at the first write: both mean
                # "the address did not take the request".
                writer.write(head)
                await wait_for_ms(writer.drain(), step)
                writer.write(line)
                writer.write(b"\n")
                writer.write(records)
                await wait_for_ms(writer.drain(), step)
            except Exception as e:
                # The name may point elsewhere now (a new DHCP lease): look it up again,
                # in time. WiFi being down says nothing about the address.
                resolver = self.resolver
                if resolver is not None and getattr(e, "errno", 0) != _EHOSTUNREACH:
                    resolver.connect_failed(host)
                raise
            return await wait_for_ms((read or self._read_answer)(reader),
                                     self.answer_timeout_ms)
        finally:
            if writer is not None:
                writer.close()  # MicroPython's streams close the socket in wait_closed
                try:
                    await wait_for_ms(writer.wait_closed(), step)
                except Exception:
                    pass

    def _open(self, host, address, port):
        """The coroutine that connects: the HAL's plain streams, or for an https:// server
        TLS over them, verified against sync.server_cert (kiosk/https.py, loaded only
        then). Raises at once when TLS cannot verify the server yet."""
        sync = self.kiosk.config["sync"]
        if not sync["server_url"].startswith("https://"):
            return self._connect(address, port)
        if not self.kiosk.clock.known():
            # mbedTLS checks the certificate's dates against the RTC, at its epoch (2000)
            # after a power-on: every certificate would be "not valid yet".
            raise PushError("https waits for the clock (NTP, a clock chip or a serial "
                            "sync) to check the server certificate's dates")
        verifier = self._tls
        if verifier is None:
            from kiosk.https import Verifier

            verifier = self._tls = Verifier()
        try:
            verifier.context(sync["server_cert"])
        except ValueError as e:
            raise ConfigProblem(str(e))
        return verifier.open(self._connect, address, port, host, sync["server_cert"])

    async def _read_answer(self, reader):
        """Status code, signature header and body of the answer, read into the fixed
        answer buffer: an answer that does not fit is an error, not a bigger buffer."""
        buf = self._answer
        mv = self._answer_mv
        step = self.step_timeout_ms
        got = 0
        head_end = -1
        length = -1
        while True:
            if got == len(buf):
                raise PushError("answer longer than %d bytes" % len(buf))
            n = await asyncio.wait_for_ms(reader.readinto(mv[got:]), step)
            if n is None:
                continue  # TLS: part of a record came, not yet a byte of the answer
            if not n:
                break  # closed by the server (Connection: close)
            got += n
            if head_end < 0:
                head_end = bytes(mv[:got]).find(b"\r\n\r\n")
                if head_end >= 0:
                    length = content_length(buf, head_end)
            if head_end >= 0 and length >= 0 and got >= head_end + 4 + length:
                break
        if head_end < 0:
            raise PushError("answer cut short after %d bytes" % got)
        end = got if length < 0 else head_end + 4 + length
        if end > got:
            raise PushError("answer body cut short")
        code, signature, retry_after_ms = head_fields(mv, head_end)
        return _Answer(code, signature, bytes(mv[head_end + 4:end]), retry_after_ms)

    def _handle(self, answer, nonce, last):
        """Act on the answer; True when records were acknowledged as expected."""
        code = answer.code
        previous = self._last_code
        self._last_code = code
        if code != 200:
            reason = error_sentence(answer.body)
            if code == 409 and previous != 409:
                # A replay refused (the server saw a higher nonce, e.g. from before a power
                # cut in the same boot): the next request carries a higher one anyway.
                raise _Soon("409: %s" % reason)
            if 400 <= code < 500 and code != 409:
                raise ConfigProblem("server refused the push (%d): %s" % (code, reason))
            if code >= 500:
                raise Unavailable("server answered %d: %s" % (code, reason),
                                  answer.retry_after_ms)
            raise PushError("server answered %d: %s" % (code, reason))
        mac = self._key()
        mac.begin()
        mac.update(b"DP1 ack\n")
        mac.update(nonce)
        mac.update(b"\n")
        mac.update(answer.body)
        if answer.signature is None or not same_hex(mac.hexdigest(), answer.signature):
            raise PushError("answer signature does not match: nothing freed")
        try:
            reply = json.loads(answer.body)
            acked = reply["acked"]
        except (ValueError, KeyError, TypeError):
            raise PushError("signed answer without 'acked'")
        log = self.kiosk.log
        if acked is not None:
            if not isinstance(acked, int) or acked < 0 or acked > last:
                raise PushError("server acknowledged %r, beyond the batch's last %d"
                                % (acked, last))
            before = log.acked_upto
            log.ack(acked)  # as the serial ACK: an older upto changes nothing
            if log.acked_upto > before:
                self.freed += log.acked_upto - before
        self._maybe_set_clock(reply.get("time"))
        desired = reply.get("config")
        if isinstance(desired, int) and desired != self.kiosk.config["version"]:
            self.desired_config = desired
        return True

    def _maybe_set_clock(self, wall):
        if isinstance(wall, float) and EARLIEST_WALL <= wall <= LATEST_WALL:
            wall = int(wall)  # NaN and infinities fail the range: they stay floats, ignored
        # Out of range (see kiosk.clock): a server with a wrong clock changes nothing.
        if not isinstance(wall, int) or not EARLIEST_WALL <= wall <= LATEST_WALL:
            return
        clock = self.kiosk.clock
        # Only when nothing better set it: NTP and a clock chip are more exact than the
        # server's clock plus a network round trip.
        if not clock.source or (clock.source == SOURCE_HOST
                                and abs(clock.wall() - wall) > _CLOCK_SLACK_S):
            clock.set_wall(wall, SOURCE_HOST)


class _Soon(PushError):
    pass


def head_fields(buf, head_end):
    """(status code, X-DeskPulse-Signature or None, Retry-After in ms) of the answer head
    buf[:head_end]."""
    lines = bytes(buf[:head_end]).decode().split("\r\n")
    words = lines[0].split(" ", 2)
    if len(words) < 2 or not words[0].startswith("HTTP/1.") or not words[1].isdigit():
        raise PushError("not an HTTP answer")
    signature = None
    retry_after_ms = 0
    for header in lines[1:]:
        colon = header.find(":")
        if colon <= 0:
            continue
        name = header[:colon].strip().lower()
        if name == "x-deskpulse-signature":
            signature = header[colon + 1:].strip()
        elif name == "retry-after":
            retry_after_ms = _retry_after_ms(header[colon + 1:].strip())
    return int(words[1]), signature, retry_after_ms


def content_length(buf, head_end):
    """Content-Length from the header block buf[:head_end], or -1 without one."""
    head = bytes(buf[:head_end]).lower()
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return -1
    start = at + 17
    stop = head.find(b"\r\n", start)
    text = head[start:] if stop < 0 else head[start:stop]
    text = text.strip()
    if not text.isdigit():
        raise PushError("bad Content-Length in the answer")
    return int(text)


def _retry_after_ms(text):
    """Retry-After in seconds as milliseconds; 0 for a date or anything else (the
    deskpulse server sends seconds)."""
    if not text.isdigit() or len(text) > 7:
        return 0
    return int(text) * 1000


def error_sentence(body):
    try:
        return str(json.loads(body)["error"])[:_MAX_SHOWN]
    except Exception:
        return "(no error sentence)"
