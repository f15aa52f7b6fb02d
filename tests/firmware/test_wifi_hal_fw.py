"""The ESP32 hardware layer's WiFi task and the SNTP query, on the real MicroPython
interpreter with stand-ins for `machine` and `network` (no radio here), and a real UDP
NTP stand-in in this process."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import mpy_json
from ntpserver import NtpServer
from test_typecheck import FAKE_MACHINE


@pytest.fixture
def ntp_server() -> Iterator[NtpServer]:
    """Answers each SNTP request with the current time."""
    with NtpServer() as server:
        yield server


WIFI = FAKE_MACHINE + """
import asyncio
from kiosk import ticks

class WLAN:
    made = []
    def __init__(self, interface):
        self.interface = interface
        self.up = False
        self.active_calls = []
        self.connects = []
        WLAN.made.append(self)
    def active(self, on=None):
        self.active_calls.append(on)
    def isconnected(self):
        return self.up
    def connect(self, ssid, password):
        self.connects.append(ssid)
    def ifconfig(self):
        return ("10.0.0.7", "255.255.255.0", "10.0.0.1", "10.0.0.1")

class network:
    STA_IF = 0
    WLAN = WLAN

sys.modules["network"] = network

class FakeClock:
    boot = 1
    def __init__(self):
        self.now = 1000
        self.set = []
        self.anchors = []  # what the NTP keeper reads: no host set this clock
    def ticks_ms(self):
        return self.now
    def uptime_s(self):
        return self.now // 1000
    def set_wall(self, wall, source):
        self.set.append([wall, source])

hal = Esp32Hal({"name": "t", "buttons": [{"pin": 32}]})
hal.ntp_port = NTP_PORT
clock = FakeClock()

async def refused():
    try:
        await hal.open_connection("127.0.0.1", 9)
    except OSError as e:
        return e.errno
    return None

async def main():
    out("before", await refused())
    task = asyncio.create_task(hal.network_run({"wifi_ssid": "store", "wifi_password": "pw",
                                                "ntp_server": "127.0.0.1"}, clock))
    await asyncio.sleep_ms(10)
    wlan = WLAN.made[0]
    out("started", wlan.interface, wlan.active_calls, wlan.connects, await refused())
    clock.now += 5000  # under the retry time: no new connect()
    await asyncio.sleep_ms(2100)
    out("waiting", wlan.connects)
    clock.now += 20000
    await asyncio.sleep_ms(2100)
    out("retried", wlan.connects)
    wlan.up = True
    for _ in range(30):
        await asyncio.sleep_ms(200)
        if clock.set:
            break
    out("ntp", clock.set, hal.network_status())
    wlan.up = False
    clock.now += 30000
    await asyncio.sleep_ms(2100)
    out("lost", wlan.connects, hal.network_status(), await refused())
    task.cancel()

asyncio.run(main())
"""


@pytest.mark.slow
def test_wifi_connects_without_waiting_reconnects_and_sets_the_clock_by_ntp(
    ntp_server: NtpServer,
) -> None:
    port, answered = ntp_server.port, ntp_server.answered
    got = {row[0]: row[1:] for row in mpy_json(WIFI.replace("NTP_PORT", str(port)),
                                               timeout=60)}
    assert got["before"] == [113]  # no WLAN yet: fails at once, like a real one
    assert got["started"] == [0, [True], ["store"], 113]
    assert got["waiting"] == [["store"]]
    assert got["retried"] == [["store", "store"]]
    (walls, status), = [got["ntp"]]
    assert answered and walls == [[answered[0], 2]]  # clock.SOURCE_NTP
    assert status["up"] is True and status["ntp_error"] is None
    # The server came from the config's sync.ntp_server (kiosk/sntp.py Keeper).
    assert status["ntp"]["server"] == "127.0.0.1" and status["ntp"]["queries"] == 1
    assert status["address"] == "10.0.0.7"  # for the service screen
    connects, status, errno = got["lost"]
    assert connects == ["store", "store", "store"] and status["losses"] == 1
    assert status["up"] is False and status["address"] == ""
    assert errno == 113 and "pw" not in str(status)


# The NTP keeper (firmware/kiosk/sntp.py) as the HAL's network task drives it: a real
# clock over a RAM flash, a fake wrapping tick counter, the network task's rounds every
# 10 s of simulated time. `query` is the stand-in for sntp.query ("dead": no answer;
# otherwise the real query against NTP_PORT), `dns` counts name lookups.
KEEPER = """
import asyncio
from harness import FakeTicks, emit, mount, ram_flash, MOUNT
from kiosk import sntp, ticks as wrapping
from kiosk.clock import Clock
from kiosk.resolve import Resolver

ticks = FakeTicks()
image, blocks = ram_flash()
mount(image, blocks)
clock = Clock(ticks, 1, MOUNT)
clock.start()
started = ticks.now
asked = []  # seconds since the start of each query
lookups = []
ntp = {"dead": True}

