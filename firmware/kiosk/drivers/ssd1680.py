# Solomon Systech SSD1680 (2.13" 122x250 Good Display / Waveshare panels) and SSD1681
# (1.54" 200x200) e-paper controllers, behind the interface in kiosk/drivers/__init__.py.
#
# Controller RAM: one bit per pixel, 1 = white, bytes of 8 horizontal pixels with the most
# significant bit leftmost, rows of ceil(width / 8) bytes (the 122-pixel panel is padded
# to 128 bits a row; the 6 extra bits drive no pixel). 0x24 holds the image to show,
# 0x26 the image shown now: the partial refresh (display mode 2) drives the pixels by the
# pair (0x26 bit, 0x24 bit), so 0x26 must hold exactly what the glass shows.
#
# Keeping 0x26 in step without a copy of the frame in the microcontroller. A full refresh
# gets its frame in both RAMs (Waveshare's EPD_2in13_V3_Display_Base and GxEPD2's
# writeImageForFullRefresh do the same), so afterwards 0x26 holds the picture. After a
# partial refresh the controller itself moves the picture it just showed into the 0x26
# role: the "RAM ping-pong for display mode 2" bit of the display option register (0x37,
# sixth byte 0x40), which Waveshare's epd2in13_V3 and epd1in54_V2 partial modes set, and
# which lets them send only 0x24 for every partial refresh. GxEPD2 instead writes the
# shown frame into 0x26 once the refresh has finished (writeImageAgain), which needs the
# frame buffer unchanged until then; here the screens may draw the next view while the
# panel refreshes, so that is not an option without a second frame.
#
# Rotation without rotating pixels. The frame buffer is in logical coordinates, in the
# framebuf format whose bytes already are panel RAM bytes for that rotation, and the data
# entry mode (0x11) makes the controller's address counter walk the RAM in the order the
# buffer holds them:
#   rotation  logical (x, y) -> panel (px, py)  framebuf   entry mode (AM, Y, X)
#   0         (x, y)                            MONO_HLSB  X first, Y+, X+
#   90        (W-1-y, x)                        MONO_VLSB  Y first, Y+, X-
#   180       (W-1-x, H-1-y)                    MONO_HMSB  X first, Y-, X-
#   270       (y, H-1-x)                        MONO_VLSB  Y first, Y-, X+
# (W, H: the panel's native width and height; at 90 the logical image's top-left corner
# sits at the panel's top-right, i.e. the image is turned a quarter clockwise.)
# The controller can reverse the byte order of a RAM row (X-) but not the bit order within
# a byte, and it cannot start a row mid-byte. So two cases still need per-byte work in
# write(), done by small viper loops into a scratch buffer of one RAM column (a page of
# the MONO_VLSB frame) or a few rows, sent piece by piece within one RAM write command:
#   - 270: MONO_VLSB has its top pixel in bit 0, RAM wants it in bit 7: bits reversed.
#   - 90 and 180 on a width that is not a multiple of 8 (the 122-pixel panel): mirroring
#     X moves the 6 padding bits from the end of a RAM row to its start, so every RAM
#     byte is made of two buffer bytes shifted by 6.
# That is per byte, never per pixel, and in viper: on the unix port write() of a 4000-byte
# frame takes 15-20 us to a bus that drops the bytes (2 us without a transform); an ESP32
# is some 30-50 times slower, so under a millisecond a frame, against the panel's
# 0.3-0.5 s partial refresh. Rotation 0, and 90/180 on 200x200, need no work: the buffer
# is sent as it is.
#
# Which sources drive the glass. The 2.13" 122x250 panels are wired to sources S8 onwards,
# not S0: every reference init for them (Waveshare epd2in13_V3/V4, GxEPD2_213_B74,
# GxEPD2_213_GDEY0213B74, GxEPD2_213_BN) sets display update control 1 (0x21) to
# 0x00 0x80, "normal RAM, sources S8 to S167", so that RAM bit 0 of a row reaches the
# panel's first column. Without it the picture lands 8 pixels over (LilyGO's older
# GxDEPG0213BN driver gets the same result by starting its RAM X window at byte 1). The
# 1.54" SSD1681 panels use S0 onwards and their references send no 0x21.
#
# Waveforms. A full refresh (0x22 = 0xF7) and, by default, a partial one (0xFF) load the
# panel's own waveform from OTP with the temperature. A panel whose OTP partial waveform
# is not the one its maker's driver uses gets a register waveform instead: partial_lut,
# the 153 bytes of command 0x32 (PARTIAL_LUTS below, by panel name). It is written before
# a partial refresh run with 0xCF (no OTP load, so the register waveform is used); a full
# refresh loads the OTP waveform over it, so it is written again before the next partial.
# Every sequence ends with "analog off, clock off": the high voltages are off between
# refreshes.

