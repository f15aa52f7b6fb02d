"""Name lookups that never hold up the survey: firmware/kiosk/resolve.py on the real
MicroPython interpreter, with a stand-in getaddrinfo that counts, fails or hangs (a DNS
server that stopped answering) and a fake clock that wraps like the ESP32's ticks."""

from __future__ import annotations

from conftest import mpy_json

TTL_MS = 3_600_000
RETRY_MS = 30_000
RECHECK_MS = 60_000

# A resolver over a stand-in DNS. `dns` holds what the next lookups answer: an address,
# or an error. Each step of the scenario emits (lookups so far, address, error).
SCENARIO = """
from harness import FakeTicks, emit
from kiosk.resolve import Resolver

clock = FakeTicks(before_wrap_ms=90000)  # the TTL and backoffs run across the wrap
dns = {"answer": "10.0.0.5"}
asked = []

def getaddrinfo(host, port, family, kind):
    asked.append(host)
    answer = dns["answer"]
    if isinstance(answer, int):
        raise OSError(answer)
    return [(family, kind, 0, "", (answer, port))]

r = Resolver(clock, getaddrinfo)
NAME = "deskpulse.store.lan"

def step(label, calls=3):
    looked = 0
    for _ in range(calls):  # the network task's rounds: only the first may look up
        looked += r.refresh()
    emit([label, looked, len(asked), r.address(NAME), r.error(NAME)])

emit(["ip", r.address("192.168.1.20"), r.refresh(), len(asked)])
emit(["before", r.address(NAME), len(asked)])   # nothing looked up on the asking path
step("first")
clock.advance(TTL_MS - 1)
step("fresh")
clock.advance(1)
dns["answer"] = "10.0.0.6"
step("ttl")                                      # one lookup per TTL: the new address
dns["answer"] = -3                               # the DNS server stops answering
clock.advance(TTL_MS)
step("dead")                                     # the old address stays in use
for wait in (RETRY_MS - 1, 1, 2 * RETRY_MS, 4 * RETRY_MS):
    clock.advance(wait)
    step("retry %d" % wait)
dns["answer"] = "10.0.0.7"
clock.advance(8 * RETRY_MS)
step("back")
r.connect_failed(NAME)                           # the server moved (a new DHCP lease)
step("failed at once")
clock.advance(RECHECK_MS)
step("recheck")
r.connect_failed(NAME)
clock.advance(RECHECK_MS)
step("recheck again")
emit(["status", r.status(), r.lookups, r.lookup_failures])
""".replace("TTL_MS", str(TTL_MS)).replace("RETRY_MS", str(RETRY_MS)).replace(
    "RECHECK_MS", str(RECHECK_MS))


def test_a_name_is_looked_up_once_per_ttl_backs_off_and_keeps_its_last_address() -> None:
    rows = {row[0]: row[1:] for row in mpy_json(SCENARIO)}
    # An IPv4 address is its own answer: no lookup, ever.
    assert rows["ip"] == ["192.168.1.20", 0, 0]
    # Asking for an address never looks it up: the network task's refresh() does.
    assert rows["before"] == [None, 0]
    assert rows["first"] == [1, 1, "10.0.0.5", None]
    assert rows["fresh"] == [0, 1, "10.0.0.5", None]  # within the TTL: no lookup
    assert rows["ttl"] == [1, 2, "10.0.0.6", None]
    looked, total, address, error = rows["dead"]
    assert (looked, total, address) == (1, 3, "10.0.0.6") and "-3" in error
    # Backoff after failed lookups: 30 s, then 60 s, 120 s, ... (one lookup each).
    assert rows[f"retry {RETRY_MS - 1}"][:3] == [0, 3, "10.0.0.6"]
    assert rows["retry 1"][:3] == [1, 4, "10.0.0.6"]
    assert rows[f"retry {2 * RETRY_MS}"][:3] == [1, 5, "10.0.0.6"]
    assert rows[f"retry {4 * RETRY_MS}"][:3] == [1, 6, "10.0.0.6"]
    assert rows["back"] == [1, 7, "10.0.0.7", None]
    # A failed connection asks for a lookup, but not sooner than a minute after the last.
    assert rows["failed at once"] == [0, 7, "10.0.0.7", None]
    assert rows["recheck"] == [1, 8, "10.0.0.7", None]
    assert rows["recheck again"] == [1, 9, "10.0.0.7", None]
    status, lookups, failures = rows["status"]
    assert status == {"deskpulse.store.lan": {"address": "10.0.0.7", "failures": 0,
                                              "error": None}}
    assert (lookups, failures) == (9, 4)
