# SNTP (RFC 4330) without blocking the loop, and the keeper that decides when to ask.
#
# query(): one request. MicroPython's ntptime waits on a blocking socket for up to a
# second; this sends the request on a non-blocking UDP socket and polls for the answer
# between asyncio sleeps. It takes an address: the keeper looks the server's name up
# through a kiosk.resolve.Resolver, rarely, and never on the input path (getaddrinfo
# of an IPv4 address asks no DNS server and returns at once).
#
# Keeper: the HAL's network task calls link_up() when WiFi comes up and step() every
# round. It queries the configured server (config sync.ntp_server; "" turns NTP off)
# at once after a (re)connection and every 6 h, backing off after failures (1 min,
# doubling, up to 6 h), and skips the query while the clock was set by a host in the
# last 6 h: a serial sync's TIME or a push answer's time (anchor source host), so a
# store whose network blocks NTP or DNS does not pay for either (docs/wifi.md, "Clock").
import asyncio
import socket
import struct

from kiosk import ticks
from kiosk.clock import EARLIEST_WALL, LATEST_WALL, SOURCE_HOST, SOURCE_NTP
from kiosk.resolve import Resolver
from micropython import const

DEFAULT_SERVER = "pool.ntp.org"

_NTP_TO_UNIX = const(2208988800)  # seconds from 1900-01-01 to 1970-01-01
_ERA = 0x100000000  # NTP seconds wrap in 2036: values below 2**31 are the next era
_POLL_MS = const(20)
_EVERY_MS = const(21600000)  # 6 h: the crystal drifts about a second a day
_RETRY_MS = const(60000)  # after a failed query; doubles each time, up to _EVERY_MS
_FRESH_S = const(21600)  # a host's setting younger than this makes NTP unnecessary
_MAX_SHOWN = const(80)


async def query(address, ticks_ms, port=123, timeout_ms=2000):
    """Unix seconds from the NTP server at address (an IPv4 address: a name would be
    looked up here, blocking); raises OSError on no or a bad answer."""
    # For an address getaddrinfo only packs it (the unix port needs the packed form).
    addr = socket.getaddrinfo(address, port, 0, socket.SOCK_DGRAM)[0][-1]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.setblocking(False)
        request = bytearray(48)
        request[0] = 0x23  # leap 0, version 4, mode 3 (client)
        s.sendto(request, addr)
        start = ticks_ms()
        while True:
            try:
                answer = s.recv(48)
                break
            except OSError:  # EAGAIN: nothing yet
                if ticks.diff(ticks_ms(), start) > timeout_ms:
                    raise OSError(110, "no NTP answer")  # ETIMEDOUT
                await asyncio.sleep_ms(_POLL_MS)
    finally:
        s.close()
    if len(answer) < 48 or answer[0] & 7 != 4 or not answer[1]:
        raise OSError(22, "not an NTP server answer")  # mode 4, stratum 1..15 (0: kiss)
    seconds = struct.unpack_from("!I", answer, 40)[0]  # transmit timestamp, seconds
    if seconds < 0x80000000:
        seconds += _ERA
    wall = seconds - _NTP_TO_UNIX
    if not EARLIEST_WALL <= wall <= LATEST_WALL:
        # A server that lost its own time answers 1900 or 2036; Clock.set_wall would
        # refuse it anyway, this says why.
        raise OSError(22, "NTP time %d is outside 2000-2100" % wall)
    return wall


class Keeper:
    """When to ask the NTP server, and asking it: see the top of this module.

    clock is the kiosk's kiosk.clock.Clock; server the config's sync.ntp_server (a name,
    an IPv4 address, or "" for no NTP); resolver a kiosk.resolve.Resolver (one of its
    own by default); query the coroutine above (tests pass a stand-in)."""

    def __init__(self, clock, server=DEFAULT_SERVER, port=123, resolver=None,
                 every_ms=_EVERY_MS, retry_ms=_RETRY_MS, fresh_s=_FRESH_S, query_fn=None):
        self.clock = clock
        self.server = server
        self.port = port
        self.resolver = resolver or Resolver(clock.ticks_ms)
        self.every_ms = every_ms
        self.retry_ms = retry_ms
        self.fresh_s = fresh_s
        self._query = query_fn or query
        self._due = None  # ticks when the next query is due; None until the link is up
        self.queries = 0
        self.skipped = 0  # due queries skipped because a host set the clock recently
        self.failures = 0  # in a row
        self.error = None

    def link_up(self):
        """WiFi (re)connected: ask at once, unless a host set the clock recently or
        failed queries are backing off (a link that comes and goes must not cost a
        query each time)."""
        if self._due is None or not self.failures:
            self._due = self.clock.ticks_ms()

    def _host_set_age_s(self):
        """Seconds since a host (serial TIME or push answer) last set the clock in this
        boot, or None when none did."""
        clock = self.clock
        boot = clock.boot
        for anchor in reversed(clock.anchors):
            if anchor[0] != boot:
                return None  # the journal is in order: older boots follow
            if anchor[3] == SOURCE_HOST:
                return clock.uptime_s() - anchor[1]
        return None

    async def step(self):
        """Query the server if it is due; never raises. The one blocking call is the
        name lookup, through the resolver: once per its TTL, or after a failure."""
        if not self.server or self._due is None:
            return
        clock = self.clock
        now = clock.ticks_ms()
        if ticks.diff(now, self._due) < 0:
            return
        age_s = self._host_set_age_s()
        if age_s is not None and age_s < self.fresh_s:
            # A host's time is recent enough; look again when it no longer is.
            self.skipped += 1
            self._due = ticks.add(now, (self.fresh_s - age_s) * 1000)
            return
        resolver = self.resolver
        server = self.server
        address = resolver.address(server)
        if address is None or resolver.due(server):
            resolver.refresh()  # blocks while DNS does not answer: this is a network task
            address = resolver.address(server)
        if address is None:
            self._failed(resolver.error(server) or "cannot resolve %s" % server, now)
            return
        self.queries += 1
        try:
            wall = await self._query(address, clock.ticks_ms, self.port)
            clock.set_wall(wall, SOURCE_NTP)
        except (OSError, ValueError) as error:
            if address != server:
                resolver.connect_failed(server)  # the pool may have moved on
            self._failed("%s: %s" % (type(error).__name__, error), now)
            return
        self.failures = 0
        self.error = None
        self._due = ticks.add(now, self.every_ms)

    def _failed(self, error, now):
        self.failures += 1
        self.error = error[:_MAX_SHOWN]
        step = min(self.every_ms, self.retry_ms << min(self.failures - 1, 16))
        self._due = ticks.add(now, step)

    def status(self):
        """For the HAL's network_status(): server, counters, the last error and when the
        next query is due (seconds, None before the link came up)."""
        due_in_s = None
        if self._due is not None:
            due_in_s = max(0, ticks.diff(self._due, self.clock.ticks_ms())) // 1000
        return {"server": self.server, "queries": self.queries, "skipped": self.skipped,
                "failures": self.failures, "error": self.error, "due_in_s": due_in_s}