import framebuf
import micropython
from kiosk.drivers.epd import EpdBus
from micropython import const

_DRIVER_OUTPUT = const(0x01)
_DEEP_SLEEP = const(0x10)
_DATA_ENTRY = const(0x11)
_SW_RESET = const(0x12)
_TEMPERATURE_SENSOR = const(0x18)
_MASTER_ACTIVATION = const(0x20)
_UPDATE_CONTROL_1 = const(0x21)
_UPDATE_CONTROL_2 = const(0x22)
_WRITE_RAM_NEW = const(0x24)  # "black/white RAM": the image to show
_WRITE_RAM_OLD = const(0x26)  # "red RAM": on a black/white panel, the image shown now
_WRITE_LUT = const(0x32)
_LUT_SIZE = const(153)
_DISPLAY_OPTION = const(0x37)
_BORDER = const(0x3C)
_RAM_X_WINDOW = const(0x44)
_RAM_Y_WINDOW = const(0x45)
_RAM_X_COUNTER = const(0x4E)
_RAM_Y_COUNTER = const(0x4F)

# Data entry mode bits: address counter moves along Y first (AM), Y increments, X increments.
_AM_Y = const(0x04)
_Y_INC = const(0x02)
_X_INC = const(0x01)

# Display update control 2 (0x22): clock on, analog on, load temperature, load LUT,
# [display mode 2], display, analog off, clock off. 0x08 selects mode 2 (partial/fast).
_SEQ_FULL = b"\xf7"
_SEQ_PARTIAL = b"\xff"
# The same partial refresh without the OTP load (0x10) and temperature (0x20) steps: it
# runs the waveform written with 0x32.
_SEQ_PARTIAL_REGISTER_LUT = b"\xcf"
# Display update control 1 (0x21): RAM used as written (no bypass, no inversion); source
# output from S8 (bit 7 of the second byte).
_SOURCES_FROM_S8 = b"\x00\x80"
# Border (0x3C): follow the LUT to white on a full refresh; hold it at VCOM during a
# partial one so the border does not flash.
_BORDER_FULL = b"\x05"
_BORDER_PARTIAL = b"\x80"
_INTERNAL_SENSOR = b"\x80"
_SLEEP_MODE_1 = b"\x01"  # deep sleep, RAM kept; only a hardware reset wakes the chip
# Display option (0x37), ten bytes: spare VCOM OTP selection, display mode per waveform
# setting (four bytes, all mode 1 as after reset), then F with bit 6 "RAM ping-pong for
# display mode 2" set, and four ID bytes. The bytes Waveshare's 2.13" V3 and 1.54" V2
# partial modes send.
_PING_PONG = b"\x00\x00\x00\x00\x00\x40\x00\x00\x00\x00"

# The partial waveform that GxEPD2_213_BN and LilyGO's GxDEPG0213BN driver load for the
# DEPG0213BN panel of the LilyGo T5 V2.3 (their two tables differ only in the timing of
# the first phase group; this is GxEPD2's). Layout of the 153 bytes (SSD1680 command 0x32):
# five rows of 12 voltage selections (one per transition black/white to black/white, two
# bits per phase), twelve phase groups of 7 bytes (four phase lengths in frames, repeat
# counts), six frame-rate bytes, three gate-scan bytes. Only the first three phase groups
# are used: a short drive towards the new colour, then two single frames.
_DEPG0213BN_PARTIAL = (
    b"\x00\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x80\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x40\x40\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x0a\x00\x00\x00\x00\x00\x02"
    b"\x01\x00\x00\x00\x00\x00\x00"
    b"\x01\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    b"\x00\x00\x00\x00\x00\x00\x00"
    b"\x22\x22\x22\x22\x22\x22"
    b"\x00\x00\x00"
)
# Register partial waveforms by panel (the board's display "panel"); a panel not listed
# uses its OTP waveform.
PARTIAL_LUTS = {"depg0213bn": _DEPG0213BN_PARTIAL}

