"""The refresh task: merging, full/partial policy, idle clean-up, dead panels."""

from __future__ import annotations

from conftest import mpy_json

FAKE = """
import asyncio
from harness import emit
from kiosk.drivers import PanelError
from kiosk.ui.display import Display

class FakePanel:
    # Stands in for a driver: write() is instant, update() keeps BUSY for busy_ms; the
    # log says whether write() was told a full refresh follows.
    def __init__(self, busy_ms=40, dead=False):
        self.busy_ms = busy_ms
        self.dead = dead
        self.log = []
        self._busy = False
    async def init(self):
        self.log.append("init")
    def write(self, full=False):
        self.log.append("write full" if full else "write")
    async def update(self, full):
        self.log.append("full" if full else "partial")
        self._busy = True
        await asyncio.sleep_ms(self.busy_ms)
        if self.dead:
            raise PanelError("BUSY stuck for 10000 ms")
        self._busy = False
    def busy(self):
        return self._busy
"""


def run(body: str) -> dict:
    return mpy_json(FAKE + body)[-1]


def test_requests_during_a_refresh_merge_into_one_more() -> None:
    r = run("""
async def main():
    panel = FakePanel(busy_ms=60)
    d = Display(panel)
    task = asyncio.create_task(d.run())
    d.request()
    await asyncio.sleep_ms(10)       # first refresh under way
    for _ in range(3):
        d.request()
        await asyncio.sleep_ms(5)
    await asyncio.sleep_ms(200)
    task.cancel()
    emit({"log": panel.log, "status": d.status()})
asyncio.run(main())
""")
    assert r["log"] == ["init", "write full", "full", "write", "partial"]
    assert r["status"]["merged"] == 2


def test_a_full_refresh_every_n_partials() -> None:
    r = run("""
async def main():
    panel = FakePanel(busy_ms=1)
    d = Display(panel, partials_per_full=3)
    task = asyncio.create_task(d.run())
    for _ in range(9):
        d.request()
        await asyncio.sleep_ms(20)
    task.cancel()
    emit({"log": [x for x in panel.log if not x.startswith("write")]})
asyncio.run(main())
""")
    assert r["log"] == ["init", "full", "partial", "partial", "partial", "full", "partial",
                        "partial", "partial", "full"]


def test_idle_after_partials_cleans_the_panel_with_one_full_refresh() -> None:
    r = run("""
async def main():
    panel = FakePanel(busy_ms=1)
    d = Display(panel, idle_full_ms=50)
    task = asyncio.create_task(d.run())
    d.request(); await asyncio.sleep_ms(20)
    d.request(); await asyncio.sleep_ms(300)
    task.cancel()
    emit({"log": [x for x in panel.log if not x.startswith("write")]})
asyncio.run(main())
""")
    # full (power-on), partial, then one clean-up full; nothing more while idle and clean
    assert r["log"] == ["init", "full", "partial", "full"]


def test_a_dead_panel_is_reported_and_other_tasks_go_on() -> None:
    r = run("""
async def main():
    panel = FakePanel(busy_ms=30, dead=True)
    d = Display(panel, retry_ms=1000)
    task = asyncio.create_task(d.run())
    ticks = 0
    d.request()
    for _ in range(10):
        await asyncio.sleep_ms(10)
        ticks += 1
    failures = d.failures
    error_then = d.error
    panel.dead = False           # the panel recovers (a loose cable pushed back)
    await asyncio.sleep_ms(1100)
    task.cancel()
    emit({"error": error_then, "ticks": ticks, "failures": failures, "log": panel.log,
          "after": d.error})
asyncio.run(main())
""")
    assert r["error"] == "BUSY stuck for 10000 ms"
    assert r["ticks"] == 10 and r["failures"] == 1
    # retried after retry_ms: init again, then the pending view in full
    assert r["log"] == ["init", "write full", "full", "init", "write full", "full"]
    assert r["after"] is None


def test_the_display_says_which_picture_is_on_the_glass() -> None:
    """What the input guard reads: a picture counts as shown only once the refresh that
    carried it has finished, and a refresh carries every picture requested before it."""
    r = run("""
import time
async def main():
    panel = FakePanel(busy_ms=60)
    d = Display(panel, ticks_ms=time.ticks_ms)
    task = asyncio.create_task(d.run())
    d.request()
    await asyncio.sleep_ms(10)
    during = [d.requests, d.shown]
    d.request(); d.request()          # drawn while the first refresh runs
    await asyncio.sleep_ms(30)
    still = [d.requests, d.shown]
    await asyncio.sleep_ms(300)
    after = [d.requests, d.shown, time.ticks_diff(time.ticks_ms(), d.shown_ms) >= 0]
    task.cancel()
    emit({"during": during, "still": still, "after": after})
asyncio.run(main())
""")
    assert r["during"] == [1, 0] and r["still"] == [3, 0]
    assert r["after"] == [3, 3, True]


