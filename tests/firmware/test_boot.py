"""Issue 14: the ESP32 start (kiosk/boot.py) never leaves a dead kiosk at the REPL. The
real boot module and hardware layer on the unix port, with a stand-in `machine` that
records pins, the watchdog, timers and resets; the panel's BUSY is always idle."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, mpy_json

STANDIN = """
import sys, json, time
events = []
input_level = 0  # what every input pin reads: BUSY idle (0 when BUSY is active high)

class Pin:
    IN = 1
    OUT = 3
    PULL_UP = 2
    PULL_DOWN = 1
    def __init__(self, number, mode=-1, pull=-1, value=None):
        self.number = number
        self.level = value if value is not None else 0
        if mode == Pin.OUT:
            # What was imported when an output was first driven: the power hold must
            # come before the app.
            events.append(["out", number, value, "kiosk.app" in sys.modules])
    def value(self, level=None):
        if level is None:
            return input_level
        self.level = level
    def init(self, *args, **kwargs):
        pass

class SPI:
    def __init__(self, *args, **kwargs):
        self.written = 0
    def write(self, data):
        self.written += len(data)

class I2C:
    def __init__(self, *args, **kwargs):
        pass
    def readfrom_mem_into(self, *args):
        raise OSError(19)
    def writeto_mem(self, *args):
        raise OSError(19)
    def readfrom_mem(self, *args):
        raise OSError(19)

class WDT:
    def __init__(self, timeout):
        events.append(["wdt", timeout])
        self.feeds = 0
    def feed(self):
        self.feeds += 1

class Timer:
    PERIODIC = 1
    made = []
    def __init__(self, number):
        Timer.made.append(self)
        self.running = False
    def init(self, mode, period, callback):
        events.append(["timer", period])
        self.callback = callback
        self.running = True
    def deinit(self):
        self.running = False

class RTC:
    kept = b""  # the RTC slow memory: b"" as after a power-on, or the last boot's marker
    writes = []  # [bytes written, output pins driven so far, whether kiosk.app was imported]
    def datetime(self, when=None):
        return (2000, 1, 1, 5, 0, 0, 0, 0)
    def memory(self, data=None):
        if data is None:
            return RTC.kept
        RTC.writes.append([bytes(data).decode(), len(events), "kiosk.app" in sys.modules])
        RTC.kept = bytes(data)

class Panic(BaseException):
    pass  # a crash in C: the board resets at once, no Python handler runs

class ResetDone(Exception):
    pass

def reset():
    events.append(["reset"])
    raise ResetDone()

raw_cause = 1  # what machine.reset_cause() answers: PWRON_RESET unless a test says

def reset_cause():
    return raw_cause

PWRON_RESET, HARD_RESET, WDT_RESET, DEEPSLEEP_RESET, SOFT_RESET = 1, 2, 3, 4, 5
"""

HARNESS = """
import json
import standin_machine
sys.modules["machine"] = standin_machine
from kiosk import boot

class Clock:
    slept = 0
    ms = 0
def sleep(seconds):
    Clock.slept += seconds
    Clock.ms += seconds * 1000
boot.time = type("T", (), {"sleep": staticmethod(sleep)})

root = %(root)r
boot.BOARD_FILE = root + "/board.json"
boot.FAILURES_FILE = root + "/failures"
boot.LAST_FAILURE_FILE = root + "/last_failure"

def read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None

def run_boot():
    try:
        boot.run()
        return "returned"
    except standin_machine.ResetDone:
        return "reset"
"""


def run_boot(tmp_path: Path, board: dict[str, Any] | None, script: str) -> list[Any]:
    root = tmp_path / "device"
    root.mkdir(exist_ok=True)
    if board is not None:
        (root / "board.json").write_text(json.dumps(board))
    module = tmp_path / "standin_machine.py"
    module.write_text(STANDIN)
    # The ESP32's frozen flashbdev: no vfs partition unless a test says otherwise.
    (tmp_path / "flashbdev.py").write_text("bdev = None\n")
    source = f"import sys\nsys.path.insert(0, {str(tmp_path)!r})\n" + (
        HARNESS % {"root": str(root)}) + script
    return mpy_json(source)


def board(name: str) -> dict[str, Any]:
    return json.loads((BOARDS / f"{name}.json").read_text())


def test_the_backoff_doubles_from_10_s_to_10_min(tmp_path: Path) -> None:
    out = run_boot(tmp_path, None, "print('@' + json.dumps([boot.backoff_s(n) "
                                   "for n in range(1, 12)]))\n")
    assert out == [[10, 20, 40, 80, 160, 320, 600, 600, 600, 600, 600]]


def test_a_bad_board_file_is_recorded_and_restarts_after_a_backoff(tmp_path: Path) -> None:
    out = run_boot(tmp_path, None, """