_POLL_MS = const(10)
_BUSY_TIMEOUT_MS = const(10000)  # full refresh takes 2.5-4 s; ten means the panel is gone

# How write() turns the buffer into the RAM byte stream.
_COPY = const(0)
_REVERSE = const(1)
_SHIFT_PAGES = const(2)  # MONO_VLSB pages, mirrored X with padding
_SHIFT_ROWS = const(3)  # MONO_HMSB rows, mirrored X with padding


@micropython.viper
def _reverse_bits(src: ptr8, start: int, dst: ptr8, n: int):  # noqa: F821 (a viper builtin)
    for i in range(n):
        b = src[start + i]
        b = ((b & 0xF0) >> 4) | ((b & 0x0F) << 4)
        b = ((b & 0xCC) >> 2) | ((b & 0x33) << 2)
        dst[i] = ((b & 0xAA) >> 1) | ((b & 0x55) << 1)


@micropython.viper
def _shift_page(src: ptr8, start: int, dst: ptr8, width: int, pad: int):  # noqa: F821
    # RAM byte = this page's low bits moved up past the padding, plus the previous
    # page's high bits (the page before the first one is padding: zero).
    if start == 0:
        for x in range(width):
            dst[x] = (src[x] << pad) & 0xFF
        return
    back = 8 - pad
    before = start - width
    for x in range(width):
        dst[x] = ((src[start + x] << pad) | (src[before + x] >> back)) & 0xFF


@micropython.viper
def _shift_rows(src: ptr8, start: int, dst: ptr8, rows: int, row_bytes: int,  # noqa: F821
                pad: int):
    back = 8 - pad
    out = 0
    for _ in range(rows):
        dst[out] = (src[start] << pad) & 0xFF
        for i in range(1, row_bytes):
            dst[out + i] = ((src[start + i] << pad) | (src[start + i - 1] >> back)) & 0xFF
        start += row_bytes
        out += row_bytes


