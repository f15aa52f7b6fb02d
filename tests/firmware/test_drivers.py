"""Panel and touch drivers on the real MicroPython interpreter, against the simulated
controllers in kiosk/hal/simpanel.py: command order per datasheet and vendor driver, images
reaching the controller RAM and the glass at every rotation, the waveform each refresh runs
and the high-voltage supply, BUSY timeouts, yielding while BUSY, touch mapping and debounced
taps."""

from __future__ import annotations

import pytest

from conftest import mpy_json

PRELUDE = """
import asyncio, framebuf, json, time, micropython
from harness import FakeTicks, emit
from kiosk import ticks
from kiosk.drivers import PanelError
from kiosk.hal.simpanel import make_pair, SimTouch

clock = FakeTicks()

async def fake_sleep(ms):
    clock.advance(ms)
    await asyncio.sleep_ms(0)

def pair(controller, w, h, rotation=0, **options):
    options.setdefault("record", True)
    return make_pair(controller, w, h, clock, rotation=rotation, sleep_ms=fake_sleep, **options)

def mismatches(panel, drv):
    # Every logical pixel of the frame buffer against the glass; the mapping is a
    # bijection onto the visible panel, so this also catches padding and shifted rows.
    w, h, shown = panel.image(drv.rotation)
    glass = framebuf.FrameBuffer(shown, w, h, framebuf.MONO_HLSB)
    fb, ink = drv.framebuf, drv.INK
    bad = 0
    for y in range(h):
        for x in range(w):
            if glass.pixel(x, y) != (1 if fb.pixel(x, y) == ink else 0):
                bad += 1
    return bad

def steps(panel):
    out = panel.script()
    panel.clear_transcript()
    return out
"""

PANELS = [("ssd1680", 122, 250), ("ssd1681", 200, 200), ("jd79653a", 200, 200)]


def native(x: int, y: int, w: int, h: int, rotation: int) -> tuple[int, int]:
    """Where logical (x, y) lands on a w x h (native) panel: the documented convention."""
    return {
        0: (x, y),
        90: (w - 1 - y, x),
        180: (w - 1 - x, h - 1 - y),
        270: (y, h - 1 - x),
    }[rotation]


# -- command sequences ---------------------------------------------------------------------
SSD_SEQUENCE = PRELUDE + """
panel, drv = pair({controller!r}, {w}, {h}, {rotation})
async def main():
    await drv.init()
    emit(["init", steps(panel)])
    drv.write(True)
    await drv.update(True)
    emit(["full", steps(panel)])
    drv.framebuf.fill_rect(0, 0, 8, 8, drv.INK)
    drv.write()
    await drv.update(False)
    emit(["partial", steps(panel)])
    await drv.deep_sleep()
    emit(["sleep", steps(panel)])
    try:
        drv.write()
        emit(["after sleep", "written"])
    except PanelError as error:
        emit(["after sleep", str(error)])
    await drv.init()
    drv.write()
    await drv.update(False)
    emit(["woken", drv.last_update_full, panel.violations, panel.refreshes[-1][0]])
asyncio.run(main())
"""


def run_sequence(source: str, **fmt: object) -> dict[str, list]:
    return {row[0]: row[1:] for row in mpy_json(source.format(**fmt))}


def test_ssd1680_command_order_follows_the_datasheet() -> None:
    got = run_sequence(SSD_SEQUENCE, controller="ssd1680", w=122, h=250, rotation=0)
    # Hardware reset, BUSY, software reset, BUSY, then the configuration: driver output
    # (250 gates), data entry mode, RAM X window (16 bytes: 122 bits padded to 128), RAM Y
    # window, border, display update control 1 (normal RAM, sources from S8: the panel's
    # first column; Waveshare epd2in13_V4, GxEPD2_213_B74), internal temperature sensor,
    # display option with RAM ping-pong for display mode 2 (Waveshare epd2in13_V3's
    # partial mode), RAM address counters, BUSY.
    assert got["init"] == [[
        "rst0", "rst1", "wait", "12", "wait",
        "01:f9 00 00", "11:03", "44:00 0f", "45:00 00 f9 00",
        "3c:05", "21:00 80", "18:80", "37:00 00 00 00 00 40 00 00 00 00",
        "4e:00", "4f:00 00", "wait",
    ]]
    # Full: the frame into both RAMs (GxEPD2's writeImageForFullRefresh), so that 0x26
    # holds the picture afterwards; full update sequence (mode 1), activation, BUSY.
    assert got["full"] == [[
        "4e:00", "4f:00 00", "26[4000]", "4e:00", "4f:00 00", "24[4000]",
        "3c:05", "22:f7", "20", "wait",
    ]]
    # Partial: only the new frame (the controller's ping-pong made the shown one the old
    # image), mode 2, activation, BUSY.
    assert got["partial"] == [["4e:00", "4f:00 00", "24[4000]", "3c:80", "22:ff", "20", "wait"]]
    assert got["sleep"] == [["10:01"]]
    assert "init()" in got["after sleep"][0]
    # After a wake-up the first refresh is full whatever was asked: the glass is unknown.
    assert got["woken"] == [True, [], "full"]


def test_every_byte_is_recorded_with_its_chip_select_and_data_command_state() -> None:
    out = mpy_json(PRELUDE + """
panel, drv = pair("ssd1680", 122, 250)
async def main():
    await drv.init()
    raw = panel.raw
    flags, commands = set(), []
    for i in range(0, len(raw), 2):
        flags.add(raw[i])
        if raw[i] == 0:             # CS low, DC low: a command byte
            commands.append(raw[i + 1])
    emit([sorted(flags), commands])
asyncio.run(main())
""")
    # Only CS-low bytes (flags bit 1 clear), DC low for commands and high for data.
    assert out == [[[0, 1], [0x12, 0x01, 0x11, 0x44, 0x45, 0x3C, 0x21, 0x18, 0x37, 0x4E,
                             0x4F]]]