first = run_boot()
second_slept = Clock.slept
second = run_boot()
print("@" + json.dumps([first, second, second_slept, Clock.slept, read(boot.FAILURES_FILE),
                        read(boot.LAST_FAILURE_FILE), standin_machine.events]))
""")
    first, second, slept_once, slept_twice, failures, last, events = out[0]
    # Before: it printed a line and stayed at the REPL for good.
    assert first == second == "reset"
    assert slept_once == 10 and slept_twice == 10 + 20
    assert failures == "2"
    assert last.startswith("ValueError: cannot read") and "board.json" in last
    assert events == [["reset"], ["reset"]]  # no pin driven, no watchdog started


@pytest.mark.parametrize("failure", ["MemoryError('memory allocation failed')",
                                     "OSError(5)"])
def test_a_failing_start_draws_on_the_panel_and_keeps_the_watchdog_fed(
        tmp_path: Path, failure: str) -> None:
    out = run_boot(tmp_path, board("m5stack-coreink"), f"""
standin_machine.input_level = 1  # the JD79653A's BUSY is active low
from kiosk import app
drawn = []
def failing_run(hal, until=None, on_ready=None):
    hal.feed_watchdog()  # the app had started the watchdog
    raise {failure}
app.run = failing_run
from kiosk import fatal
real_show = fatal.show
def show(panel, title, text):
    drawn.append([title, text, real_show(panel, title, text) is None])
fatal.show = show
result = run_boot()
print("@" + json.dumps([result, drawn, read(boot.LAST_FAILURE_FILE), standin_machine.events]))
""")
    result, drawn, last, events = out[0]
    assert result == "reset"
    assert drawn and drawn[0][0] == "Out of order" and drawn[0][2]
    assert last in drawn[0][1] and "restarting in 10 s" in drawn[0][1]
    assert ["wdt", 30000] in events and events[-1] == ["reset"]


def test_the_power_hold_comes_before_the_apps_imports(tmp_path: Path) -> None:
    coreink = board("m5stack-coreink")
    coreink["display"]["controller"] = "il0373"  # the hardware layer fails on it
    out = run_boot(tmp_path, coreink, """
result = run_boot()
print("@" + json.dumps([result, read(boot.LAST_FAILURE_FILE), standin_machine.events]))
""")
    result, last, events = out[0]
    assert result == "reset" and "il0373" in last
    # GPIO 12 driven high first of all, while kiosk.app was not imported yet.
    assert events[0] == ["out", 12, 1, False]


def test_a_technicians_stop_is_not_a_crash_and_restarts_later(tmp_path: Path) -> None:
    out = run_boot(tmp_path, board("esp32-devkitc-ssd1680"), """
from kiosk import app
def interrupted_run(hal, until=None, on_ready=None):
    on_ready(None)  # the start worked
    hal.feed_watchdog()
    raise KeyboardInterrupt
app.run = interrupted_run
result = run_boot()
timer = standin_machine.Timer.made[-1]
feeds = []
# Timer ticks before the deadline feed the watchdog; none restarts the board yet.
try:
    for _ in range(3):
        timer.callback(timer)
    feeds.append(timer.running)
except standin_machine.ResetDone:
    feeds.append("reset early")
print("@" + json.dumps([result, feeds, read(boot.FAILURES_FILE), read(boot.LAST_FAILURE_FILE),
                        standin_machine.events]))
""")
    result, feeds, failures, last, events = out[0]
    assert result == "returned"  # to the REPL, which stays free
    assert feeds == [True]  # still feeding, no restart yet
    assert failures == "0" and last is None  # not counted as a failure
    assert ["timer", 15000] in events  # half the board's 30 s watchdog
    assert ["reset"] not in events


def test_a_maintenance_request_stops_the_app_without_a_crash(tmp_path: Path) -> None:
    out = run_boot(tmp_path, board("esp32-devkitc-ssd1680"), """
from kiosk import app
class Stopped:
    maintenance_s = 120  # the serial command's time (tests/firmware/test_app.py)
def stopped_run(hal, until=None, on_ready=None):
    on_ready(None)
    hal.feed_watchdog()
    return Stopped()
