# Fitipower JD79653A e-paper controller: the M5Stack CoreInk's 1.54" 200x200 GDEW0154M09
# panel. Same interface as kiosk/drivers/ssd1680.py (see kiosk/drivers/__init__.py).
#
# Controller RAM: 1 bit per pixel (1 = white with the data polarity set below), bytes of 8
# horizontal pixels, most significant bit leftmost. DTM1 (0x10) takes the image shown now
# ("old"), DTM2 (0x13) the image to show; the refresh (0x12) drives the pixels from old to
# new. BUSY is active LOW on this chip (busy_active=0 in the board data).
#
# Rotation costs nothing here: the panel setting (0x00) mirrors the gate scan (UD) and the
# source shift (SHL) in hardware, and the partial window (0x90) lets write() place each
# MONO_VLSB page of a 90/270 frame as one byte-wide column of RAM:
#   rotation  logical (x, y) -> panel (px, py)  framebuf   mirrors    RAM writes
#   0         (x, y)                            MONO_HLSB  none       whole screen
#   90        (W-1-y, x)                        MONO_VLSB  none       page p -> column W/8-1-p
#   180       (W-1-x, H-1-y)                    MONO_HLSB  UD + SHL   whole screen
#   270       (y, H-1-x)                        MONO_VLSB  UD + SHL   page p -> column W/8-1-p
# (the same convention as the SSD1680 driver and the GT911 touch mapping).
#
# Waveforms. Full refreshes run the panel's OTP waveform (panel setting REG bit clear).
# That is the full, flashing waveform, in partial mode (0x91) too, where it flashes the
# window. So partial refreshes load the five LUT registers 0x20-0x24 (VCOM,
# white to white, black to white, white to black, black to black) with the panel maker's
# partial waveform, as M5Stack's CoreInk library (Ink_eSPI switchMode) and GxEPD2_154_M09
# do, and set the REG bit; the next full refresh clears it again. partial_lut replaces
# that waveform (five buffers for 0x20..0x24).
#
# Power. POWER_ON (0x04) raises the panel's high-voltage supply and POWER_OFF (0x02)
# lowers it, each with BUSY until done. Left on between refreshes the supply keeps driving
# the glass (GxEPD2 documents its powerOff() as what keeps a picture from fading), so
# every refresh ends with a power-off and the next one starts with a power-on, as
# M5Stack's powerHVOFF / powerHVON do: VCOM and data interval 0xF7 while off, back to
# 0xD7 before powering on.
#
# The previous image. The refresh compares DTM1 (old) with DTM2 (new) pixel by pixel, and
# no source shows the controller putting the frame it showed into DTM1 by itself: every
# reference driver sends it. M5Stack's CoreInk library (Ink_eSPI::drawBuff, before its
# move to M5GFX) keeps the last frame in the microcontroller (_lastbuff) and sends it to
# 0x10 before the new one goes to 0x13; GxEPD2_154_M09 (GxEPD2_BW::display, then
# writeImageAgain) and M5GFX's Panel_GDEW0154M09 (_close_transfer, just before a drawing
# touches the buffer again) send the shown frame to 0x10 from their one frame buffer
# once the refresh is over, which holds the drawing of the next view until then. Here the
# screens draw the next view while the panel refreshes (the refresh never holds up
# input), so this driver keeps M5Stack's way: a copy of the last frame written (the
# shadow, 5000 bytes at 200x200) goes back into DTM1 before the new frame goes to DTM2,
# and the buffer is free as soon as write() returns. (The SSD1680 needs no copy: its RAM
# ping-pong does this step; see kiosk/drivers/ssd1680.py.)

import framebuf
from kiosk.drivers.epd import EpdBus
from micropython import const

_PANEL_SETTING = const(0x00)
_POWER_OFF = const(0x02)
_POWER_ON = const(0x04)
_DEEP_SLEEP = const(0x07)
_DATA_OLD = const(0x10)  # DTM1
_REFRESH = const(0x12)
_DATA_NEW = const(0x13)  # DTM2
_LUT_FIRST = const(0x20)  # VCOM, WW, BW, WB, BB: 0x20..0x24
_VCOM_DATA_INTERVAL = const(0x50)
_TCON = const(0x60)
_RESOLUTION = const(0x61)
_PARTIAL_WINDOW = const(0x90)
_PARTIAL_IN = const(0x91)
_PARTIAL_OUT = const(0x92)
_POWER_SAVING = const(0xE3)

# Panel setting, first byte: RES[1:0]=11 (resolution from 0x61), REG (LUT from registers),
# KW mode (black/white), UD (gate scan up), SHL (source shift right), booster on, no soft
# reset. The second byte is the value the panel maker's init uses.
_PSR_BASE = const(0xC3 | 0x10)
_PSR_REG = const(0x20)
_PSR_UD = const(0x08)
_PSR_SHL = const(0x04)
_PSR_SECOND = const(0x0E)

