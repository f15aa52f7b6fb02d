"""Boot counting, crash streaks and safe mode, with the simulated hardware layer."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import BOARDS, mpy_json

BOARD = json.loads((BOARDS / "esp32-devkitc-ssd1680.json").read_text())


def test_three_crashes_in_a_row_enter_safe_mode_and_a_clean_boot_clears_it(
    tmp_path: Path,
) -> None:
    out = mpy_json(f"""
import json
from kiosk import app
from kiosk.hal.sim import SimHal
from kiosk.screen import TextScreen
from harness import emit
board = json.loads({json.dumps(json.dumps(BOARD))})

async def crash():
    raise RuntimeError("bug")

async def fine():
    pass

def boot(until, cause="power_on"):
    screen = TextScreen()
    hal = SimHal(board, {str(tmp_path)!r}, cause, screen)
    try:
        k = app.run(hal, until)
        result = {{"boot": k.boot, "streak": k.crash_streak, "crashes": k.crashes,
                   "screen": screen.kind, "title": screen.title}}
    except RuntimeError:
        result = "crashed"
    hal.unmount()
    return result

runs = [boot(crash()), boot(crash()), boot(crash()), boot(fine()), boot(fine())]
emit(runs)
""")[0]
    assert out[:3] == ["crashed", "crashed", "crashed"]
    safe = out[3]
    assert safe["boot"] == 4 and safe["streak"] == 3 and safe["crashes"] == 3
    assert safe["screen"] == "service" and safe["title"] == "Safe mode: 3 crashes in a row"
    # Safe mode ended without a crash, so the next boot runs normally.
    assert out[4]["streak"] == 0 and out[4]["screen"] != "service" and out[4]["crashes"] == 3


def test_a_watchdog_reset_counts_as_a_crash(tmp_path: Path) -> None:
    out = mpy_json(f"""
import json
from kiosk import app
from kiosk.hal.sim import SimHal
from harness import emit
board = json.loads({json.dumps(json.dumps(BOARD))})
async def fine():
    pass
def boot(cause):
    hal = SimHal(board, {str(tmp_path)!r}, cause)
    k = app.run(hal, fine())
    result = [k.boot, k.crash_streak, k.crashes, k.status()["reset_cause"]]
    hal.unmount()
    return result
emit([boot("power_on"), boot("watchdog"), boot("hard")])
""")[0]
    assert out == [[1, 0, 0, "power_on"], [2, 1, 1, "watchdog"], [3, 0, 1, "hard"]]


def test_a_task_that_dies_crashes_the_app_instead_of_leaving_a_deaf_kiosk(
    tmp_path: Path,
) -> None:
    out = mpy_json(f"""
import json, asyncio
from kiosk import app
from kiosk.hal.sim import SimHal
from harness import emit
board = json.loads({json.dumps(json.dumps(BOARD))})
hal = SimHal(board, {str(tmp_path)!r})
reads = [0]
def broken_buttons():
    reads[0] += 1
    if reads[0] > 5:
        raise OSError(5)   # e.g. a GPIO expander that stopped answering
    return 0
hal.read_buttons = broken_buttons
async def forever():
    await asyncio.sleep_ms(10000)
try:
    app.run(hal, forever())
    result = "returned"
except OSError as e:
    result = "crashed: %s" % e
hal.unmount()
hal = SimHal(board, {str(tmp_path)!r})
k = app.Kiosk(hal)
k.inspect()
emit({{"result": result, "crashes_seen_next_boot": k.crashes, "reads": reads[0]}})
""")[0]
    assert out["result"] == "crashed: [Errno 5] EIO"
    assert out["crashes_seen_next_boot"] == 1
