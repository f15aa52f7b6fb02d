# Host names to IPv4 addresses, looked up rarely and never on the input path
# (docs/wifi.md, "Names and addresses").
#
# socket.getaddrinfo cannot be made to wait less. On the ESP32 port it calls lwIP's
# lwip_getaddrinfo with no timeout of its own (micropython ports/esp32/modsocket.c,
# _getaddrinfo_inner); lwIP asks each DNS server DNS_MAX_RETRIES (4) times, 1+1+2+3 s
# apart, about 7 s per server before it gives up (esp-lwip src/core/dns.c,
# dns_check_entry). The whole asyncio loop, button and touch polling included, stands
# still meanwhile. So a name is looked up here only:
#   - from refresh(), which only network tasks call (the push task, the NTP keeper in the
#     HAL's network task), never a button, touch or display path;
#   - when its address is missing, older than ttl_ms (1 h), or a connection to it failed
#     (then no sooner than recheck_ms after the last lookup);
#   - after a failed lookup, no sooner than retry_ms, doubling up to max_retry_ms.
# A name that stops resolving keeps its last good address: a dead DNS server costs one
# blocked lookup per backoff step, and pushes go on to the address that still works.
# An IPv4 address ("192.168.1.20") is its own address and is never looked up.
import socket

from kiosk import ticks
from kiosk.config import is_ipv4
from micropython import const

_TTL_MS = const(3600000)  # 1 h: a LAN server's DHCP lease, or the NTP pool's rotation
_RETRY_MS = const(30000)  # first retry after a failed lookup; doubles each time
_MAX_RETRY_MS = const(3600000)
_RECHECK_MS = const(60000)  # a failed connection asks for a lookup no sooner than this
_MAX_SHOWN = const(80)

# Entry fields (a list per name, allocated once per name).
_ADDRESS = const(0)  # the last good address, or None
_DUE = const(1)  # ticks when the next lookup is due, or None: due now
_FAILURES = const(2)  # failed lookups in a row
_ERROR = const(3)  # the last lookup's error, or None after a success
_LOOKED = const(4)  # ticks of the last lookup, or None before the first
_SOONER = const(5)  # ticks to look up again after a failed connection, or None


def _address_of(info):
    """The dotted address of getaddrinfo's first answer: the ESP32 port gives
    ("a.b.c.d", port); the unix port a struct sockaddr_in as bytes (family, port,
    then the four address bytes)."""
    sockaddr = info[0][-1]
    if isinstance(sockaddr, tuple):
        return sockaddr[0]
    return "%d.%d.%d.%d" % (sockaddr[4], sockaddr[5], sockaddr[6], sockaddr[7])


class Resolver:
    """The last good address of each name asked for, refreshed by refresh() only.

    getaddrinfo(host, port, family, type) is socket.getaddrinfo unless given (tests pass
    a stand-in that hangs, counts or fails)."""

    def __init__(self, ticks_ms, getaddrinfo=None, ttl_ms=_TTL_MS, retry_ms=_RETRY_MS,
                 max_retry_ms=_MAX_RETRY_MS, recheck_ms=_RECHECK_MS):
        self._ticks_ms = ticks_ms
        self._getaddrinfo = getaddrinfo
        self.ttl_ms = ttl_ms
        self.retry_ms = retry_ms
        self.max_retry_ms = max_retry_ms
        self.recheck_ms = recheck_ms
        self._names = {}
        self.lookups = 0  # getaddrinfo calls for names, in all
        self.lookup_failures = 0

    def address(self, host):
        """host's address without waiting: host itself for an IPv4 address, else the last
        good one (also past its TTL), or None before a lookup succeeded. The name is then
        kept for refresh()."""
        if is_ipv4(host):
            return host
        entry = self._names.get(host)
        if entry is None:
            entry = [None, None, 0, None, None, None]
            self._names[host] = entry
        return entry[_ADDRESS]

    def error(self, host):
        """Why host has no address yet, or None."""
        entry = self._names.get(host)
        return None if entry is None else entry[_ERROR]

    def connect_failed(self, host):
        """A connection to host's cached address failed: the address may have changed,
        so look the name up again, though no sooner than recheck_ms after the last
        lookup (a server that is simply down must not cost a lookup per attempt)."""
        entry = self._names.get(host)
        if entry is None or entry[_LOOKED] is None or entry[_ADDRESS] is None:
            return
        entry[_SOONER] = ticks.add(entry[_LOOKED], self.recheck_ms)

    def _due_at(self, entry):
        due = entry[_DUE]
        sooner = entry[_SOONER]
        if due is None or sooner is None:
            return due
        return sooner if ticks.diff(sooner, due) < 0 else due

    def due(self, host=None):
        """Whether refresh() would look host (or any name) up now."""
        now = self._ticks_ms()
        for name, entry in self._names.items():
            if host is not None and name != host:
                continue
            due = self._due_at(entry)
            if due is None or ticks.diff(now, due) >= 0:
                return True
        return False

    def refresh(self, limit=1):
        """Look up at most `limit` names that are due; the number looked up.

        BLOCKS the whole asyncio loop for as long as getaddrinfo takes (about 7 s per DNS
        server that does not answer): call it only from a network task."""
        done = 0
        for host, entry in self._names.items():
            if done >= limit:
                break
            now = self._ticks_ms()
            due = self._due_at(entry)
            if due is not None and ticks.diff(now, due) < 0:
                continue
            done += 1
            self._look_up(host, entry)
        return done

    def _look_up(self, host, entry):
        getaddrinfo = self._getaddrinfo or socket.getaddrinfo
        self.lookups += 1
        try:
            address = _address_of(getaddrinfo(host, 80, socket.AF_INET, socket.SOCK_STREAM))
            if not is_ipv4(address):
                raise OSError(22, "not an IPv4 address: %s" % address)
        except Exception as e:  # OSError(-2) and friends; a stand-in's anything
            self.lookup_failures += 1
            now = self._ticks_ms()
            failures = entry[_FAILURES] + 1
            entry[_FAILURES] = failures
            entry[_ERROR] = ("cannot resolve %s: %s" % (host, e))[:_MAX_SHOWN]
            entry[_LOOKED] = now
            entry[_SOONER] = None
            step = min(self.max_retry_ms, self.retry_ms << min(failures - 1, 16))
            entry[_DUE] = ticks.add(now, step)
            return
        now = self._ticks_ms()  # after the lookup, however long it took
        entry[_ADDRESS] = address
        entry[_FAILURES] = 0
        entry[_ERROR] = None
        entry[_LOOKED] = now
        entry[_SOONER] = None
        entry[_DUE] = ticks.add(now, self.ttl_ms)

    def status(self):
        """{name: {"address", "failures", "error"}} for the status: never a secret."""
        out = {}
        for host, entry in self._names.items():
            out[host] = {"address": entry[_ADDRESS], "failures": entry[_FAILURES],
                         "error": entry[_ERROR]}
        return out