# Settings from the panel maker's (Good Display / M5Stack) init for the GDEW0154M09, in
# their order. 0x4D, 0xAA, 0xE9, 0xB6 and 0xF3 are Fitipower-internal registers that the
# JD79653A datasheet does not describe; booster soft start and power settings are left at
# the chip's defaults, as that init does.
_VENDOR_REGISTERS = (
    (0x4D, b"\x55"),
    (0xAA, b"\x0f"),
    (0xE9, b"\x02"),
    (0xB6, b"\x11"),
    (0xF3, b"\x0a"),
)
_TCON_DEFAULT = b"\x00"
_BORDER_FLOATING_WHITE_IS_1 = b"\xd7"  # VBD=11 border floats, DDX=01: RAM bit 1 = white
_CDI_POWERED_OFF = b"\xf7"  # M5Stack's value around POWER_OFF (DDX bit 1 set)
_POWER_SAVING_OFF = b"\x00"
_SLEEP_CHECK = b"\xa5"

# The GDEW0154M09's partial waveform, from M5Stack's CoreInk library (WFT0154CZB3_INIT.h,
# the same values as GxEPD2_154_M09's *_partial tables): per register 42 bytes, six groups
# of 7 (a level-select byte, four phase lengths in frames, two repeat counts). Only the
# first group drives: one short phase pair per transition, the black-going ones with the
# opposite polarity of the white-going ones; the VCOM table repeats once more.
_PARTIAL_VCOM = (
    b"\x01\x04\x04\x03\x01\x01\x01" b"\x00\x00\x00\x00\x00\x01\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
)
_PARTIAL_SAME = (  # white to white and black to black
    b"\x01\x04\x04\x03\x01\x01\x01" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
)
_PARTIAL_TO_WHITE = (  # black to white
    b"\x01\x84\x84\x83\x01\x01\x01" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
)
_PARTIAL_TO_BLACK = (  # white to black
    b"\x01\x44\x44\x43\x01\x01\x01" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00" b"\x00\x00\x00\x00\x00\x00\x00"
)
# Registers 0x20..0x24: VCOM, WW, BW, WB, BB.
PARTIAL_LUT = (_PARTIAL_VCOM, _PARTIAL_SAME, _PARTIAL_TO_WHITE, _PARTIAL_TO_BLACK,
               _PARTIAL_SAME)

_POLL_MS = const(10)
_BUSY_TIMEOUT_MS = const(5000)  # full refresh ~0.9 s


