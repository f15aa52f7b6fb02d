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


# -- the service screen, the end-button hold, a small scale over four buttons ---------------
INPUT_SETUP = """
import json
from kiosk import app
from kiosk.hal.sim import SimHal
from kiosk.screen import TextScreen
from harness import emit
board = json.loads(BOARD_JSON)
board.pop("display")   # a text screen: each view counts as seen when drawn
screen = TextScreen()
shown = []
hal = SimHal(board, STATE, "power_on", screen)
hal.console_sync = False
if CONFIG:
    with open("/flash/config.json", "w") as f:
        f.write(CONFIG)
k = app.Kiosk(hal)
k.start()
def step(ms):
    while ms > 0:
        hal.jump_ms(10)
        k.poll_inputs()
        k.flow.tick()
        if not shown or shown[-1] != screen.kind:
            shown.append(screen.kind)
        ms -= 10
def press(*indices, hold=50):
    for i in indices:
        hal.set_pressed(i, True)
    step(hold)
    for i in indices:
        hal.set_pressed(i, False)
    step(400)   # released, and the next screen read past the input guard
"""


def run_inputs(tmp_path: Path, board_name: str, body: str, config: str = "") -> dict:
    board = json.loads((BOARDS / f"{board_name}.json").read_text())
    setup = (INPUT_SETUP.replace("BOARD_JSON", repr(json.dumps(board)))
             .replace("STATE", repr(str(tmp_path))).replace("CONFIG", repr(config)))
    return mpy_json(setup + "step(500)\n" + body + "\nhal.unmount()\n")[-1]


def test_the_service_button_opens_the_service_screen_and_customers_see_no_technician_text(
    tmp_path: Path,
) -> None:
    # A new kiosk has no config file: a config problem the technician must see.
    r = run_inputs(tmp_path, "lilygo-t5-v2.3", """
idle = [screen.kind, screen.note, screen.mark]
press(4)                                     # the board's service button (GPIO 39)
service = [screen.kind, screen.title, screen.note, k.status()["state"]]
press(4)                                     # again: back to the customers
emit({"idle": idle, "service": service, "after": screen.kind})
""")
    assert r["idle"] == ["idle", "", True], "no technician text, only the neutral mark"
    kind, title, details, state = r["service"]
    assert kind == "service" and state == "service" and title == "Service: 2 to fix"
    mac = (tmp_path / "mac").read_text()  # the simulated chip's, made at its first start
    for fact in ("no config file", "clock not set", f"id kiosk-{mac}  board lilygo-t5-v2.3",
                 "app 0.1.0  MicroPython ", "wifi, push: not set up", "synced to #0 of #0",
                 "% full, 0 kept, 0 dropped", "clock not set", "boot 1, crashes 0"):
        assert fact in details, fact
    assert r["after"] == "idle"


def test_holding_both_end_buttons_opens_the_service_screen_without_a_rating(
    tmp_path: Path,
) -> None:
    # The DevKitC board has no service button: hold faces 1 and 4 together.
    r = run_inputs(tmp_path, "esp32-devkitc-ssd1680", """
press(0, 3, hold=1000)                      # a short hold of both ends: nothing
short = [screen.kind, k.flow.state]
press(0, 3, hold=3200)                      # the technician's hold
held = [screen.kind, list(shown)]
press(0, 3, hold=3200)                      # the same again closes it
closed = screen.kind
press(0)                                    # a customer's press of an end button still rates
rated = [screen.kind, k.flow._rating]
step(20000)
emit({"short": short, "held": held, "closed": closed, "rated": rated,
      "records": [[x[1], x[3]] for x in k.log.read(1, 100)]})
""")
    assert r["short"] == ["idle", 0]
    kind, shown = r["held"]
    assert kind == "service" and "follow_up" not in shown, "the hold rated nothing"
    assert r["closed"] == "idle"
    assert r["rated"] == ["follow_up", 1]
    assert len(r["records"]) == 1, "only the customer's press was stored"