app.run = stopped_run
result = run_boot()
print("@" + json.dumps([result, read(boot.FAILURES_FILE), standin_machine.events]))
""")
    result, failures, events = out[0]
    assert result == "returned" and failures == "0"
    assert ["timer", 15000] in events and ["reset"] not in events


def test_the_flash_is_mounted_again_without_mtime_before_any_file_is_opened(
        tmp_path: Path) -> None:
    """Issue 14 item 9: the stock _boot.py mounts LittleFS with mtime on, which makes
    every flushed log append also rewrite its folder's metadata. The start remounts the
    vfs partition without it, before the board file (or anything) is opened."""
    out = run_boot(tmp_path, board("esp32-devkitc-ssd1680"), """
class Partition:
    def info(self):
        return (1, 129, 0x200000, 0x200000, "vfs", False)
import flashbdev
flashbdev.bdev = Partition()
calls = []
class StandinVfs:
    class VfsLfs2:
        def __init__(self, bdev, mtime=True):
            calls.append(["lfs2", mtime])
    @staticmethod
    def umount(path):
        calls.append(["umount", path, len(standin_machine.events)])
    @staticmethod
    def mount(fs, path):
        calls.append(["mount", path])
sys.modules["vfs"] = StandinVfs
from kiosk import app
def stop(hal, until=None, on_ready=None):
    raise KeyboardInterrupt
app.run = stop
run_boot()
print("@" + json.dumps(calls))
""")
    # Unmounted before any pin was driven (the board file was not read yet), mounted
    # again as LittleFS without mtime.
    assert out == [[["umount", "/", 0], ["lfs2", False], ["mount", "/"]]]


# -- the reset marker ------------------------------------------------------------------------
# The last boot ended with the app's own restart (after a failure to start, or the
# maintenance stop), so its marker says "deliberate". This boot then crashes in C before
# the app runs; the next boot must read a panic, not the last boot's deliberate restart.
PANIC_IN_THE_APPS_IMPORTS = """
import builtins
real_import = builtins.__import__
def importing(name, globals=None, locals=None, fromlist=(), level=0):
    if name == "kiosk.app" or (name == "kiosk" and "app" in (fromlist or ())):
        raise standin_machine.Panic("while compiling the app")
    return real_import(name, globals, locals, fromlist, level)
builtins.__import__ = importing
"""
PANIC_WHILE_THE_HAL_IS_BUILT = """
def panicking_spi(*args, **kwargs):
    raise standin_machine.Panic("in the panel's SPI set-up")
standin_machine.SPI = panicking_spi
"""


@pytest.mark.parametrize("crash", [PANIC_IN_THE_APPS_IMPORTS, PANIC_WHILE_THE_HAL_IS_BUILT],
                         ids=["the app's imports", "the hardware layer's construction"])
def test_a_crash_before_the_app_runs_reads_as_a_panic_at_the_next_boot(
        tmp_path: Path, crash: str) -> None:
    out = run_boot(tmp_path, board("m5stack-coreink"), """
from kiosk import resets
standin_machine.RTC.kept = resets.MARK_DELIBERATE
""" + crash + """
try:
    run_boot()
    crashed = None
except standin_machine.Panic as panic:
    crashed = str(panic)
kept = standin_machine.RTC.kept
print("@" + json.dumps([crashed, kept.decode(), resets.classify("hard", kept),
                        standin_machine.RTC.writes]))
""")
    crashed, kept, next_boot, writes = out[0]
    assert crashed is not None
    # Before: the marker was written while the hardware layer was built, so a crash before
    # that left "deliberate" in place.
    assert kept == "DeskPulse:run" and next_boot == "panic"
    # Marked first of all: before the power hold (GPIO 12) and before the app's imports.
    assert writes[0] == ["DeskPulse:run", 0, False]


def test_the_hal_reports_what_the_rtc_memory_held_before_this_boot_marked_it(
        tmp_path: Path) -> None:
    out = run_boot(tmp_path, board("esp32-devkitc-ssd1680"), """
from kiosk import app, resets
standin_machine.RTC.kept = resets.MARK_DELIBERATE
standin_machine.raw_cause = standin_machine.HARD_RESET
told = []
def stop(hal, until=None, on_ready=None):
    told.append(resets.classify(hal.reset_cause(), hal.reset_memory()))
    raise KeyboardInterrupt
app.run = stop
run_boot()
print("@" + json.dumps([told, standin_machine.RTC.kept.decode()]))
""")
    told, kept = out[0]
    # The hardware layer gets the boot's first reading, not the mark this boot wrote: the
    # app's own restart stays deliberate (a second read would make it a panic).
    assert told == ["deliberate"]
    assert kept == "DeskPulse:run"