def test_without_a_reset_pin_deep_sleep_is_skipped_or_only_powers_off() -> None:
    out = mpy_json(PRELUDE + """
from kiosk.drivers.ssd1680 import Ssd1680
from kiosk.drivers.jd79653a import Jd79653a
from kiosk.hal.simpanel import make_panel
async def main():
    for cls, controller, w, h, active in ((Ssd1680, "ssd1680", 122, 250, 1),
                                          (Jd79653a, "jd79653a", 200, 200, 0)):
        panel = make_panel(controller, w, h, clock, record=True)
        drv = cls(panel.spi, panel.cs, panel.dc, None, panel.busy, w, h, busy_active=active,
                  ticks_ms=clock, sleep_ms=fake_sleep)
        await drv.init()
        drv.write(); await drv.update(True)
        steps(panel)
        await drv.deep_sleep()
        emit([controller, "sleep", steps(panel)])
        drv.write(); await drv.update(False)
        emit([controller, "after", steps(panel), drv.last_update_full, panel.violations])
asyncio.run(main())
""")
    assert out[0] == ["ssd1680", "sleep", []]
    assert out[1][:2] == ["ssd1680", "after"] and out[1][3:] == [False, []]
    # Every refresh already ended powered off: nothing left to do.
    assert out[2] == ["jd79653a", "sleep", []]
    # RAM still takes data, the refresh powers on first, and the glass is still known, so
    # a partial refresh stays partial.
    assert out[3][2] == [
        "10[5000]", "13[5000]", *JD_PARTIAL_LUT_LOAD, *JD_POWER_ON,
        "91", "90:00 c7 00 00 00 c7 01", "12", "wait", "92", *JD_POWER_OFF,
    ]
    assert out[3][3:] == [False, []]


def test_ssd1681_uses_its_200x200_geometry() -> None:
    got = run_sequence(SSD_SEQUENCE, controller="ssd1681", w=200, h=200, rotation=0)
    init = got["init"][0]
    # The 1.54" panels start at source S0, the reset value: no 0x21 (GxEPD2_154_D67).
    assert init[5:11] == ["01:c7 00 00", "11:03", "44:00 18", "45:00 00 c7 00", "3c:05", "18:80"]
    assert got["full"][0][2:6] == ["26[5000]", "4e:00", "4f:00 00", "24[5000]"]
    assert got["woken"][1] == []


@pytest.mark.parametrize(
    "rotation, entry, x_window, y_window, x_counter, y_counter",
    [
        # The data entry mode walks the RAM in the frame buffer's own byte order.
        (0, "11:03", "44:00 0f", "45:00 00 f9 00", "4e:00", "4f:00 00"),  # X first, Y+ X+
        (90, "11:06", "44:0f 00", "45:00 00 f9 00", "4e:0f", "4f:00 00"),  # Y first, Y+ X-
        (180, "11:00", "44:0f 00", "45:f9 00 00 00", "4e:0f", "4f:f9 00"),  # X first, Y- X-
        (270, "11:05", "44:00 0f", "45:f9 00 00 00", "4e:00", "4f:f9 00"),  # Y first, Y- X+
    ],
)
def test_ssd1680_rotation_is_data_entry_mode_and_window(
    rotation: int, entry: str, x_window: str, y_window: str, x_counter: str, y_counter: str
) -> None:
    got = run_sequence(SSD_SEQUENCE, controller="ssd1680", w=122, h=250, rotation=rotation)
    init = got["init"][0]
    assert init[6:9] == [entry, x_window, y_window]
    assert init[13:15] == [x_counter, y_counter]
    assert got["full"][0][:2] == [x_counter, y_counter]
    assert got["woken"][1] == []


JD_SEQUENCE = PRELUDE + """
panel, drv = pair("jd79653a", 200, 200, {rotation}, partial_lut={lut})
async def main():
    await drv.init()
    emit(["init", steps(panel)])
    drv.write()
    await drv.update(True)
    emit(["full", steps(panel)])
    drv.write()
    await drv.update(False)
    emit(["partial", steps(panel)])
    drv.write()
    await drv.update(True)
    emit(["full again", steps(panel)])
    await drv.deep_sleep()
    emit(["sleep", steps(panel)])
    emit(["violations", panel.violations])
asyncio.run(main())
"""
JD_LUT_SOURCE = "tuple(bytes((i, 1, 2, 3)) for i in range(5))"
# The partial waveform loaded into registers 0x20..0x24 (42 bytes each), and the power
# steps around each refresh (M5Stack's powerHVON / powerHVOFF: border setting, command,
# BUSY).
JD_PARTIAL_LUT_LOAD = ["00:ff 0e", "20[42]", "21[42]", "22[42]", "23[42]", "24[42]"]
JD_POWER_ON = ["50:d7", "04", "wait"]
JD_POWER_OFF = ["50:f7", "02", "wait"]


def jd_sequence(rotation: int = 0, lut: str = "None") -> dict[str, list]:
    return {row[0]: row[1:] for row in mpy_json(JD_SEQUENCE.format(rotation=rotation, lut=lut))}


def test_jd79653a_command_order() -> None:
    got = jd_sequence()
    # Reset, BUSY (active low), panel setting (OTP waveform, black/white, gate scan up,
    # source shift right), the panel maker's registers, resolution 200x200, TCON, VCOM and
    # data interval, power saving (M5Stack's init list, whose power-on moves to the refresh).
    assert got["init"] == [[
        "rst0", "rst1", "wait", "00:df 0e",
        "4d:55", "aa:0f", "e9:02", "b6:11", "f3:0a",
        "61:c8 00 c8", "60:00", "50:d7", "e3:00",
    ]]
    # Each refresh: power on, refresh, BUSY, power off.
    assert got["full"] == [["13[5000]", *JD_POWER_ON, "12", "wait", *JD_POWER_OFF]]
    # Partial: old image to DTM1, new to DTM2, the partial waveform into the LUT registers
    # (panel setting REG bit), power on, partial mode over the whole screen, refresh, BUSY,
    # leave partial mode, power off.
    assert got["partial"] == [[
        "10[5000]", "13[5000]", *JD_PARTIAL_LUT_LOAD, *JD_POWER_ON,
        "91", "90:00 c7 00 00 00 c7 01", "12", "wait", "92", *JD_POWER_OFF,
    ]]
    # Full again: back to the OTP waveform.
    assert got["full again"] == [[
        "10[5000]", "13[5000]", "00:df 0e", *JD_POWER_ON, "12", "wait", *JD_POWER_OFF,
    ]]
    # Already powered off: straight to deep sleep.
    assert got["sleep"] == [["07:a5"]]
    assert got["violations"] == [[]]