def test_three_faces_on_four_buttons_leave_no_dead_button(tmp_path: Path) -> None:
    r = run_inputs(tmp_path, "esp32-devkitc-ssd1680", """
ratings = []
for index in (3, 1, 2, 0):
    press(index)
    ratings.append(k.flow._rating if screen.kind == "follow_up" else None)
    step(11000)                             # no answer: stored, thank-you, idle again
emit({"ratings": ratings, "scales": [x[2] for x in k.log.read(1, 100)]})
""", config='{"scale": 3}')
    # Face 3 (best) on the "yes" button, face 2 on both middle buttons, face 1 on "no".
    assert r["ratings"] == [3, 2, 2, 1]
    assert r["scales"] == [3, 3, 3, 3]


def test_safe_mode_draws_on_the_panel_and_keeps_the_serial_sync(tmp_path: Path) -> None:
    """Issue 14: safe mode used to call the HAL's screen, which a board with a panel does
    not have (a crash of its own), and nothing refreshed the e-paper. Now the service
    screen goes to the panel and the serial sync still answers, while customer input and
    the push stay off."""
    out = mpy_json(f"""
import json, asyncio
from kiosk import app
from kiosk.hal.sim import SimHal
from harness import emit
board = json.loads({json.dumps(json.dumps(BOARD))})

class Line:
    def __init__(self, data):
        self.data = data
    def readinto(self, buf):
        n = min(len(buf), len(self.data))
        buf[:n] = self.data[:n]
        self.data = self.data[n:]
        return n

async def crash():
    raise RuntimeError("bug")

def boot(until, ready=None):
    hal = SimHal(board, {str(tmp_path)!r}, refresh_scale=0.01)
    hal.screen = None  # as on the ESP32 with a panel: no extra screen
    try:
        return hal, app.run(hal, until, on_ready=ready)
    except RuntimeError:
        return hal, None

for _ in range(3):
    hal, _ = boot(crash())
    hal.unmount()

written = []
def ready(k):
    k.sync._source = Line(b"7 HELLO 1\\n")
    k.sync._write = written.append

async def look():
    await asyncio.sleep_ms(1500)
    hal.set_pressed(0, True)  # a customer's press: nothing in safe mode
    await asyncio.sleep_ms(300)
    hal.set_pressed(0, False)
    await asyncio.sleep_ms(300)

hal = None
def boot_safe():
    global hal
    hal = SimHal(board, {str(tmp_path)!r}, refresh_scale=0.01)
    hal.screen = None
    return app.run(hal, look(), on_ready=ready)

k = boot_safe()
display = k.display.status()
answer = b"".join(bytes(w) for w in written)
emit({{"streak": k.crash_streak, "refreshes": display["full"] + display["partial"],
       "error": display["error"], "views": k.screens.kind,
       "hello": chr(answer[2]) if len(answer) > 2 else "", "presses": k.debouncer.presses,
       "state": k.status()["state"], "stored": k.log.status()["next_seq"]}})
hal.unmount()
""")[0]
    assert out["streak"] == 3
    assert out["refreshes"] >= 1 and out["error"] is None
    assert out["views"] == "service"
    assert out["hello"] == "H"  # the frame's type: the HELLO answered
    assert out["presses"] == 0  # the input task is off
    assert out["stored"] == 1  # nothing recorded


def test_a_stop_for_maintenance_ends_the_app_without_a_crash(tmp_path: Path) -> None:
    out = mpy_json(f"""
import json, asyncio
from kiosk import app
from kiosk.hal.sim import SimHal
from harness import emit
board = json.loads({json.dumps(json.dumps(BOARD))})
async def wait(ms):
    await asyncio.sleep_ms(ms)
hal = SimHal(board, {str(tmp_path)!r})
k = app.run(hal, wait(60000), on_ready=lambda k: k.stop_for_maintenance(300))
hal.unmount()
hal = SimHal(board, {str(tmp_path)!r}, "soft")
again = app.run(hal, wait(10))
emit([k.maintenance_s, k.crash_streak, again.crash_streak, again.crashes])
""")[0]
    assert out == [300, 0, 0, 0]
