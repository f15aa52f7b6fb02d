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
    def ticks_ms(self):
        return self.now
    def set_wall(self, wall, source):
        self.set.append([wall, source])

hal = Esp32Hal({"name": "t", "buttons": [{"pin": 32}]})
hal.ntp_host = "127.0.0.1"
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
    task = asyncio.create_task(hal.network_run({"wifi_ssid": "store", "wifi_password": "pw"},
                                               clock))
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
    assert status["address"] == "10.0.0.7"  # for the service screen
    connects, status, errno = got["lost"]
    assert connects == ["store", "store", "store"] and status["losses"] == 1
    assert status["up"] is False and status["address"] == ""
    assert errno == 113 and "pw" not in str(status)