def test_jd79653a_partial_waveform_can_be_replaced() -> None:
    got = jd_sequence(lut=JD_LUT_SOURCE)
    assert got["partial"][0][:8] == [
        "10[5000]", "13[5000]", "00:ff 0e",
        "20:00 01 02 03", "21:01 01 02 03", "22:02 01 02 03", "23:03 01 02 03",
        "24:04 01 02 03",
    ]
    assert got["partial"][0][8:] == [
        *JD_POWER_ON, "91", "90:00 c7 00 00 00 c7 01", "12", "wait", "92", *JD_POWER_OFF,
    ]
    assert got["violations"] == [[]]


@pytest.mark.parametrize("rotation, panel_setting", [(90, "00:df 0e"), (270, "00:d3 0e")])
def test_jd79653a_quarter_turns_are_column_windows(rotation: int, panel_setting: str) -> None:
    got = jd_sequence(rotation)
    assert got["init"][0][3] == panel_setting
    full = got["full"][0]
    # Page p of the MONO_VLSB frame goes to the byte-wide RAM column 24 - p, all rows.
    columns = [f"90:{8 * c:02x} {8 * c + 7:02x} 00 00 00 c7 01" for c in range(24, -1, -1)]
    expected = ["91"]
    for window in columns:
        expected += [window, "13[200]"]
    assert full == expected + ["92", *JD_POWER_ON, "12", "wait", *JD_POWER_OFF]
    assert got["violations"] == [[]]


def test_jd79653a_half_turn_is_the_scan_mirrors() -> None:
    got = jd_sequence(180)
    assert got["init"][0][3] == "00:d3 0e"  # UD and SHL cleared: both scans reversed
    assert got["full"] == [["13[5000]", *JD_POWER_ON, "12", "wait", *JD_POWER_OFF]]


def test_the_model_flags_a_command_sent_while_busy() -> None:
    # Guards the guard: every sequence test also checks panel.violations.
    out = mpy_json(PRELUDE + """
panel, drv = pair("ssd1680", 122, 250)
async def main():
    await drv.init()
    drv._command(0x12)            # software reset: BUSY for a while
    drv._command(0x01, b"\\xf9\\x00\\x00")   # ...and no wait
    panel.spi.write(b"\\x00")      # CS is high here
    emit(panel.violations)
asyncio.run(main())
""")
    assert out == [[
        "command 0x01 sent while BUSY", "data for 0x01 sent while BUSY",
        "1 byte(s) sent with CS high",
    ]]


# -- sources, waveforms and the high-voltage supply ----------------------------------------
SOURCE_SOURCE = PRELUDE + """
from kiosk.drivers.ssd1680 import Ssd1680, Ssd1681
from kiosk.hal.simpanel import make_panel

class NoSourceMode(Ssd1680):
    SOURCE_OUTPUT = None          # the init before issue 14: no 0x21

class SourcesFromS8(Ssd1681):
    SOURCE_OUTPUT = b"\\x00\\x80"   # what the 2.13" panels need, on a 1.54" one

async def show(cls, controller, w, h):
    panel = make_panel(controller, w, h, clock, record=True)
    drv = cls(panel.spi, panel.cs, panel.dc, panel.rst, panel.busy, w, h,
              ticks_ms=clock, sleep_ms=fake_sleep)
    await drv.init()
    drv.framebuf.fill(drv.PAPER)
    drv.framebuf.vline(8, 0, h, drv.INK)     # one column of ink at x = 8
    drv.write()
    await drv.update(True)
    # Columns well inside the glass (without the 0x21 the last ones show RAM that no
    # frame writes, the 122-pixel rows' padding and beyond).
    ink = [px for px in range(w - 16) if panel.native_pixel(px, h // 2)]
    return [drv.NAME, ink, mismatches(panel, drv) > 0, panel.violations]

async def main():
    emit(await show(Ssd1680, "ssd1680", 122, 250))
    emit(await show(NoSourceMode, "ssd1680", 122, 250))
    emit(await show(Ssd1681, "ssd1681", 200, 200))
    emit(await show(SourcesFromS8, "ssd1681", 200, 200))
asyncio.run(main())
"""


def test_ssd1680_picture_is_8_pixels_over_without_sources_from_s8() -> None:
    rows = mpy_json(SOURCE_SOURCE)
    # The 2.13" panel's first column is source S8: with 0x21 0x00 0x80 the ink column
    # drawn at x = 8 is on glass column 8; without it RAM bit 8 drives glass column 0.
    assert rows[0] == ["ssd1680", [8], False, []]
    assert rows[1] == ["ssd1680", [0], True, []]
    # The 1.54" SSD1681 panel starts at S0: right without 0x21, 8 columns over with it.
    assert rows[2] == ["ssd1681", [8], False, []]
    assert rows[3] == ["ssd1681", [16], True, []]


# GxEPD2_213_BN lut_partial (the DEPG0213BN of the LilyGo T5 V2.3): its non-zero bytes.
DEPG0213BN_LUT_NONZERO = {
    1: 0x40, 12: 0x80, 13: 0x80, 24: 0x40, 25: 0x40, 37: 0x80,
    60: 0x0A, 66: 0x02, 67: 0x01, 74: 0x01,
    144: 0x22, 145: 0x22, 146: 0x22, 147: 0x22, 148: 0x22, 149: 0x22,
}