class Jd79653a(EpdBus):
    NAME = "jd79653a"
    INK = 0
    PAPER = 1

    def __init__(self, spi, cs, dc, rst, busy, width, height, rotation=0, busy_active=0,
                 busy_timeout_ms=_BUSY_TIMEOUT_MS, ticks_ms=None, sleep_ms=None,
                 poll_ms=_POLL_MS, partial_lut=None, panel=None):
        if panel is not None:
            raise ValueError("no partial waveform for panel %s" % panel)
        if width % 8 or not (0 < width <= 256 and 0 < height <= 512):
            raise ValueError("jd79653a: width must be a multiple of 8 up to 256, not %d" % width)
        if rotation not in (0, 90, 180, 270):
            raise ValueError("rotation must be 0, 90, 180 or 270")
        if partial_lut is None:
            partial_lut = PARTIAL_LUT
        elif len(partial_lut) != 5:
            raise ValueError("partial_lut: five tables, for registers 0x20..0x24")
        EpdBus.__init__(self, spi, cs, dc, rst, busy, busy_active, busy_timeout_ms,
                        ticks_ms, sleep_ms, poll_ms)
        self._partial_lut = partial_lut
        self.native_width = width
        self.native_height = height
        self.rotation = rotation

        mirrored = rotation in (180, 270)
        self._psr = _PSR_BASE if mirrored else _PSR_BASE | _PSR_UD | _PSR_SHL
        self._columns = rotation in (90, 270)
        if self._columns:
            self.width, self.height = height, width
            fmt = framebuf.MONO_VLSB
        else:
            self.width, self.height = width, height
            fmt = framebuf.MONO_HLSB
        self._row_bytes = width // 8
        self._resolution = bytes((width & 0xF8, height >> 8, height & 0xFF))
        self._full_window = bytes((0, width - 1, 0, 0, (height - 1) >> 8, (height - 1) & 0xFF, 1))
        # One byte-wide column, all rows; write() fills in the column.
        self._column_window = bytearray(self._full_window)
        self._psr_bytes = bytearray((self._psr, _PSR_SECOND))

        self.buffer = bytearray(self._row_bytes * height)
        self.framebuf = framebuf.FrameBuffer(self.buffer, self.width, self.height, fmt)
        self.framebuf.fill(self.PAPER)
        self._shadow = bytearray(self.buffer)
        if self._columns:
            # Views of each page of both frames, made once so that write() allocates
            # nothing (25 + 25 small objects for a 200x200 panel).
            new, old = memoryview(self.buffer), memoryview(self._shadow)
            self._pages_new = [new[p * height:(p + 1) * height] for p in range(self._row_bytes)]
            self._pages_old = [old[p * height:(p + 1) * height] for p in range(self._row_bytes)]
        self._known = False
        self._pending = False
        self._asleep = True
        self._powered = False
        self._register_lut = False
        self.full_updates = 0
        self.partial_updates = 0
        self.last_update_full = False

    # -- the bus ---------------------------------------------------------------------
    def _set_panel(self, register_lut):
        self._psr_bytes[0] = self._psr | _PSR_REG if register_lut else self._psr
        self._command(_PANEL_SETTING, self._psr_bytes)
        self._register_lut = register_lut

    # -- the interface ---------------------------------------------------------------
    async def init(self):
        self._known = False
        self._pending = False
        await self._hard_reset()
        await self._wait_idle()
        self._set_panel(False)
        for command, data in _VENDOR_REGISTERS:
            self._command(command, data)
        self._command(_RESOLUTION, self._resolution)
        self._command(_TCON, _TCON_DEFAULT)
        self._command(_VCOM_DATA_INTERVAL, _BORDER_FLOATING_WHITE_IS_1)
        self._command(_POWER_SAVING, _POWER_SAVING_OFF)
        self._powered = False
        self._register_lut = False
        self._asleep = False

    async def _power_on(self):
        self._command(_VCOM_DATA_INTERVAL, _BORDER_FLOATING_WHITE_IS_1)
        self._command(_POWER_ON)
        await self._wait_idle()
        self._powered = True

    async def _power_off(self):
        self._command(_VCOM_DATA_INTERVAL, _CDI_POWERED_OFF)
        self._command(_POWER_OFF)
        await self._wait_idle()
        self._powered = False

    def _send_columns(self, command, pages):
        # Page p of the MONO_VLSB frame is RAM column (W/8 - 1 - p), top to bottom.
        window = self._column_window
        last = self._row_bytes - 1
        for page in range(self._row_bytes):
            column = (last - page) * 8
            window[0] = column
            window[1] = column | 7
            self._command(_PARTIAL_WINDOW, window)
            self._command(command, pages[page])

    def write(self, full=False):
        """Send the buffer to DTM2, after putting the frame on the glass back into DTM1
        (the same for a full refresh: `full` changes nothing here). Synchronous and
        allocation-free; the buffer may be drawn on as soon as this returns. Call it only
        while the panel is idle (update() has returned)."""
        self._check_awake()
        restore = self._known and not self._pending
        if self._columns:
            self._command(_PARTIAL_IN)
            if restore:
                self._send_columns(_DATA_OLD, self._pages_old)
            self._send_columns(_DATA_NEW, self._pages_new)
            self._command(_PARTIAL_OUT)
        else:
            if restore:
                self._command(_DATA_OLD, self._shadow)
            self._command(_DATA_NEW, self.buffer)
        self._shadow[:] = self.buffer
        self._pending = True

    async def update(self, full=True):
        """Power on, refresh, power off, awaiting BUSY at each step. The first refresh
        after init() is always full."""
        self._check_awake()
        if not self._known:
            full = True
        if full:
            if self._register_lut:
                self._set_panel(False)
        elif not self._register_lut:
            self._set_panel(True)
            lut = self._partial_lut
            for index in range(5):
                self._command(_LUT_FIRST + index, lut[index])
        if not self._powered:
            await self._power_on()
        if full:
            self._command(_REFRESH)
        else:
            self._command(_PARTIAL_IN)
            self._command(_PARTIAL_WINDOW, self._full_window)
            self._command(_REFRESH)
        self.last_update_full = full
        await self._wait_idle()
        if full:
            self.full_updates += 1
        else:
            self._command(_PARTIAL_OUT)
            self.partial_updates += 1
        if self._pending:
            self._pending = False
            self._known = True
        await self._power_off()

    async def deep_sleep(self):
        """Deep sleep (after powering off, if a failed refresh left the supply on); only
        init() (a hardware reset) wakes the chip, so without a reset pin this leaves the
        panel powered off, as every refresh does."""
        self._check_awake()
        if self._powered:
            await self._power_off()
        if self._rst is None:
            return
        self._command(_DEEP_SLEEP, _SLEEP_CHECK)
        self._asleep = True
        self._known = False
        self._pending = False
