"""What the wall clock may be set to, on the real MicroPython interpreter: kiosk.clock's
EARLIEST_WALL..LATEST_WALL (2000-01-01..2100-01-01) for every source (host, push answer,
NTP, RTC chip at boot), and a record never carries a wall time wrapped past u32."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conftest import mpy_json
from ntpserver import NTP_TO_UNIX, NtpServer

EARLIEST = 946684800
LATEST = 4102444800
EPOCH_2026 = 1767225600


def run(body: str) -> dict:
    return {row[0]: row[1] for row in mpy_json(SETUP + body)}


SETUP = """
import os
from harness import Rig, emit, MOUNT
from kiosk import config as cfg
from kiosk.clock import Clock, EARLIEST_WALL, LATEST_WALL

def journal_size():
    try:
        return os.stat(MOUNT + "/time")[6]
    except OSError:
        return 0
"""


def test_the_bounds_are_exported_with_their_documented_values() -> None:
    r = run("emit(['bounds', [EARLIEST_WALL, LATEST_WALL]])")
    assert r["bounds"] == [EARLIEST, LATEST]


def test_set_wall_refuses_times_outside_the_bounds_from_every_source() -> None:
    r = run(f"""
rig = Rig(cfg.defaults())
clock = rig.clock
refused = []
for source in (1, 2, 3):
    for wall in ({EARLIEST - 1}, {LATEST + 1}, 0xFFFFFFFF, 0x100000005, 0, -5):
        try:
            clock.set_wall(wall, source)
            refused.append(None)
        except ValueError as e:
            refused.append(str(e))
emit(["refused", refused])
emit(["unchanged", [clock.state(), clock.anchors, journal_size()]])
clock.set_wall({EARLIEST}, 1)
emit(["earliest", clock.wall()])
clock.set_wall({LATEST}, 2)
emit(["latest", clock.state()])
""")
    assert None not in r["refused"] and len(r["refused"]) == 18
    assert r["refused"][2] == f"wall time 4294967295 is outside {EARLIEST}..{LATEST} (2000-2100)"
    assert r["unchanged"] == [{"known": False}, [], 0]
    assert r["earliest"] == EARLIEST
    assert r["latest"] == {"known": True, "source": "ntp", "wall": LATEST}


@pytest.mark.parametrize(("chip", "known"), [
    (EPOCH_2026, True), (0xFFFFFFFF, False), (LATEST + 1, False), (EARLIEST - 1, False),
    (None, False)])
def test_an_rtc_chip_outside_the_bounds_leaves_the_clock_unknown_at_boot(
        chip: int | None, known: bool) -> None:
    """A clock chip that lost its time can say anything: the boot goes on, clock unknown."""
    r = run(f"""
from kiosk.hal.simflash import RamImage
from harness import FakeTicks, ram_flash, mount
image, blocks = ram_flash()
mount(image, blocks)
clock = Clock(FakeTicks(), 1, MOUNT, rtc_read=lambda: {chip!r})
clock.start()
emit(["state", clock.state()])
emit(["anchors", clock.anchors])
""")
    assert r["state"]["known"] is known
    if known:
        assert r["state"]["source"] == "rtc" and r["anchors"][0][2] == chip
    else:
        assert r["anchors"] == []


def test_a_record_never_carries_a_wall_time_wrapped_past_u32() -> None:
    """Past u32 the record says "clock unknown" (the host resolves it by anchor) instead of
    a wrapped 1970 time marked known."""
    r = run("""
from kiosk import record
rig = Rig(cfg.defaults())
log = rig.log
log.append(3, 4, 1, 20, 0, 1, 100, 0xFFFFFFFF, 0)
log.append(3, 4, 1, 20, 0, 1, 101, 0x100000005, 0)
log.append(3, 4, 1, 20, 0, 1, 102, 1767225600, 0)
emit(["records", [[r[record.FLAGS] & record.FLAG_CLOCK_KNOWN, r[record.WALL]]
                  for r in log.read(1, 4096)]])
""")
    assert r["records"] == [[4, 0xFFFFFFFF], [0, 0], [4, EPOCH_2026]]


def test_a_push_answer_outside_the_bounds_leaves_the_clock_alone() -> None:
    r = run(f"""
from kiosk.push import Push
rig = Rig(cfg.defaults())
class Holder:
    pass
holder = Holder()
holder.kiosk = Holder()
holder.kiosk.clock = rig.clock
seen = []
for wall in ({LATEST + 1}, 0xFFFFFFFF, {EARLIEST - 1}, 1e400, float("nan"), -1e400, "x", None,
             True):
    Push._maybe_set_clock(holder, wall)
    seen.append(rig.clock.state())
emit(["ignored", seen])
Push._maybe_set_clock(holder, {EPOCH_2026}.5)
emit(["set", rig.clock.state()])
""")
    assert r["ignored"] == [{"known": False}] * 9
    assert r["set"] == {"known": True, "source": "host", "wall": EPOCH_2026}


# -- NTP against a real UDP server on 127.0.0.1 --------------------------------------------


@pytest.fixture
def ntp_server() -> Iterator[NtpServer]:
    with NtpServer() as server:
        yield server


def test_an_ntp_time_outside_the_bounds_is_refused(ntp_server: NtpServer) -> None:
    port = ntp_server.port
    # 2026; 0x7FFFFFFF NTP seconds read as the next era (2104); 0x80000000 (1968).
    ntp_server.queued += [EPOCH_2026 + NTP_TO_UNIX, 0x7FFFFFFF, 0x80000000]
    r = run(f"""
import asyncio, time
from kiosk import sntp
out = []
for _ in range(3):
    try:
        out.append(asyncio.run(sntp.query("127.0.0.1", time.ticks_ms, {port}, 5000)))
    except OSError as e:
        out.append(str(e))
emit(["answers", out])
""")
    good, late, early = r["answers"]
    assert good == EPOCH_2026
    assert "outside 2000-2100" in late and str(0x7FFFFFFF + 2**32 - NTP_TO_UNIX) in late
    assert "outside 2000-2100" in early