SSD_WAVEFORM_SOURCE = PRELUDE + """
panel, drv = pair("ssd1680", 122, 250, 90, panel={panel!r})
frames = []
async def refresh(full, text):
    drv.framebuf.fill(drv.PAPER)
    drv.framebuf.text(text, 4, 40, drv.INK)
    drv.write(full)
    await drv.update(full)
    frames.append(mismatches(panel, drv))

async def main():
    await drv.init()
    steps(panel)
    await refresh(True, "first")
    steps(panel)
    await refresh(False, "one")
    emit(["first partial", steps(panel)])
    await refresh(False, "two")
    emit(["second partial", steps(panel)])
    await refresh(True, "full")
    await refresh(False, "three")
    emit(["after full", steps(panel)])
    lut = panel.lut_data
    emit(["lut", None if lut is None else len(lut),
          None if lut is None else {{str(i): b for i, b in enumerate(lut) if b}}])
    # A driver that forgot the full refresh's OTP load and did not write 0x32 again:
    # display mode 2 then runs the OTP mode-1 waveform, a full flashing one.
    await refresh(True, "full")
    drv._lut_loaded = True
    await refresh(False, "stale")
    emit(["waveforms", panel.waveforms, panel.flashes, frames, panel.violations])
asyncio.run(main())
"""


def ssd_waveforms(panel: str | None) -> dict[str, list]:
    return {row[0]: row[1:] for row in mpy_json(SSD_WAVEFORM_SOURCE.format(panel=panel))}


def test_depg0213bn_partial_refresh_runs_the_panel_makers_waveform() -> None:
    got = ssd_waveforms("depg0213bn")
    write = ["4e:0f", "4f:00 00", "24[4000]"]
    # Partial: border held, the register waveform (0x32, GxEPD2_213_BN) written once, then
    # clock and analog on, display mode 2 without the OTP load, analog and clock off (the
    # LilyGO GxDEPG0213BN driver's 0xCF).
    assert got["first partial"] == [
        [*write, "3c:80", "32[153]", "22:cf", "20", "wait"]]
    assert got["second partial"] == [[*write, "3c:80", "22:cf", "20", "wait"]]
    # A full refresh loads the OTP waveform over the register: written again after it.
    assert got["after full"][0][-5:] == ["3c:80", "32[153]", "22:cf", "20", "wait"]
    assert got["lut"] == [153, {str(i): b for i, b in DEPG0213BN_LUT_NONZERO.items()}]
    waveforms, flashes, frames, violations = got["waveforms"]
    assert waveforms == ["otp-full", "register", "register", "otp-full", "register",
                         "otp-full", "otp-full"]
    # Only the full refreshes flash, and the forgotten reload is caught as one more.
    assert flashes == 4
    assert frames == [0] * 7
    assert violations == []


def test_other_ssd1680_panels_keep_their_otp_partial_waveform() -> None:
    got = ssd_waveforms(None)
    assert got["first partial"][0][-4:] == ["3c:80", "22:ff", "20", "wait"]
    assert got["lut"] == [None, None]
    waveforms, flashes, frames, violations = got["waveforms"]
    assert waveforms == ["otp-full", "otp-partial", "otp-partial", "otp-full", "otp-partial",
                         "otp-full", "otp-partial"]
    assert flashes == 3
    assert frames == [0] * 7
    assert violations == []


JD_WAVEFORM_SOURCE = PRELUDE + """
panel, drv = pair("jd79653a", 200, 200, 0)
frames, powered = [], []
async def refresh(full, text):
    drv.framebuf.fill(drv.PAPER)
    drv.framebuf.text(text, 4, 40, drv.INK)
    drv.write(full)
    await drv.update(full)
    frames.append(mismatches(panel, drv))
    powered.append(panel.powered)

async def main():
    await drv.init()
    for full, text in ((True, "a"), (False, "b"), (False, "c"), (False, "d"), (True, "e"),
                       (False, "f")):
        await refresh(full, text)
    luts = {"%02x" % k: [len(v), list(v[:14])] for k, v in panel.luts.items()}
    emit(["run", panel.waveforms, panel.flashes, frames, powered, panel.hv_left_on,
          panel.hv_on_ms > 0, luts, panel.violations])
    # Left out, the partial waveform: after a full refresh the driver believes it loaded,
    # the panel setting still selects the OTP waveform, and the partial refresh flashes
    # the window.
    await refresh(True, "g")
    drv._register_lut = True
    flashes = panel.flashes
    await refresh(False, "h")
    emit(["no partial LUT", panel.waveforms[-1], panel.flashes - flashes, frames[-1]])
    # Left out, the power-off: the next refresh starts on a supply left on.
    async def stay_on():
        pass
    drv._power_off = stay_on
    await refresh(False, "i")
    await refresh(False, "j")
    emit(["supply left on", powered[-2:], panel.hv_left_on])
asyncio.run(main())
"""


def test_jd79653a_partial_refreshes_never_flash_and_the_supply_is_off_between() -> None:
    got = {row[0]: row[1:] for row in mpy_json(JD_WAVEFORM_SOURCE)}
    waveforms, flashes, frames, powered, left_on, was_on, luts, violations = got["run"]
    assert waveforms == ["otp", "register", "register", "register", "otp", "register"]
    assert flashes == 2  # the two full refreshes, none of the partial ones
    assert frames == [0] * 6
    assert powered == [False] * 6
    assert left_on == 0 and was_on
    # M5Stack's CoreInk library (WFT0154CZB3_INIT.h) and GxEPD2_154_M09: the first two
    # groups of each partial table, 42 bytes sent per register.
    same = [0x01, 0x04, 0x04, 0x03, 0x01, 0x01, 0x01] + [0] * 7
    assert luts == {
        "20": [42, [0x01, 0x04, 0x04, 0x03, 0x01, 0x01, 0x01, 0, 0, 0, 0, 0, 0x01, 0]],
        "21": [42, same],
        "22": [42, [0x01, 0x84, 0x84, 0x83, 0x01, 0x01, 0x01] + [0] * 7],
        "23": [42, [0x01, 0x44, 0x44, 0x43, 0x01, 0x01, 0x01] + [0] * 7],
        "24": [42, same],
    }
    assert violations == []
    assert got["no partial LUT"] == ["otp", 1, 0]
    assert got["supply left on"] == [[True, True], 1]