def test_write_is_told_whether_a_full_refresh_follows() -> None:
    # The SSD1680 sends a full refresh's frame to both RAMs: write(full) and update(full)
    # must agree on every refresh, the periodic and the idle clean-up ones included.
    r = run("""
async def main():
    panel = FakePanel(busy_ms=1)
    d = Display(panel, partials_per_full=2, idle_full_ms=80)
    task = asyncio.create_task(d.run())
    for _ in range(5):
        d.request()
        await asyncio.sleep_ms(20)
    await asyncio.sleep_ms(200)
    task.cancel()
    emit({"log": panel.log})
asyncio.run(main())
""")
    log = r["log"][1:]
    pairs = [(log[i], log[i + 1]) for i in range(0, len(log), 2)]
    assert [update for _, update in pairs] == ["full", "partial", "partial", "full", "partial",
                                               "full"]
    assert all(write == ("write full" if update == "full" else "write")
               for write, update in pairs)


REAL = """
import asyncio, framebuf, time
from harness import emit
from kiosk import ticks
from kiosk.ui.display import Display
from kiosk.hal.simpanel import make_pair

def real_ticks():
    return time.ticks_diff(time.ticks_ms(), 0) & ticks.MASK

panel, drv = make_pair({controller!r}, {w}, {h}, real_ticks, rotation={rotation},
                       full_ms=40, partial_ms=25, reset_ms=2)
{omission}

def glass_is_buffer():
    w, h, shown = panel.image(drv.rotation)
    glass = framebuf.FrameBuffer(shown, w, h, framebuf.MONO_HLSB)
    fb = drv.framebuf
    return all(glass.pixel(x, y) == (fb.pixel(x, y) == drv.INK)
               for y in range(h) for x in range(w))

async def main():
    d = Display(drv, partials_per_full=4)
    task = asyncio.create_task(d.run())
    fb = drv.framebuf
    checks = []
    def draw(i, j):
        fb.fill(drv.PAPER)
        fb.text("view %d.%d" % (i, j), 4 + 3 * j, 10 + 7 * i, drv.INK)
        fb.fill_rect(20 * ((i + j) % 4), 60, 30, 20, drv.INK)
        d.request()

    for i in range(10):
        draw(i, 0)
        if i % 2:
            draw(i, 1)  # before the task took the first: merged into one refresh
        if i % 3 == 0:
            await asyncio.sleep_ms(5)
            draw(i, 2)  # while that refresh runs: the buffer is free once write() returned
        while d.busy():
            await asyncio.sleep_ms(5)
        checks.append(glass_is_buffer())
    task.cancel()
    emit([checks, d.status(), panel.refresh_count, panel.violations])
asyncio.run(main())
"""
SKIP_PING_PONG = """
send = drv._command
def without_ping_pong(command, data=None):
    if command != 0x37:
        send(command, data)
drv._command = without_ping_pong
"""


def real_display(controller: str, w: int, h: int, rotation: int, omission: str = "") -> list:
    return mpy_json(REAL.format(controller=controller, w=w, h=h, rotation=rotation,
                                omission=omission))[0]


def test_the_glass_ends_on_the_newest_view_through_the_real_drivers() -> None:
    for controller, w, h, rotation in (("ssd1680", 122, 250, 90), ("jd79653a", 200, 200, 0)):
        checks, status, refreshes, violations = real_display(controller, w, h, rotation)
        assert checks == [True] * 10, controller
        assert status["error"] is None and status["merged"] > 0
        assert status["partial"] >= 5 and refreshes == status["full"] + status["partial"]
        assert violations == []


def test_the_simulated_glass_goes_wrong_when_the_previous_image_goes_stale() -> None:
    # The same run with the SSD1680's ping-pong left out of init(): 0x26 keeps the
    # picture of the last full refresh, and partial refreshes show wrong pictures.
    checks, status, _refreshes, _violations = real_display("ssd1680", 122, 250, 90,
                                                           SKIP_PING_PONG)
    assert status["partial"] >= 5
    assert checks.count(False) >= 3
