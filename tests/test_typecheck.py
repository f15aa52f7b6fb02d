"""Firmware checks that need no board: pyright against the ESP32 stubs (and proof that
the check bites), the calendar arithmetic against CPython's datetime, and the ESP32
hardware layer run on the unix port with a stand-in `machine` module."""

from __future__ import annotations

import calendar
import hashlib
import json
import random
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, FIRMWARE, mpy_json, run_mpy

TYPINGS = FIRMWARE / "typings"
PYRIGHT = Path(sys.executable).parent / "pyright"


# -- pyright --------------------------------------------------------------------------------
def run_pyright(cwd: Path, *args: str) -> dict[str, Any]:
    if not (TYPINGS / "machine.pyi").exists():
        pytest.fail(f"no ESP32 stubs in {TYPINGS}: run `make typecheck` to install them")
    proc = subprocess.run(
        [str(PYRIGHT), "--outputjson", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )
    # Exit status 1 only means "errors found"; anything else is pyright failing to run.
    if proc.returncode not in (0, 1):
        raise AssertionError(f"pyright exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return json.loads(proc.stdout)


def errors_by_file(report: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            line = diagnostic["range"]["start"]["line"] + 1
            found.setdefault(Path(diagnostic["file"]).name, []).append(
                f"{diagnostic['file']}:{line}: {diagnostic['message']}"
            )
    return found


@pytest.mark.slow
def test_firmware_has_no_type_errors() -> None:
    report = run_pyright(FIRMWARE, "--project", "pyrightconfig.json")
    assert report["summary"]["filesAnalyzed"] > 0
    messages = [m for ms in errors_by_file(report).values() for m in ms]
    assert report["summary"]["errorCount"] == 0, "\n".join(messages)


PROBES = {
    # Each bad probe holds one mistake that the ESP32 stubs must catch.
    "bad_pull.py": 'import machine\n\nmachine.Pin("x", machine.Pin.IN, pull=3.5)\n',
    "bad_sleep.py": 'import time\n\ntime.sleep_us("10")\n',
    "bad_constant.py": "import machine\n\nmachine.Pin(4, machine.Pin.PULL_SIDEWAYS)\n",
    "bad_wdt.py": "import machine\n\nmachine.WDT(30000)\n",  # timeout is keyword-only
    # The same calls done right, plus asyncio.sleep_ms, which CPython's typeshed lacks:
    # passing proves the probe is checked against the MicroPython stubs.
    "good.py": (
        "import asyncio\nimport machine\nimport time\n\n"
        "machine.Pin(4, machine.Pin.IN, pull=machine.Pin.PULL_UP)\n"
        "time.sleep_us(10)\n"
        "machine.WDT(timeout=30000).feed()\n\n\n"
        "async def main():\n    await asyncio.sleep_ms(5)\n"
    ),
}


def write_probes(folder: Path, config: dict[str, Any]) -> None:
    folder.mkdir()
    # An explicit exclude stops pyright from auto-excluding folders it mistakes for a venv.
    config = {**config, "include": ["."], "exclude": ["**/__pycache__"]}
    (folder / "pyrightconfig.json").write_text(json.dumps(config))
    for name, source in PROBES.items():
        (folder / name).write_text(source)


def test_type_check_catches_wrong_calls(tmp_path: Path) -> None:
    folder = tmp_path / "esp32"
    write_probes(folder, {
        "typeshedPath": str(TYPINGS),
        "stubPath": str(TYPINGS),
        "pythonVersion": "3.8",
        "reportMissingModuleSource": "none",
    })
    report = run_pyright(folder, "--project", "pyrightconfig.json")
    assert report["summary"]["filesAnalyzed"] == len(PROBES)
    found = errors_by_file(report)
    for name in PROBES:
        if name.startswith("bad_"):
            assert len(found.get(name, [])) == 1, f"{name}: {found.get(name)}"
    assert "good.py" not in found, "\n".join(found["good.py"])


def test_without_the_stubs_config_good_code_is_flagged(tmp_path: Path) -> None:
    # Guards the guard: CPython's typeshed wrongly rejects asyncio.sleep_ms, so the
    # pyrightconfig pointing at the ESP32 stubs is what makes the firmware check right.
    folder = tmp_path / "cpython"
    write_probes(folder, {"pythonVersion": "3.8", "reportMissingModuleSource": "none"})
    found = errors_by_file(run_pyright(folder, "--project", "pyrightconfig.json"))
    assert any("sleep_ms" in message for message in found.get("good.py", []))


# -- calendar arithmetic ----------------------------------------------------------------------
UNIX_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
DENSE_FIRST = date(1583, 1, 1).toordinal() - UNIX_EPOCH_ORDINAL  # first full Gregorian year
DENSE_LAST = date(2500, 12, 31).toordinal() - UNIX_EPOCH_ORDINAL
CHUNK = 20000

DENSE_SOURCE = """
import hashlib, json
from kiosk import civil
first, last, chunk = %d, %d, %d
digests = []
start = first
while start <= last:
    h = hashlib.sha256()
    for days in range(start, min(start + chunk, last + 1)):
        y, m, d = civil.civil_from_days(days)
        if civil.days_from_civil(y, m, d) != days:
            raise ValueError("no round trip at day %%d" %% days)
        h.update("%%d-%%d-%%d %%d\\n" %% (y, m, d, civil.weekday(days)))
    digests.append(h.digest().hex())
    start += chunk
print("@" + json.dumps(digests))
"""


def test_civil_days_agree_with_datetime_every_day_1583_to_2500() -> None:
    [digests] = mpy_json(DENSE_SOURCE % (DENSE_FIRST, DENSE_LAST, CHUNK))
    expected = []
    for start in range(DENSE_FIRST, DENSE_LAST + 1, CHUNK):
        h = hashlib.sha256()
        for days in range(start, min(start + CHUNK, DENSE_LAST + 1)):
            day = date.fromordinal(days + UNIX_EPOCH_ORDINAL)
            h.update(f"{day.year}-{day.month}-{day.day} {day.weekday()}\n".encode())
        expected.append(h.hexdigest())
    for index, (got, want) in enumerate(zip(digests, expected, strict=True)):
        first = date.fromordinal(DENSE_FIRST + index * CHUNK + UNIX_EPOCH_ORDINAL)
        assert got == want, f"civil.py disagrees with datetime in the {CHUNK} days from {first}"


SAMPLE_SOURCE = """
import json
from kiosk import civil
for days in %r:
    y, m, d = civil.civil_from_days(days)
    print("@" + json.dumps([days, y, m, d, civil.weekday(days), civil.days_from_civil(y, m, d),
                            civil.days_in_month(y, m)]))
for seconds in %r:
    fields = civil.civil_from_seconds(seconds)
    print("@" + json.dumps([seconds, list(fields), civil.seconds_from_civil(*fields[:6])]))
"""


def test_civil_samples_agree_with_datetime_across_its_whole_range() -> None:
    rng = random.Random(20240229)
    lowest = date.min.toordinal() - UNIX_EPOCH_ORDINAL
    highest = date.max.toordinal() - UNIX_EPOCH_ORDINAL
    days_list = [lowest, highest, -1, 0, 1, 11016, 10956, 47540, 47541]
    days_list += [rng.randint(lowest, highest) for _ in range(1500)]
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    seconds_list = [0, -1, 86399, 86400, 951782400, 4107542399, 2**31 - 1, 2**31, 2**32]
    seconds_list += [rng.randint(lowest * 86400, highest * 86400 + 86399) for _ in range(1500)]

    rows = mpy_json(SAMPLE_SOURCE % (days_list, seconds_list))
    assert len(rows) == len(days_list) + len(seconds_list)
    for (days, y, m, d, wd, back, month_days), want_days in zip(rows, days_list, strict=False):
        assert days == want_days
        day = date.fromordinal(days + UNIX_EPOCH_ORDINAL)
        assert (y, m, d, wd) == (day.year, day.month, day.day, day.weekday()), days
        assert back == days
        assert month_days == calendar.monthrange(y, m)[1]
    for seconds, fields, back in rows[len(days_list):]:
        moment = epoch + timedelta(seconds=seconds)
        assert fields == [moment.year, moment.month, moment.day, moment.hour, moment.minute,
                          moment.second, moment.weekday()], seconds
        assert back == seconds


# -- the ESP32 hardware layer on the unix port --------------------------------------------------
FAKE_MACHINE = """
import sys, time, json, micropython
from kiosk import civil

class Pin:
    IN = 1
    OUT = 3
    PULL_DOWN = 1
    PULL_UP = 2
    levels = {}
    made = []
    def __init__(self, number, mode=-1, pull=-1, value=None):
        self.number = number
        if mode != -1:
            Pin.made.append([number, mode, pull])
        if value is not None:
            Pin.levels[number] = value
    def value(self, level=None):
        if level is None:
            return Pin.levels[self.number]
        Pin.levels[self.number] = level
    def init(self, mode=-1, pull=-1, value=None):
        # A driver switching a pin's direction (the touch INT during its reset).
        if value is not None:
            Pin.levels[self.number] = value

class SPI:
    buses = []
    def __init__(self, id, baudrate, polarity, phase, sck, mosi, miso):
        self.config = [id, baudrate, polarity, phase, sck.number, mosi.number, miso]
        self.written = 0
        SPI.buses.append(self)
    def write(self, data):
        self.written += len(data)

class I2C:
    buses = []
    present = (0x51,)  # a BM8563; nothing else acknowledges (no touch controller here)
    def __init__(self, id, scl, sda, freq):
        self.config = [id, scl.number, sda.number, freq]
        self.regs = bytearray(16)
        self.fail = False
        I2C.buses.append(self)
    def _check(self, address):
        if self.fail:
            raise OSError(116)
        if address not in I2C.present:
            raise OSError(19)
    def readfrom_mem_into(self, address, register, buf, addrsize=8):
        self._check(address)
        buf[:] = self.regs[register:register + len(buf)]
    def writeto_mem(self, address, register, buf, addrsize=8):
        self._check(address)
        self.regs[register:register + len(buf)] = buf

class WDT:
    made = []
    def __init__(self, timeout):
        self.timeout = timeout
        self.feeds = 0
        WDT.made.append(self)
    def feed(self):
        self.feeds += 1

class RTC:
    # The port's calendar tuple over the system time, counted here from 2000 as older
    # ESP32 firmware does (the weekday of a set tuple is ignored, as the port does).
    seconds = 0
    def datetime(self, when=None):
        if when is None:
            year, month, day, hour, minute, second, weekday = civil.civil_from_seconds(
                RTC.seconds + 946684800)
            return (year, month, day, weekday, hour, minute, second, 0)
        RTC.seconds = civil.seconds_from_civil(*when[:3], *when[4:7]) - 946684800

class machine:
    RTC = RTC
    PWRON_RESET = 1
    HARD_RESET = 2
    WDT_RESET = 3
    DEEPSLEEP_RESET = 4
    SOFT_RESET = 5
    cause = 1
    Pin = Pin
    I2C = I2C
    SPI = SPI
    WDT = WDT
    @staticmethod
    def reset_cause():
        return machine.cause

sys.modules["machine"] = machine
from kiosk.hal.esp32 import Esp32Hal

def out(*values):
    print("@" + json.dumps(values))
"""

HAL_SOURCE = FAKE_MACHINE + """
board = {
    "name": "test",
    "buttons": [
        {"pin": 32, "active": "low", "pull": "up"},
        {"pin": 33, "active": "low", "pull": None},
        {"pin": 25, "active": "high", "pull": "down"},
        {"pin": 26, "active": "low"},
    ],
    "rtc": {"chip": "bm8563", "i2c": {"id": 0, "sda": 21, "scl": 22}, "address": 81},
    "watchdog_ms": 8000,
}
hal = Esp32Hal(board, screen="screen")
out("pins", Pin.made)
out("i2c", I2C.buses[0].config)
out("plain", hal.fs_root, hal.screen, hal.ticks_ms is time.ticks_ms)

Pin.levels.update({32: 1, 33: 1, 25: 0, 26: 1})  # all released
idle = hal.read_buttons()
Pin.levels.update({32: 0, 25: 1})  # press buttons 0 and 2
_ = pressed = None  # bind the globals first: adding one under the lock may grow the dict
micropython.heap_lock()
for _ in range(100):
    pressed = hal.read_buttons()
micropython.heap_unlock()
out("buttons", idle, pressed)

bus = I2C.buses[0]
for seconds in (1709251198, 4102444799, 4102444800, 946684800):
    hal.rtc_write(seconds)
    out("rtc", seconds, list(bus.regs[2:9]), hal.rtc_read(), hal.rtc_error)
bus.regs[0] = 0x20  # STOP bit left set by some other firmware
hal.rtc_write(1709251198)
out("control1", bus.regs[0])
bus.regs[2] |= 0x80  # the chip lost power since it was set
out("voltage_low", hal.rtc_read())
hal.rtc_write(1709251198)
bus.regs[5] = 0x31  # 31 February
out("impossible", hal.rtc_read())
try:
    hal.rtc_write(946684799)
    out("before_2000", "accepted")
except ValueError as error:
    out("before_2000", str(error))
bus.fail = True
out("i2c_failure", hal.rtc_read(), type(hal.rtc_error).__name__)
hal.rtc_write(1709251198)
out("i2c_failure_write", type(hal.rtc_error).__name__)

causes = []
for cause in (1, 2, 3, 4, 5, 0):
    machine.cause = cause
    causes.append(hal.reset_cause())
out("causes", causes)

power_on = hal.kept_time_read()
kept = []
for seconds in (1795421100, 1709251199, 4102444799):
    hal.kept_time_write(seconds)
    kept.append([seconds, hal.kept_time_read(), RTC().datetime()[3]])
out("kept", power_on, kept)

started_early = len(WDT.made)
hal.feed_watchdog()
hal.feed_watchdog()
out("watchdog", started_early, len(WDT.made), WDT.made[0].timeout, WDT.made[0].feeds)

bare = Esp32Hal({"buttons": [{"pin": 4, "active": "low", "pull": "up"}], "rtc": None}, None)
bare.rtc_write(1709251198)
bare.feed_watchdog()
out("bare", bare.rtc_read(), WDT.made[-1].timeout)
bare.console_write("console \\u00e9 ")
bare.console_write(b"bytes\\n")
"""


def bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def test_esp32_hal_on_the_unix_port() -> None:
    proc = run_mpy(HAL_SOURCE)
    results = {row[0]: row[1:] for row in
               (json.loads(line[1:]) for line in proc.stdout.splitlines() if line[:1] == "@")}

    # Pulls from the board data; null means no pull resistor (None to machine.Pin).
    assert results["pins"] == [[[32, 1, 2], [33, 1, None], [25, 1, 1], [26, 1, None]]]
    assert results["i2c"] == [[0, 22, 21, 400000]]
    assert results["plain"] == ["", "screen", True]
    # Active levels are turned into "pressed" here, without allocating.
    assert results["buttons"] == [0, 0b101]

    rtc_rows = [row for row in proc.stdout.splitlines() if row.startswith('@["rtc"')]
    assert len(rtc_rows) == 4
    for row in rtc_rows:
        _, seconds, regs, read_back, error = json.loads(row[1:])
        moment = datetime.fromtimestamp(seconds, UTC)
        century = 0x80 if moment.year >= 2100 else 0
        assert regs == [
            bcd(moment.second), bcd(moment.minute), bcd(moment.hour), bcd(moment.day),
            (moment.weekday() + 1) % 7, bcd(moment.month) | century, bcd(moment.year % 100),
        ], moment
        assert read_back == seconds
        assert error is None
    assert results["control1"] == [0]
    assert results["voltage_low"] == [None]
    assert results["impossible"] == [None]
    assert "2000" in results["before_2000"][0]
    assert results["i2c_failure"] == [None, "OSError"]
    assert results["i2c_failure_write"] == ["OSError"]
    # The chip's own RTC: 2000-01-01 after a power-on (the clock's kept_time refuses
    # it), and what was written reads back, with Monday as weekday 0.
    power_on, kept = results["kept"]
    assert power_on == 946684800
    for seconds, read_back, weekday in kept:
        assert read_back == seconds
        assert weekday == datetime.fromtimestamp(seconds, UTC).weekday()
    assert results["causes"] == [["power_on", "hard", "watchdog", "deep_sleep", "soft",
                                  "unknown"]]
    # The watchdog starts at the first feed, with the board's timeout (30 s by default).
    assert results["watchdog"] == [0, 1, 8000, 2]
    assert results["bare"] == [None, 30000]
    assert "console \u00e9 bytes\n" in proc.stdout


# -- the panel and touch drivers built from each board file ---------------------------------
# Stand-ins for the driver modules: each records the arguments of the driver contract in
# kiosk/drivers/__init__.py, and each module records which classes the HAL looked up, so
# the test sees that only the board's own controllers are imported.
FAKE_DRIVERS = """
looked_up = []

class FakePanel:
    def __init__(self, spi, cs, dc, rst, busy, width, height, rotation=0, busy_active=1,
                 busy_timeout_ms=30000, ticks_ms=None, sleep_ms=None, panel=None):
        self.spi = spi
        self.glass = panel
        self.report = [type(self).__name__, spi.config,
                       [cs.number, dc.number, None if rst is None else rst.number, busy.number],
                       [width, height, rotation, busy_active]]

class FakeTouch:
    def __init__(self, i2c, address, width, height, rotation=0, int_pin=None, rst_pin=None,
                 **axes):
        self.i2c = i2c
        self.report = [type(self).__name__, i2c.config, address, [width, height, rotation],
                       None if int_pin is None else int_pin.number,
                       None if rst_pin is None else rst_pin.number]
        self.axes = sorted(axes.items())
        self.started = False
    def start(self):
        self.started = True

class Ssd1680(FakePanel):
    pass

class Jd79653a(FakePanel):
    pass

class Gt911(FakeTouch):
    pass

class DriverModule:
    # Neither Ssd1681 nor Gt1151 is offered: the HAL must fall back to the sibling class.
    def __init__(self, name, classes):
        self._name = name
        self._classes = classes
    def __getattr__(self, attr):
        looked_up.append([self._name, attr])
        if attr in self._classes:
            return self._classes[attr]
        raise AttributeError(attr)

sys.modules["kiosk.drivers.ssd1680"] = DriverModule("ssd1680", {"Ssd1680": Ssd1680})
sys.modules["kiosk.drivers.jd79653a"] = DriverModule("jd79653a", {"Jd79653a": Jd79653a})
sys.modules["kiosk.drivers.gt911"] = DriverModule("gt911", {"Gt911": Gt911})

def reset_fakes():
    Pin.made.clear()
    Pin.levels.clear()
    SPI.buses.clear()
    I2C.buses.clear()
    looked_up.clear()
"""

BOARDS_SOURCE = FAKE_MACHINE + FAKE_DRIVERS + """
for name, path in %r:
    with open(path) as f:
        board = json.load(f)
    reset_fakes()
    hal = Esp32Hal(board)
    out(name, {
        "first_pin": Pin.made[0],
        "pins": Pin.made,
        "outputs": sorted([n, v] for n, v in Pin.levels.items()),
        "panel": hal.panel.report,
        "touch": None if hal.touch is None else hal.touch.report,
        "i2c": [bus.config for bus in I2C.buses],
        "looked_up": looked_up,
        "touch_shares_rtc_bus": hal.touch is not None and hal.touch.i2c is hal._i2c,
    })

# A clock chip on the touch controller's bus: one machine.I2C serves both.
with open(%r) as f:
    board = json.load(f)
board["rtc"] = {"chip": "bm8563", "i2c": {"id": 0, "sda": 21, "scl": 22}, "address": 81}
reset_fakes()
hal = Esp32Hal(board)
out("shared", len(I2C.buses), hal.touch.i2c is hal._i2c)

# Axis corrections reach the touch driver only when the board file sets them.
out("axes", hal.touch.axes)
board["touch"].update(swap_xy=True, mirror_y=True, mirror_x=False)
out("axes", Esp32Hal(board).touch.axes)

# The glass a board file names (display.panel) reaches the driver, which picks its waveform.
board["display"]["panel"] = "depg0213bn"
out("glass", Esp32Hal(board).panel.glass)

for key, controller in (("display", "il0373"), ("touch", "ft6336")):
    with open(%r) as f:
        board = json.load(f)
    board[key]["controller"] = controller
    try:
        Esp32Hal(board)
        out("unknown", key, "accepted")
    except ValueError as error:
        out("unknown", key, str(error))

reset_fakes()
bare = Esp32Hal({"buttons": [{"pin": 4, "active": "low", "pull": "up"}], "rtc": None}, "screen")
out("bare", bare.panel, bare.touch, bare.screen, looked_up)
"""

OUT, IN, PULL_UP = 3, 1, 2


def test_esp32_hal_builds_each_board_s_panel_and_touch_drivers() -> None:
    names = ["esp32-devkitc-ssd1680", "lilygo-t5-v2.3", "m5stack-coreink", "esp32-touch-epd213"]
    paths = [(name, str(BOARDS / f"{name}.json")) for name in names]
    touch_board = str(BOARDS / "esp32-touch-epd213.json")
    rows = mpy_json(BOARDS_SOURCE % (paths, touch_board, touch_board))
    results = {row[0]: row[1:] for row in rows}
    vspi = [2, 4_000_000, 0, 0, 18, 23, None]  # write-only: MISO left unassigned

    devkitc = results["esp32-devkitc-ssd1680"][0]
    assert devkitc["panel"] == ["Ssd1680", vspi, [5, 17, 16, 4], [122, 250, 90, 1]]
    assert devkitc["touch"] is None
    assert devkitc["looked_up"] == [["ssd1680", "Ssd1680"]]
    # cs idles high (deselected), dc low, reset released; BUSY is a plain input.
    assert devkitc["outputs"] == [[5, 1], [16, 1], [17, 0]]
    assert [4, IN, -1] in devkitc["pins"]

    lilygo = results["lilygo-t5-v2.3"][0]
    assert lilygo["panel"] == devkitc["panel"]
    assert [39, IN, None] in lilygo["pins"]  # pulled up on the board: no internal pull

    coreink = results["m5stack-coreink"][0]
    # The power hold is driven before anything else, or the CoreInk switches itself off.
    assert coreink["first_pin"] == [12, OUT, -1]
    assert [12, 1] in coreink["outputs"]
    assert coreink["panel"] == ["Jd79653a", vspi, [9, 15, 0, 4], [200, 200, 0, 0]]
    assert coreink["looked_up"] == [["jd79653a", "Jd79653a"]]
    assert coreink["i2c"] == [[0, 22, 21, 400_000]]
    assert [5, IN, PULL_UP] in coreink["pins"]

    touch = results["esp32-touch-epd213"][0]
    assert touch["panel"] == ["Ssd1680", vspi, [5, 17, 16, 4], [122, 250, 90, 1]]
    # The touch panel shares the e-paper panel's native size and rotation; GT1151 falls
    # back to the GT911 class when the driver module has no separate one.
    assert touch["touch"] == ["Gt911", [0, 22, 21, 400_000], 20, [122, 250, 90], 27, 26]
    assert touch["looked_up"] == [["ssd1680", "Ssd1680"], ["gt911", "Gt1151"],
                                  ["gt911", "Gt911"]]
    assert [27, IN, -1] in touch["pins"] and [26, 1] in touch["outputs"]
    assert not touch["touch_shares_rtc_bus"]  # no clock chip on this board

    assert results["shared"] == [1, True]
    assert results["glass"] == ["depg0213bn"]
    axes = [r[1] for r in rows if r[0] == "axes"]
    # The Waveshare HAT's sensor runs both axes against the panel (its board file says so).
    assert axes == [[["mirror_x", True], ["mirror_y", True]],
                    [["mirror_y", True], ["swap_xy", True]]]
    unknown = [r[1:] for r in rows if r[0] == "unknown"]
    assert unknown == [["display", "unsupported panel controller: il0373"],
                       ["touch", "unsupported touch controller: ft6336"]]
    assert results["bare"] == [None, None, "screen", []]


REAL_DRIVERS_SOURCE = FAKE_MACHINE + """
for name, path in %r:
    with open(path) as f:
        board = json.load(f)
    hal = Esp32Hal(board)
    touch = hal.touch
    out(name, type(hal.panel).__name__, hal.panel.width, hal.panel.height,
        None if touch is None else type(touch).__name__)
"""


def test_esp32_hal_builds_every_board_with_the_real_drivers() -> None:
    paths = [(path.stem, str(path)) for path in sorted(BOARDS.glob("*.json"))]
    rows = {row[0]: row[1:] for row in mpy_json(REAL_DRIVERS_SOURCE % (paths,))}
    assert sorted(rows) == sorted(name for name, _ in paths)
    for name, path in paths:
        board = json.loads(Path(path).read_text())
        display = board["display"]
        native = [display["width"], display["height"]]
        logical = native[::-1] if display["rotation"] in (90, 270) else native
        _, width, height, touch = rows[name]
        assert [width, height] == logical, name  # the drivers turn the panel, not the HAL
        assert (touch is None) == (board["touch"] is None), name