# -- images at every rotation -------------------------------------------------------------
IMAGE_SOURCE = PRELUDE + """
panel, drv = pair({controller!r}, {w}, {h}, {rotation})
fb, INK, PAPER = drv.framebuf, drv.INK, drv.PAPER
W, H = drv.width, drv.height

def corners_and_diagonal():
    fb.fill(PAPER)
    for x, y in ((0, 0), (W - 1, 0), (0, H - 1), (W - 1, H - 1)):
        fb.pixel(x, y, INK)
    fb.line(0, 0, min(W, H) - 1, min(W, H) - 1, INK)

def corner_bits():
    # (glass, new RAM bit) at each native position the test asks about
    return [[panel.native_pixel(px, py), panel.ram_bit(px, py)] for px, py in {points!r}]

async def main():
    await drv.init()
    corners_and_diagonal()
    drv.write(True)
    await drv.update(True)
    emit(["logical size", W, H])
    emit(["corners", corner_bits()])
    emit(["full", mismatches(panel, drv)])
    frames = []
    fb.fill(PAPER); fb.text("DeskPulse", 3, 9, INK); fb.rect(5, 30, 40, 20, INK)
    drv.write(); await drv.update(False)
    frames.append(mismatches(panel, drv))
    fb.fill(PAPER); fb.text("Merci!", 20, 40, INK); fb.fill_rect(W - 30, H - 25, 20, 15, INK)
    drv.write(); await drv.update(False)
    frames.append(mismatches(panel, drv))
    # Two writes before one refresh (a redraw merged into the next): the glass must end
    # up showing the second, and the old-image RAM must still match the glass.
    fb.fill(PAPER); fb.ellipse(W // 2, H // 2, 20, 12, INK, True)
    drv.write()
    fb.fill(PAPER); fb.text("Gracias", 1, H - 9, INK); fb.vline(W // 3, 0, H, INK)
    drv.write(); await drv.update(False)
    frames.append(mismatches(panel, drv))
    fb.fill(INK); fb.fill_rect(8, 8, W - 16, H - 16, PAPER)
    drv.write(True); await drv.update(True)
    frames.append(mismatches(panel, drv))
    fb.fill(PAPER); fb.text("Danke", 0, 0, INK)
    drv.write(); await drv.update(False)
    frames.append(mismatches(panel, drv))
    emit(["frames", frames])
    emit(["refreshes", [kind for kind, _ in panel.refreshes]])
    emit(["violations", panel.violations])
asyncio.run(main())
"""


@pytest.mark.parametrize("controller, w, h", PANELS)
@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.slow
def test_images_reach_ram_and_glass_at_every_rotation(
    controller: str, w: int, h: int, rotation: int
) -> None:
    lw, lh = (h, w) if rotation in (90, 270) else (w, h)
    logical_corners = [(0, 0), (lw - 1, 0), (0, lh - 1), (lw - 1, lh - 1)]
    probes = [native(x, y, w, h, rotation) for x, y in logical_corners]
    got = {row[0]: row[1:] for row in mpy_json(
        IMAGE_SOURCE.format(controller=controller, w=w, h=h, rotation=rotation,
                            points=probes))}
    assert got["logical size"] == [lw, lh]
    corners = got["corners"][0]
    # Each logical corner is ink on the glass at the native position of the convention,
    # and its RAM bit is 0 (RAM: 1 = white).
    assert corners == [[1, 0]] * 4
    assert got["full"] == [0]
    assert got["frames"] == [[0, 0, 0, 0, 0]]
    assert got["refreshes"] == [["full", "partial", "partial", "partial", "full", "partial"]]
    assert got["violations"] == [[]]


def test_white_probe_next_to_a_corner_stays_white() -> None:
    # The native pixel beside the top-left corner at rotation 90 on the 122-wide panel is
    # white: a 6-bit padding shift gone wrong would move the corner onto it.
    w, h = 122, 250
    probes = [native(0, 0, w, h, 90), (w - 2, 0), (w - 1, 1)]
    got = {row[0]: row[1:] for row in mpy_json(
        IMAGE_SOURCE.format(controller="ssd1680", w=w, h=h, rotation=90, points=probes))}
    assert got["corners"][0] == [[1, 0], [0, 1], [0, 1]]


@pytest.mark.parametrize("controller, w, h, rotation", [
    ("ssd1680", 122, 250, 90), ("jd79653a", 200, 200, 270), ("ssd1681", 200, 200, 180)])
@pytest.mark.slow
def test_the_image_view_agrees_with_pixel_by_pixel_lookups(
    controller: str, w: int, h: int, rotation: int
) -> None:
    out = mpy_json(PRELUDE + f"""
panel, drv = pair({controller!r}, {w}, {h}, {rotation})
async def main():
    await drv.init()
    drv.framebuf.text("xy", 2, 3, drv.INK)
    drv.framebuf.line(0, 0, 60, 90, drv.INK)
    drv.write(); await drv.update(True)
    lw, lh, shown = panel.image({rotation})
    glass = framebuf.FrameBuffer(shown, lw, lh, framebuf.MONO_HLSB)
    bad = 0
    for y in range(lh):
        for x in range(lw):
            if glass.pixel(x, y) != panel.pixel(x, y, {rotation}):
                bad += 1
    emit([bad, mismatches(panel, drv)])
asyncio.run(main())
""")
    assert out == [[0, 0]]