class Ssd1680(EpdBus):
    """SSD1680: up to 176 x 296 (the 2.13" panels are 122 x 250)."""

    NAME = "ssd1680"
    MAX_WIDTH = 176
    MAX_HEIGHT = 296
    INK = 0
    PAPER = 1
    SOURCE_OUTPUT = _SOURCES_FROM_S8  # 0x21 parameters; None: leave the reset value

    def __init__(self, spi, cs, dc, rst, busy, width, height, rotation=0, busy_active=1,
                 busy_timeout_ms=_BUSY_TIMEOUT_MS, ticks_ms=None, sleep_ms=None,
                 poll_ms=_POLL_MS, partial_lut=None, panel=None):
        if panel is not None and partial_lut is None:
            # The board file names the glass (display.panel) when it needs its own waveform.
            partial_lut = PARTIAL_LUTS.get(panel)
            if partial_lut is None:
                raise ValueError("no partial waveform for panel %s" % panel)
        if partial_lut is not None and len(partial_lut) != _LUT_SIZE:
            raise ValueError("partial_lut: %d bytes for command 0x32" % _LUT_SIZE)
        if not (0 < width <= self.MAX_WIDTH and 0 < height <= self.MAX_HEIGHT):
            raise ValueError("%s drives at most %dx%d, not %dx%d" % (
                self.NAME, self.MAX_WIDTH, self.MAX_HEIGHT, width, height))
        if rotation not in (0, 90, 180, 270):
            raise ValueError("rotation must be 0, 90, 180 or 270")
        EpdBus.__init__(self, spi, cs, dc, rst, busy, busy_active, busy_timeout_ms,
                        ticks_ms, sleep_ms, poll_ms)
        self.native_width = width
        self.native_height = height
        self.rotation = rotation
        self._partial_lut = partial_lut
        self._lut_loaded = False  # partial_lut is in the LUT register (no OTP load since)

        row_bytes = (width + 7) // 8
        pad = row_bytes * 8 - width
        self._row_bytes = row_bytes
        self._pad = pad
        self._transform = _COPY
        y_last = height - 1
        # xs, ys: where the address counter starts (the window's far corner is the end).
        if rotation == 0:
            fmt, entry = framebuf.MONO_HLSB, _Y_INC | _X_INC
            xs, ys = 0, 0
        elif rotation == 90:
            fmt, entry = framebuf.MONO_VLSB, _AM_Y | _Y_INC
            xs, ys = row_bytes - 1, 0
            if pad:
                self._transform = _SHIFT_PAGES
        elif rotation == 180:
            fmt, entry = framebuf.MONO_HMSB, 0
            xs, ys = row_bytes - 1, y_last
            if pad:
                self._transform = _SHIFT_ROWS
        else:
            fmt, entry = framebuf.MONO_VLSB, _AM_Y | _X_INC
            xs, ys = 0, y_last
            self._transform = _REVERSE
        xe = row_bytes - 1 - xs
        ye = y_last - ys
        if rotation in (90, 270):
            self.width, self.height = height, width
        else:
            self.width, self.height = width, height
        # The parameter bytes never change after construction: built once, so that
        # write() allocates nothing.
        self._entry = bytes((entry,))
        self._driver_output = bytes(((height - 1) & 0xFF, (height - 1) >> 8, 0))
        self._x_window = bytes((xs, xe))
        self._y_window = bytes((ys & 0xFF, ys >> 8, ye & 0xFF, ye >> 8))
        self._x_counter = bytes((xs,))
        self._y_counter = bytes((ys & 0xFF, ys >> 8))

        self.buffer = bytearray(row_bytes * height)
        self.framebuf = framebuf.FrameBuffer(self.buffer, self.width, self.height, fmt)
        self.framebuf.fill(self.PAPER)
        if self._transform == _SHIFT_ROWS:
            # As many whole rows as a RAM column's worth of bytes holds; the last, shorter
            # piece goes through a view made here.
            self._chunk_rows = max(1, height // row_bytes)
            self._scratch = bytearray(self._chunk_rows * row_bytes)
            tail = (height % self._chunk_rows) * row_bytes
            self._tail = memoryview(self._scratch)[:tail] if tail else None
        elif self._transform != _COPY:
            self._scratch = bytearray(height)  # one RAM column: a MONO_VLSB page
        self._known = False  # RAM 0x26 holds what the glass shows: a partial refresh is right
        self._ram_equal = False  # the last write() sent its frame to 0x26 as well as 0x24
        self._pending = False  # a frame written since the last refresh
        self._asleep = True  # until init()
        self.full_updates = 0
        self.partial_updates = 0
        self.last_update_full = False

    # -- the interface ---------------------------------------------------------------
    async def init(self):
        self._known = False
        self._ram_equal = False
        self._pending = False
        self._lut_loaded = False
        await self._hard_reset()
        await self._wait_idle()
        self._command(_SW_RESET)
        await self._wait_idle()
        self._command(_DRIVER_OUTPUT, self._driver_output)
        self._command(_DATA_ENTRY, self._entry)
        self._command(_RAM_X_WINDOW, self._x_window)
        self._command(_RAM_Y_WINDOW, self._y_window)
        self._command(_BORDER, _BORDER_FULL)
        if self.SOURCE_OUTPUT is not None:
            self._command(_UPDATE_CONTROL_1, self.SOURCE_OUTPUT)
        self._command(_TEMPERATURE_SENSOR, _INTERNAL_SENSOR)
        self._command(_DISPLAY_OPTION, _PING_PONG)
        self._set_counters()
        await self._wait_idle()
        self._asleep = False

    def _set_counters(self):
        self._command(_RAM_X_COUNTER, self._x_counter)
        self._command(_RAM_Y_COUNTER, self._y_counter)

    def _send_frame(self, command):
        """The buffer into RAM `command` (0x24 or 0x26) in RAM byte order, from the
        counters' start. A viper function takes a buffer where it declares ptr8; the
        stubs cannot say so, hence the pyright comments."""
        self._set_counters()
        transform = self._transform
        src = self.buffer
        if transform == _COPY:
            self._command(command, src)
            return
        scratch = self._scratch
        spi = self._spi
        size = len(src)
        self._begin_data(command)
        if transform == _SHIFT_ROWS:
            row_bytes, pad = self._row_bytes, self._pad
            rows = self._chunk_rows
            step = rows * row_bytes
            start = 0
            while start + step <= size:
                _shift_rows(src, start, scratch, rows, row_bytes,  # pyright: ignore[reportArgumentType]
                            pad)
                spi.write(scratch)
                start += step
            if start < size:
                _shift_rows(src, start, scratch,  # pyright: ignore[reportArgumentType]
                            (size - start) // row_bytes, row_bytes, pad)
                spi.write(self._tail)
        else:
            page = self.native_height
            pad = self._pad
            start = 0
            while start < size:
                if transform == _REVERSE:
                    _reverse_bits(src, start, scratch, page)  # pyright: ignore[reportArgumentType]
                else:
                    _shift_page(src, start, scratch, page, pad)  # pyright: ignore[reportArgumentType]
                spi.write(scratch)
                start += page
        self._end_data()

    def write(self, full=False):
        """Send the buffer to RAM 0x24; for a full refresh (full, or whenever 0x26 does
        not hold the glass) to 0x26 as well. Synchronous and allocation-free; the buffer
        may be drawn on as soon as this returns. Call it only while the panel is idle
        (update() has returned)."""
        self._check_awake()
        both = full or not self._known
        if both:
            self._send_frame(_WRITE_RAM_OLD)
            self._known = False  # 0x26 now holds the new frame, not the glass
        self._send_frame(_WRITE_RAM_NEW)
        self._ram_equal = both
        self._pending = True

    async def update(self, full=True):
        """Refresh the glass from RAM and await BUSY. Full whenever 0x26 does not hold the
        picture on the glass (the first refresh after init(), after a write(full=True)):
        a partial refresh then drives the wrong pixels. Without a write() since the last
        refresh there is nothing new to show, and nothing is done."""
        self._check_awake()
        if not self._pending:
            return
        if not self._known:
            full = True
        self._command(_BORDER, _BORDER_FULL if full else _BORDER_PARTIAL)
        lut = self._partial_lut
        if full:
            sequence = _SEQ_FULL
            self._lut_loaded = False  # the OTP load replaces the register waveform
        elif lut is None:
            sequence = _SEQ_PARTIAL
        else:
            if not self._lut_loaded:
                self._command(_WRITE_LUT, lut)
                self._lut_loaded = True
            sequence = _SEQ_PARTIAL_REGISTER_LUT
        self._known = False  # until the refresh is seen to finish
        self._command(_UPDATE_CONTROL_2, sequence)
        self._command(_MASTER_ACTIVATION)
        self.last_update_full = full
        await self._wait_idle()
        self._pending = False
        if full:
            self.full_updates += 1
            # The glass shows 0x24; 0x26 holds the same frame if write() sent it there.
            self._known = self._ram_equal
        else:
            self.partial_updates += 1
            # Ping-pong: the frame just shown now serves as the previous image.
            self._known = True

    async def deep_sleep(self):
        """Deep sleep mode 1 (RAM kept). BUSY stays high while asleep; only init() (a
        hardware reset) wakes the controller, so without a reset pin this does nothing:
        the panel idles instead."""
        self._check_awake()
        if self._rst is None:
            return
        self._command(_DEEP_SLEEP, _SLEEP_MODE_1)
        self._asleep = True
        self._known = False
        self._ram_equal = False
        self._pending = False
        self._lut_loaded = False


class Ssd1681(Ssd1680):
    """SSD1681: up to 200 x 200 (the 1.54" panels). Same command set and sequences; the
    panels use sources from S0, as after reset (GxEPD2_154_D67 sends no 0x21)."""

    NAME = "ssd1681"
    MAX_WIDTH = 200
    MAX_HEIGHT = 200
    SOURCE_OUTPUT = None