def getaddrinfo(host, port, family, kind):
    lookups.append(host)
    return [(family, kind, 0, "", ("127.0.0.1", port))]

async def query(address, ticks_ms, port):
    asked.append(wrapping.diff(ticks.now, started) // 1000)
    if ntp["dead"]:
        raise OSError(110, "no NTP answer")
    return await sntp.query(address, ticks_ms, port)

def keeper(server):
    return sntp.Keeper(clock, server, port=NTP_PORT, resolver=Resolver(ticks, getaddrinfo),
                       query_fn=query)

async def run_for(k, seconds):
    for _ in range(seconds // 10):
        await k.step()
        ticks.advance(10000)
        clock.uptime_ms()  # the app's timer task does this every tick

async def main():
    # A server that never answers: 1 min, then doubling, up to 6 h (12 h watched).
    k = keeper("ntp.store.lan")
    await run_for(k, 600)
    emit(["before link", asked, lookups])
    k.link_up()
    await run_for(k, 12 * 3600)
    emit(["dead", asked, len(lookups), k.status()])
    before = len(asked)
    k.link_up()  # WiFi came back during the backoff: the backoff holds
    await run_for(k, 10)
    emit(["relink", len(asked) - before])

    # The server answers: the clock is set (source NTP), then again 6 h later.
    del asked[:]
    ntp["dead"] = False
    k = keeper("127.0.0.1")
    k.link_up()
    await run_for(k, 6 * 3600 + 20)
    emit(["answers", asked, clock.state()["source"], k.status()["failures"]])

    # "" turns NTP off.
    k = keeper("")
    k.link_up()
    before = len(asked)
    await run_for(k, 3600)
    emit(["off", len(asked) - before])

asyncio.run(main())
""".replace("NTP_PORT", "NTP_PORT_NUMBER")


def test_ntp_backs_off_after_failures_and_queries_every_6_h_after_success(
    ntp_server: NtpServer,
) -> None:
    rows = {row[0]: row[1:] for row in mpy_json(
        KEEPER.replace("NTP_PORT_NUMBER", str(ntp_server.port)), timeout=120)}
    assert rows["before link"] == [[], []]  # nothing before WiFi is up
    asked, lookups, status = rows["dead"]
    # Retries 1, 2, 4, 8 ... minutes apart, capped at 6 h: 10 queries in 12 h (the old
    # code asked every minute: 720).
    gaps = [b - a for a, b in zip(asked, asked[1:], strict=False)]
    assert gaps == [60, 120, 240, 480, 960, 1920, 3840, 7680, 15360], asked
    # The name is looked up again after each failed query (the pool may have moved on),
    # so never more often than the queries themselves.
    assert lookups == len(asked)
    assert status["failures"] == 10 and "110" in status["error"]
    assert status["server"] == "ntp.store.lan" and status["queries"] == 10
    assert rows["relink"] == [0]
    asked, source, failures = rows["answers"]
    assert asked[1] - asked[0] == 6 * 3600 and len(asked) == 2
    assert source == "ntp" and failures == 0
    assert ntp_server.answered  # the real query went to the server
    assert rows["off"] == [0]


# A push answer (or a host sync) set the clock: NTP is skipped for 6 h after it.
SKIP = """
import asyncio
from harness import FakeTicks, emit, mount, ram_flash, MOUNT
from kiosk import sntp, ticks as wrapping
from kiosk.clock import Clock
from kiosk.push import Push

ticks = FakeTicks()
image, blocks = ram_flash()
mount(image, blocks)
clock = Clock(ticks, 1, MOUNT)
clock.start()
started = ticks.now
asked = []

async def query(address, ticks_ms, port):
    asked.append(wrapping.diff(ticks.now, started) // 1000)
    raise OSError(110, "no NTP answer")  # e.g. a store network that blocks UDP 123

class Kiosk:  # what Push reads of the app's Kiosk for a clock setting
    pass

kiosk = Kiosk()
kiosk.clock = clock
push = Push(kiosk)
k = sntp.Keeper(clock, "192.168.1.1", query_fn=query)

async def run_for(seconds):
    for _ in range(seconds // 10):
        await k.step()
        ticks.advance(10000)
        clock.uptime_ms()

async def main():
    k.link_up()
    await run_for(30)                       # the first query fails
    push._maybe_set_clock(1800000000)       # a verified push answer's time
    await run_for(6 * 3600 - 60)            # skipped: the server gave the time
    emit(["after push", asked, clock.state()["source"], k.status()])
    await run_for(120)                      # 6 h after the push answer: asked again
    emit(["stale", asked])

asyncio.run(main())
"""


def test_ntp_is_skipped_while_a_push_answer_set_the_clock_recently() -> None:
    rows = {row[0]: row[1:] for row in mpy_json(SKIP, timeout=120)}
    asked, source, status = rows["after push"]
    assert asked == [0] and source == "host"
    assert status["skipped"] == 1 and status["queries"] == 1
    (asked,) = rows["stale"]
    assert asked == [0, 6 * 3600 + 30]