def test_write_allocates_nothing_at_any_rotation() -> None:
    # The refresh task writes a frame per screen change: no garbage from the driver.
    # (A null bus here: the simulated one records bytes, which allocates.)
    out = mpy_json("""
import micropython
from harness import emit
from kiosk.drivers.ssd1680 import Ssd1680, Ssd1681
from kiosk.drivers.jd79653a import Jd79653a
class Pin:
    def value(self, level=None):
        return 0
class Bus:
    def write(self, data):
        pass
results = []
result = ""
for cls, w, h in ((Ssd1680, 122, 250), (Ssd1681, 200, 200), (Jd79653a, 200, 200)):
    for rotation in (0, 90, 180, 270):
        drv = cls(Bus(), Pin(), Pin(), Pin(), Pin(), w, h, rotation=rotation)
        drv._asleep = False   # as after init()
        micropython.heap_lock()
        try:
            drv.write(True)   # a full refresh's frame (the SSD168x: into both RAMs)
            drv._known = True     # as after that refresh
            drv._pending = False
            drv.write()       # a partial one's (the JD79653A: the old image first)
            result = "ok"
        except MemoryError:
            result = "allocated"
        micropython.heap_unlock()
        results.append(result)
emit(results)
""")
    assert out == [["ok"] * 12]


STALE_SOURCE = PRELUDE + """
panel, drv = pair({controller!r}, {w}, {h}, 90)
{omission}
fb, INK, PAPER = drv.framebuf, drv.INK, drv.PAPER
async def main():
    await drv.init()
    frames = []
    # Views whose pixels go ink, paper, ink again across partial refreshes, with a full
    # refresh in the middle: a stale previous image leaves some of them wrong.
    views = (("Bonjour", 0), ("Hello", 0), ("Bonjour", 1), ("Hallo", 0), ("Hej", 1),
             ("Ciao", 0), ("Hola", 0))
    for i, (text, shift) in enumerate(views):
        fb.fill(PAPER)
        fb.text(text, 6 + 4 * shift, 20 + 6 * i, INK)
        fb.fill_rect(30 * (i % 3), 70, 25, 25, INK)
        full = i in (0, 4)
        drv.write(full)
        await drv.update(full)
        frames.append(mismatches(panel, drv))
    emit([frames, [kind for kind, _ in panel.refreshes], panel.violations])
asyncio.run(main())
"""
# Each left-out step that keeps the previous-image RAM in step.
NO_PING_PONG = """
send = drv._command
def without_ping_pong(command, data=None):
    if command != 0x37:
        send(command, data)
drv._command = without_ping_pong
"""
NO_FULL_PREVIOUS = """
send_frame = drv._send_frame
def new_ram_only(command):
    if command != 0x26:
        send_frame(command)
drv._send_frame = new_ram_only
"""
NO_RESTORE = """
send = drv._command
def without_old_image(command, data=None):
    if command != 0x10:
        send(command, data)
drv._command = without_old_image
"""


@pytest.mark.parametrize("controller, w, h, omission", [
    ("ssd1680", 122, 250, ""), ("ssd1681", 200, 200, ""), ("jd79653a", 200, 200, ""),
    ("ssd1680", 122, 250, NO_PING_PONG), ("ssd1681", 200, 200, NO_PING_PONG),
    ("ssd1680", 122, 250, NO_FULL_PREVIOUS), ("jd79653a", 200, 200, NO_RESTORE),
])
def test_partial_refreshes_need_the_previous_image_in_step(
    controller: str, w: int, h: int, omission: str
) -> None:
    frames, refreshes, violations = mpy_json(STALE_SOURCE.format(
        controller=controller, w=w, h=h, omission=omission))[0]
    assert refreshes == ["full", "partial", "partial", "partial", "full", "partial", "partial"]
    assert violations == []
    if not omission:
        assert frames == [0] * 7
    elif omission is NO_FULL_PREVIOUS:
        # The first partial after each full refresh compares with a 0x26 the full one
        # never saw; the ping-pong mends the ones after it.
        assert frames[0] == frames[4] == 0 and frames[1] > 0 and frames[5] > 0
    else:
        # Right after a full refresh, then wrong from the second partial one on.
        assert frames[0] == frames[4] == 0 and frames[2] > 0 and frames[6] > 0


def test_ssd1680_keeps_no_second_frame() -> None:
    # The previous image lives in the controller (RAM ping-pong), so the driver holds one
    # frame buffer and a scratch column; the JD79653A keeps its copy of the last frame.
    out = mpy_json("""
import gc
from harness import emit
from kiosk.drivers.ssd1680 import Ssd1680
from kiosk.drivers.jd79653a import Jd79653a
class Pin:
    def value(self, level=None):
        return 0
class Bus:
    def write(self, data):
        pass
sizes = []
for cls, w, h, rotation in ((Ssd1680, 122, 250, 90), (Ssd1680, 122, 250, 0),
                            (Jd79653a, 200, 200, 0)):
    gc.collect()
    before = gc.mem_alloc()
    drv = cls(Bus(), Pin(), Pin(), Pin(), Pin(), w, h, rotation=rotation)
    gc.collect()
    sizes.append([len(drv.buffer), gc.mem_alloc() - before])
    drv = None
emit(sizes)
""")
    (frame_90, heap_90), (frame_0, heap_0), (jd_frame, jd_heap) = out[0]
    assert frame_90 == frame_0 == 4000 and jd_frame == 5000
    # Beyond the frame: the instance, the framebuf object, parameter bytes and, at 90
    # degrees, the 250-byte scratch column (about 1.3-1.7 KB on the 64-bit port, 0.7-1 KB
    # on the 32-bit one); with a second frame it was over 5 KB.
    assert heap_90 - frame_90 < 2500
    assert heap_0 - frame_0 < 2500
    assert jd_heap > 2 * jd_frame


