"""The refresh task: merging, full/partial policy, idle clean-up, dead panels."""

from __future__ import annotations

from conftest import mpy_json

FAKE = """
import asyncio
from harness import emit
from kiosk.drivers import PanelError
from kiosk.ui.display import Display

class FakePanel:
    # Stands in for a driver: write() is instant, update() keeps BUSY for busy_ms.
    def __init__(self, busy_ms=40, dead=False):
        self.busy_ms = busy_ms
        self.dead = dead
        self.log = []
        self._busy = False
    async def init(self):
        self.log.append("init")
    def write(self):
        self.log.append("write")
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
    assert r["log"] == ["init", "write", "full", "write", "partial"]
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
    emit({"log": [x for x in panel.log if x != "write"]})
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
    emit({"log": [x for x in panel.log if x != "write"]})
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
    assert r["log"] == ["init", "write", "full", "init", "write", "full"]
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