def test_a_wrong_old_image_shows_on_the_simulated_glass() -> None:
    # The model's partial refresh only moves pixels where old and new RAM differ, so a
    # driver that got 0x26 wrong would be caught by the image tests above.
    out = mpy_json(PRELUDE + """
panel, drv = pair("ssd1680", 122, 250, 90)
async def main():
    await drv.init()
    drv.framebuf.fill(drv.PAPER)
    drv.write(); await drv.update(True)
    drv.framebuf.text("ABC", 10, 10, drv.INK)
    drv.write()
    panel.ram_old[:] = panel.ram_new   # as if the driver had sent the new image as old
    await drv.update(False)
    emit(mismatches(panel, drv))
asyncio.run(main())
""")
    assert out[0] > 0


# -- BUSY: timeouts and yielding ------------------------------------------------------------
def test_dead_panel_raises_panel_error_instead_of_hanging() -> None:
    out = mpy_json(PRELUDE + """
async def attempt(coro):
    try:
        await coro
        return "finished"
    except PanelError as error:
        return str(error)

async def main():
    for controller, w, h in (("ssd1680", 122, 250), ("jd79653a", 200, 200)):
        # BUSY never clears from the start: init reports it.
        panel, drv = pair(controller, w, h, dead=True, busy_timeout_ms=2000)
        emit(["init", controller, await attempt(drv.init())])
        # A panel that dies after init: the refresh reports it, a later init recovers,
        # and the next refresh is full (the glass is unknown again).
        panel, drv = pair(controller, w, h)
        await drv.init()
        drv.write(); await drv.update(True)
        panel.dead = True
        drv.write()
        emit(["update", controller, await attempt(drv.update(False))])
        panel.dead = False
        await drv.init()
        drv.write()
        emit(["recovered", controller, await attempt(drv.update(False)), drv.last_update_full])
asyncio.run(main())
""")
    rows = {(row[0], row[1]): row[2:] for row in out}
    for controller in ("ssd1680", "jd79653a"):
        message = rows[("init", controller)][0]
        assert "BUSY" in message and "2000 ms" in message
        assert "BUSY" in rows[("update", controller)][0]
        assert rows[("recovered", controller)] == ["finished", True]


def test_dead_panel_on_real_time_does_not_block_other_tasks() -> None:
    out = mpy_json(PRELUDE + """
def real_ticks():
    return time.ticks_diff(time.ticks_ms(), 0) & ticks.MASK

panel, drv = make_pair("ssd1680", 122, 250, real_ticks, dead=True, busy_timeout_ms=150)
beats = [0]
async def heartbeat():
    while True:
        beats[0] += 1
        await asyncio.sleep_ms(5)
async def main():
    task = asyncio.create_task(heartbeat())
    try:
        await drv.init()
        result = "finished"
    except PanelError:
        result = "PanelError"
    task.cancel()
    emit([result, beats[0] > 1])
asyncio.run(main())
""")
    assert out == [["PanelError", True]]


YIELD_SOURCE = PRELUDE + """
def real_ticks():
    return time.ticks_diff(time.ticks_ms(), 0) & ticks.MASK

async def measure(panel, drv, nap):
    seen = []    # the other task's view of BUSY each time it runs
    done = [False]
    async def other():
        while not done[0]:
            seen.append(drv.busy())
            await nap()
    await drv.init()
    drv.write()
    task = asyncio.create_task(other())
    await drv.update(True)
    done[0] = True
    await task
    return seen.count(True)

async def fake_nap():
    await asyncio.sleep_ms(0)

async def real_nap():
    await asyncio.sleep_ms(2)

async def main():
    for controller, w, h in (("ssd1680", 122, 250), ("jd79653a", 200, 200)):
        panel, drv = pair(controller, w, h)
        emit(["fake time", controller, await measure(panel, drv, fake_nap)])
        panel, drv = make_pair(controller, w, h, real_ticks, full_ms=60, reset_ms=5)
        emit(["real time", controller, await measure(panel, drv, real_nap)])
asyncio.run(main())
"""


def test_update_yields_to_other_tasks_while_busy() -> None:
    rows = mpy_json(YIELD_SOURCE)
    assert len(rows) == 4
    for _clock, _controller, busy_views in rows:
        # The other task ran while the refresh had BUSY active, i.e. the driver awaited.
        assert busy_views > 0


# -- touch ------------------------------------------------------------------------------------
TOUCH_SOURCE = PRELUDE + """
from kiosk.drivers.gt911 import Gt911, Gt1151
async def main():
    for chip, cls, address in (("gt911", Gt911, 0x5D), ("gt1151", Gt1151, 0x14)):
        for rotation in (0, 90, 180, 270):
            sim = SimTouch(chip, address)
            touch = cls(sim, address, {w}, {h}, rotation=rotation)
            product = touch.start()   # no pins wired here: it only finds the chip
            got = [touch.read()]
            for px, py in {points!r}:
                sim.touch(px, py)
                got.append(touch.read())
            sim.release()
            got.append(touch.read())
            emit([chip, rotation, product, got, sim.violations, touch.errors])
asyncio.run(main())
"""


def logical(px: int, py: int, w: int, h: int, rotation: int) -> list[int]:
    for x in range(h if rotation in (90, 270) else w):
        for y in range(w if rotation in (90, 270) else h):
            if native(x, y, w, h, rotation) == (px, py):
                return [x, y]
    raise AssertionError("no logical pixel")


def test_touch_reports_become_logical_points_at_every_rotation() -> None:
    w, h = 122, 250
    points = [(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1), (10, 200), (130, 300)]
    rows = mpy_json(TOUCH_SOURCE.format(w=w, h=h, points=points))
    assert len(rows) == 8
    for chip, rotation, product, got, violations, errors in rows:
        assert product == ("911" if chip == "gt911" else "1158")
        assert violations == [] and errors == 0
        assert got[0] is None and got[-1] is None
        clamped = [(min(px, w - 1), min(py, h - 1)) for px, py in points]
        # Each point is the inverse of the panel's rotation: drawn there, touched there.
        assert got[1:-1] == [logical(px, py, w, h, rotation) for px, py in clamped], (
            chip, rotation)


def test_touch_between_reports_keeps_the_last_state_and_acknowledges_each_report() -> None:
    out = mpy_json(PRELUDE + """
from kiosk.drivers.gt911 import Gt911
sim = SimTouch("gt911", 0x5D, auto_report=False)
touch = Gt911(sim, 0x5D, 200, 200, mirror_x=True)
sim.touch(20, 30)
got = [touch.read(), touch.read(), touch.read()]   # one report, then "not ready" twice
acks = sim.acks
sim.release()
got += [touch.read(), touch.read()]
sim.fail = True                                     # the bus breaks while released
got.append(touch.read())
emit([got, acks, sim.acks, touch.errors])
""")
    assert out == [[[[179, 30]] * 3 + [None, None, None], 1, 2, 1]]


def test_touch_swap_and_mirror_for_a_sensor_with_other_axes() -> None:
    out = mpy_json(PRELUDE + """
from kiosk.drivers.gt911 import Gt911
sim = SimTouch("gt911", 0x5D)
touch = Gt911(sim, 0x5D, 122, 250, swap_xy=True, mirror_y=True)
sim.touch(240, 100)   # the sensor's X runs along the panel's 250-pixel side
emit(touch.read())
""")
    assert out == [[100, 9]]


def test_touch_found_at_the_other_goodix_address_and_missing_elsewhere() -> None:
    out = mpy_json(PRELUDE + """
from kiosk.drivers.gt911 import Gt1151
found = Gt1151(SimTouch("gt1151", 0x14), 0x5D, 122, 250)
missing = Gt1151(SimTouch("gt1151", 0x38), 0x14, 122, 250)
emit([found.start(), found.address, found.error, missing.start(), missing.error,
      missing.read()])
""")
    assert out == [["1158", 0x14, None, None,
                    "no touch controller answers at 0x14 or 0x5d", None]]


# -- taps ----------------------------------------------------------------------------------
def taps(readings: list[int], down: int = 2, up: int = 3) -> list[int]:
    out = mpy_json(f"""
from kiosk.touch import TouchTaps
from harness import emit
readings = {readings!r}
position = [0]
def read():
    value = readings[position[0]]
    position[0] += 1
    return value
t = TouchTaps(read, {down}, {up})
got = []
for _ in readings:
    t.poll()
    p = t.pop()
    while p >= 0:
        got.append(p)
        p = t.pop()
emit([got, t.taps])
""")
    assert out[0][1] == len(out[0][0])
    return out[0][0]


P = (40 << 16) | 17
Q = (41 << 16) | 18


def test_a_bouncing_touch_down_taps_once() -> None:
    assert taps([-1, P, -1, P, -1, P, Q, Q, -1, Q, -1, -1, -1, -1, -1]) == [Q]


def test_a_single_noisy_report_is_no_tap() -> None:
    assert taps([-1, P, -1, -1, P, -1, -1]) == []


def test_a_finger_flickering_off_while_sliding_does_not_tap_again() -> None:
    assert taps([P, P, P, -1, -1, Q, Q, -1, Q, Q]) == [P]


def test_two_touches_tap_twice_at_their_own_places() -> None:
    assert taps([P, P, -1, -1, -1, Q, Q, Q]) == [P, Q]


def test_taps_from_the_driver_with_a_bouncing_finger() -> None:
    out = mpy_json(PRELUDE + """
from kiosk.drivers.gt911 import Gt911, unpack
from kiosk.touch import TouchTaps
sim = SimTouch("gt911", 0x5D)
touch = Gt911(sim, 0x5D, 122, 250, rotation=90)
taps = TouchTaps(touch.read_xy, 2, 3)
got = []
def poll(n):
    for _ in range(n):
        taps.poll()
        p = taps.pop()
        while p >= 0:
            got.append(list(unpack(p)))
            p = taps.pop()
for _ in range(4):        # contact bounce as the finger lands at panel (100, 30)
    sim.touch(100, 30); poll(1)
    sim.release(); poll(1)
sim.touch(100, 30); poll(10)
sim.release(); poll(1)
sim.touch(101, 31); poll(2)   # flicker while lifting: no second tap
sim.release(); poll(10)
sim.touch(5, 200); poll(3)    # a second, separate touch
sim.release(); poll(5)
emit(got)
""")
    assert out == [[logical(100, 30, 122, 250, 90), logical(5, 200, 122, 250, 90)]]


def test_touch_hot_path_allocates_nothing() -> None:
    """Driver read, debouncing and popping run under micropython.heap_lock(); and the
    lock does catch an allocation (the tuple-returning read()), so the test can fail."""
    out = mpy_json(PRELUDE + """
from kiosk.drivers.gt911 import Gt1151
from kiosk.touch import TouchTaps
sim = SimTouch("gt1151", 0x14)
touch = Gt1151(sim, 0x14, 122, 250, rotation=270)
taps = TouchTaps(touch.read_xy, 2, 3)
poll, pop, press, lift = taps.poll, taps.pop, sim.touch, sim.release
total = bytearray(1)
def cycle(n):
    for k in range(n):
        press(k & 63, (k * 7) & 127)
        for _ in range(4):
            poll()
        lift()
        for _ in range(4):
            poll()
            p = pop()
            while p >= 0:
                total[0] = (total[0] + 1) & 0xFF
                p = pop()
cycle(2)
locked = tuple_read = "unset"   # a new global under the lock would allocate itself
micropython.heap_lock()
try:
    cycle(100)
    locked = "ok"
except MemoryError:
    locked = "allocated"
micropython.heap_unlock()
press(10, 20)
micropython.heap_lock()
try:
    touch.read()
    tuple_read = "ok"
except MemoryError:
    tuple_read = "allocated"
micropython.heap_unlock()
emit([locked, tuple_read, taps.taps, sim.acks > 0])
""")
    assert out == [["ok", "allocated", 102, True]]
