# Simulated e-paper panels and touch controllers, for tests and for the simulator.
#
# A panel is a fake SPI bus and fake pins wired to a model of the controller:
#   panel, driver = make_pair("ssd1680", 122, 250, ticks_ms, rotation=90, sleep_ms=...)
#   panel.spi, .cs, .dc, .rst, .busy   what the real driver is given (make_pair does it)
#   panel.pixel(x, y, rotation)   1 where the glass shows ink, in logical coordinates
#   panel.native_pixel(px, py)    the same in the panel's native coordinates
#   panel.ram_bit(px, py, old)    the controller RAM bit (1 = white) behind native pixel
#   panel.image(rotation)         (width, height, MONO_HLSB bytes, 1 = ink) of the glass
#   panel.script()                the transcript as short strings, see below
#   panel.violations              protocol errors seen (bytes with CS high, commands while
#                                 BUSY or asleep, RAM writes outside the RAM, ...)
#   panel.refreshes               ("full" | "partial", tick) per refresh started (without
#                                 record=True only the last _KEEP_REFRESHES of them)
#   panel.refresh_count           refreshes started in all
#   panel.waveforms               the waveform each refresh ran, kept like refreshes:
#                                 "otp-full" / "otp-partial" (SSD168x OTP, display mode
#                                 1 / 2), "otp" (JD79653A OTP: a full waveform),
#                                 "register" (the LUT the driver wrote)
#   panel.flashes                 refreshes that ran a full, flashing waveform (all pixels
#                                 driven through black and white), whatever was asked
#   panel.dead = True             BUSY never clears again: a dead or unplugged panel
# JD79653A only: panel.powered (the high-voltage supply is on), panel.hv_left_on
# (refreshes started on a supply left on since an earlier refresh), panel.hv_on_ms.
# The model parses the command stream enough to hold both RAMs (address counter, data
# entry mode, RAM window for the SSD168x; partial window and mirrors for the JD79653A),
# refreshes the "glass" when the controller is told to (a full refresh shows the new RAM,
# a partial one changes only the pixels where old and new RAM differ, as the differential
# waveform does, so a driver that keeps the wrong "old" image shows the wrong picture),
# keeps the SSD168x's RAM ping-pong (below),
# and drives BUSY active for full_ms / partial_ms after a refresh (defaults: the panels'
# datasheet figures), for reset_ms after a reset, measured on the injected ticks_ms, so a
# test can run on fake time.
#
# What the models hold a driver to, beyond the RAM:
#   SSD1680: the 2.13" panels' first column is wired to source S8. Until display update
#     control 1 (0x21) selects "sources S8 to S167", RAM bit 0 of a row drives S0, off the
#     glass, and the picture lands 8 pixels over (the SSD1681's 1.54" panels start at S0).
#     The waveform is the OTP one when the 0x22 sequence loads it, else the one in the LUT
#     register (0x32); a refresh with none loaded is a violation.
#     RAM ping-pong: with bit 6 of the display option's sixth byte (0x37) set, a display
#     mode 2 (partial) refresh ends with the two RAMs trading roles, so the frame just
#     shown is the old image (0x26) and 0x24 addresses what was the old one: a driver must
#     send the whole next frame to 0x24. (Whether the chip swaps or copies is not
#     documented; both give the same picture to a driver that does, and the swap catches
#     one that does not.) Without the bit (the reset value) 0x26 keeps what was written
#     there, and a driver that does not send the shown frame there gets wrong partial
#     refreshes. A full (mode 1) refresh never swaps.
#   JD79653A: the OTP waveform is a full one; a refresh in partial mode with it flashes the
#     window. The high-voltage supply is counted while on (POWER_ON 0x04 to POWER_OFF 0x02).
#
# The transcript (panel.transcript) holds every command with its data bytes, reset edges
# and BUSY polls in order; script() renders it as strings: "rst0" / "rst1" (reset pin
# low / high), "wait" (the driver polled BUSY, consecutive polls merged), "12" (command
# 0x12), "01:f9 00 00" (command with data), "24[4000]" (command with more than 16 data
# bytes: the count). panel.raw holds every SPI byte with its pin state: pairs of (flags,
# byte), flags bit 0 = DC, bit 1 = CS level. Both are kept only with record=True (tests):
# they grow with every frame, which a long simulator run cannot afford.
#
# A touch controller: SimTouch("gt911" | "gt1151", address) has the I2C methods the
# driver uses (16-bit register addresses); touch(px, py) and release() act as a finger
# in the panel's native coordinates; to_native() converts a logical position.
import micropython
from kiosk import ticks

# Busy times (ms) from the datasheets / the panel makers' figures.
_TIMINGS = {
    # controller: (full refresh, partial refresh)
    "ssd1680": (3500, 500),
    "ssd1681": (2500, 460),
    "jd79653a": (900, 300),
}
_RESET_MS = 20  # BUSY after a hardware or software reset
_POWER_MS = 40  # JD79653A power on / off
_KEEP_DATA = 16  # data bytes kept per transcript entry (the count is always kept)
# A simulated kiosk refreshes for as long as it runs: a whole history would grow until the
# heap ran out (and the display with it), so without record=True only the last few stay.
_KEEP_REFRESHES = 8


def to_native(x, y, width, height, rotation):
    """Panel-native (px, py) of logical (x, y) for a width x height (native) panel: the
    drivers' rotation convention, written out independently of them."""
    if rotation == 0:
        return x, y
    if rotation == 90:
        return width - 1 - y, x
    if rotation == 180:
        return width - 1 - x, height - 1 - y
    if rotation == 270:
        return y, height - 1 - x
    raise ValueError("rotation")


def _filled(size, value):
    out = bytearray(size)  # without the same-sized temporary that bytes * size makes
    for i in range(size):
        out[i] = value
    return out


class FakePin:
    """An output pin the driver drives; `on_change(level)` sees every edge."""

    def __init__(self, level=0, on_change=None):
        self.level = level
        self._on_change = on_change

    def value(self, level=None):
        if level is None:
            return self.level
        level = 1 if level else 0
        if level != self.level:
            self.level = level
            if self._on_change is not None:
                self._on_change(level)
        return None


class _BusyPin:
    def __init__(self, panel):
        self._panel = panel

    def value(self, level=None):
        return self._panel._busy_level()


class FakeSpi:
    def __init__(self, panel):
        self._panel = panel
        self.bytes_written = 0

    def write(self, buf):
        self.bytes_written += len(buf)
        self._panel._spi_write(buf)


class _SimPanel:
    BUSY_ACTIVE_LEVEL = 1
    BUSY_WHILE_ASLEEP = False
    RAM_COMMANDS = ()
    shown = bytearray()  # the glass, in RAM layout: set by each controller model
    PARAMETERS = {}  # command -> number of parameter bytes that complete it

    def __init__(self, controller, width, height, ticks_ms, full_ms=None, partial_ms=None,
                 reset_ms=_RESET_MS, dead=False, record=False):
        full, partial = _TIMINGS[controller]
        self.controller = controller
        self.width = width
        self.height = height
        self.ticks_ms = ticks_ms
        self.full_ms = full if full_ms is None else full_ms
        self.partial_ms = partial if partial_ms is None else partial_ms
        self.reset_ms = reset_ms
        self.dead = dead
        self.record = record
        self.spi = FakeSpi(self)
        self.cs = FakePin(1)
        self.dc = FakePin(0)
        self.rst = FakePin(1, self._on_reset)
        self.busy = _BusyPin(self)
        self.transcript = []
        self.raw = bytearray()
        self.violations = []
        self.refreshes = []
        self.waveforms = []
        self.refresh_count = 0
        self.flashes = 0
        self.asleep = False
        self._in_reset = False
        self._busy_until = None
        self._command = None
        self._params = bytearray()
        self._power_on_reset()

    # -- timing ---------------------------------------------------------------------
    def _start_busy(self, ms):
        self._busy_until = ticks.add(self.ticks_ms(), ms)

    def busy_active(self):
        if self.dead or (self.asleep and self.BUSY_WHILE_ASLEEP):
            return True
        until = self._busy_until
        if until is None:
            return False
        if ticks.diff(self.ticks_ms(), until) < 0:
            return True
        self._busy_until = None
        return False

    def _busy_level(self):
        if self.record and (not self.transcript or self.transcript[-1] != ["wait"]):
            self.transcript.append(["wait"])
        active = self.busy_active()
        return self.BUSY_ACTIVE_LEVEL if active else 1 - self.BUSY_ACTIVE_LEVEL

    def _refreshed(self, kind, waveform, flashing):
        self.refresh_count += 1
        if flashing:
            self.flashes += 1
        refreshes, waveforms = self.refreshes, self.waveforms
        if not self.record and len(refreshes) >= _KEEP_REFRESHES:
            refreshes.pop(0)
            waveforms.pop(0)
        refreshes.append((kind, self.ticks_ms()))
        waveforms.append(waveform)

    # -- pins and bus ----------------------------------------------------------------
    def _violation(self, text):
        if len(self.violations) < 100:
            self.violations.append(text)

    def _on_reset(self, level):
        if self.record:
            self.transcript.append(["rst", level])
        if level == 0:
            self._in_reset = True
            return
        self._in_reset = False
        self.asleep = False
        self._command = None
        self._power_on_reset()
        self._start_busy(self.reset_ms)

    def _spi_write(self, buf):
        cs, dc = self.cs.level, self.dc.level
        if self.record:
            flags = dc | (cs << 1)
            raw = self.raw
            for b in buf:
                raw.append(flags)
                raw.append(b)
        if cs:
            self._violation("%d byte(s) sent with CS high" % len(buf))
            return
        if self._in_reset:
            self._violation("bytes sent while RST is low")
            return
        if self.busy_active() and not self.asleep:
            what = "command 0x%02x" % buf[0] if dc == 0 else "data for 0x%02x" % (
                self._command if self._command is not None else -1)
            self._violation("%s sent while BUSY" % what)
        if dc == 0:
            for b in buf:
                self._finish_command()
                if self.asleep:
                    self._violation("command 0x%02x sent in deep sleep" % b)
                    self._command = None
                    continue
                self._command = b
                self._params = bytearray()
                if self.record:
                    self.transcript.append([b, bytearray(), 0])
                self._begin(b)
            return
        command = self._command
        if command is None:
            self._violation("%d data byte(s) without a command" % len(buf))
            return
        if self.record:
            entry = self.transcript[-1]
            room = _KEEP_DATA - len(entry[1])
            if room > 0:
                entry[1].extend(buf[:room])
            entry[2] += len(buf)
        if command in self.RAM_COMMANDS:
            self._ram_data(buf)
            return
        self._params.extend(buf)
        if len(self._params) == self.PARAMETERS.get(command, -1):
            self._apply(command, self._params)

    def _finish_command(self):
        """A command ends at the next command byte (the controllers have no terminator)."""
        command = self._command
        if command is None or command in self.RAM_COMMANDS:
            return
        wanted = self.PARAMETERS.get(command, 0)
        if wanted > 0 and len(self._params) < wanted:
            self._violation("command 0x%02x got %d of %d parameter bytes" % (
                command, len(self._params), wanted))

    # -- views ------------------------------------------------------------------------
    def script(self):
        out = []
        for entry in self.transcript:
            if entry[0] == "wait":
                out.append("wait")
            elif entry[0] == "rst":
                out.append("rst%d" % entry[1])
            elif entry[2] == 0:
                out.append("%02x" % entry[0])
            elif entry[2] > _KEEP_DATA:
                out.append("%02x[%d]" % (entry[0], entry[2]))
            else:
                out.append("%02x:%s" % (entry[0], " ".join("%02x" % b for b in entry[1])))
        return out

    def clear_transcript(self):
        self.transcript = []
        self.raw = bytearray()

    def pixel(self, x, y, rotation=0):
        """1 where the glass shows ink at logical (x, y) for the given rotation."""
        px, py = to_native(x, y, self.width, self.height, rotation)
        return self.native_pixel(px, py)

    def image(self, rotation=0):
        """The glass in logical coordinates: (width, height, bytes) with one bit per
        pixel in MONO_HLSB order (rows padded to whole bytes), 1 = ink."""
        w, h = (self.height, self.width) if rotation in (90, 270) else (self.width, self.height)
        # logical -> native is affine (to_native), native -> RAM too (_ram_map): walk the
        # composition incrementally instead of mapping every pixel through both.
        px0, py0 = to_native(0, 0, self.width, self.height, rotation)
        px1, py1 = to_native(1, 0, self.width, self.height, rotation)
        px2, py2 = to_native(0, 1, self.width, self.height, rotation)
        rx0, rx_step, ry0, ry_step = self._ram_map()
        x_dx, y_dx = (px1 - px0) * rx_step, (py1 - py0) * ry_step
        x_dy, y_dy = (px2 - px0) * rx_step, (py2 - py0) * ry_step
        shown, row_bytes, white = self.shown, self._shown_row_bytes(), self._white_bit()
        stride = (w + 7) // 8
        out = bytearray(stride * h)
        for y in range(h):
            rx = rx0 + rx_step * px0 + x_dy * y
            ry = ry0 + ry_step * py0 + y_dy * y
            row = y * stride
            for x in range(w):
                if (shown[ry * row_bytes + (rx >> 3)] >> (7 - (rx & 7))) & 1 != white:
                    out[row + (x >> 3)] |= 0x80 >> (x & 7)
                rx += x_dx
                ry += y_dx
        return w, h, out

    # -- for the subclasses --------------------------------------------------------------
    def _power_on_reset(self):
        pass

    def _begin(self, command):
        pass

    def _apply(self, command, params):
        pass

    def _ram_data(self, buf):
        pass

    def native_pixel(self, px, py):
        raise NotImplementedError

    def _ram_map(self):
        """(rx0, rx_step, ry0, ry_step): RAM (rx, ry) = (rx0 + rx_step * px, ...)."""
        raise NotImplementedError

    def _shown_row_bytes(self):
        raise NotImplementedError

    def _white_bit(self):
        raise NotImplementedError

    def _refresh(self, full, ram_new, ram_old, shown, first, last):
        """Byte-wise refresh of bytes [first, last) of the glass: full shows the new
        RAM; partial (differential) changes only where old and new differ."""
        if full:
            # memoryview: a slice copy would take a RAM-sized block from the heap on
            # every refresh, memory the simulated chip does not take from the ESP32
            shown[first:last] = memoryview(ram_new)[first:last]
            return
        _differential(shown, ram_old, ram_new, first, last)


@micropython.viper
def _differential(shown: ptr8, old: ptr8, new: ptr8, first: int, last: int):  # noqa: F821
    # Viper: in plain Python this loop was the biggest share of a simulated refresh.
    i = first
    while i < last:
        changed = old[i] ^ new[i]
        shown[i] = (shown[i] & (changed ^ 0xFF)) | (new[i] & changed)
        i += 1


# -- SSD1680 / SSD1681 ----------------------------------------------------------------------
_SSD_RAM = {"ssd1680": (176, 296), "ssd1681": (200, 200)}
# The source line wired to the panel's first column: the 2.13" 122x250 panels on the
# SSD1680 start at S8 (what 0x21's "S8 to S167" output mode is for), the 1.54" 200x200
# panels on the SSD1681 at S0.
_SSD_FIRST_SOURCE = {"ssd1680": 8, "ssd1681": 0}
_SSD_LUT_SIZE = 153


class SimSsd168x(_SimPanel):
    """SSD1680 / SSD1681: BUSY active high, and high in deep sleep."""

    BUSY_ACTIVE_LEVEL = 1
    BUSY_WHILE_ASLEEP = True
    RAM_COMMANDS = (0x24, 0x26)
    PARAMETERS = {
        0x01: 3, 0x03: 1, 0x04: 3, 0x0C: 5, 0x10: 1, 0x11: 1, 0x12: 0, 0x18: 1, 0x1A: 2,
        0x20: 0, 0x21: 2, 0x22: 1, 0x2C: 1, 0x32: _SSD_LUT_SIZE, 0x37: 10, 0x3C: 1, 0x3F: 1,
        0x44: 2, 0x45: 4, 0x4E: 1, 0x4F: 2,
    }

    def __init__(self, controller, width, height, ticks_ms, **options):
        ram_width, ram_height = _SSD_RAM[controller]
        if width > ram_width or height > ram_height:
            raise ValueError("%s RAM is %dx%d" % (controller, ram_width, ram_height))
        self.ram_row_bytes = ram_width // 8
        self.ram_rows = ram_height
        self.first_source = _SSD_FIRST_SOURCE[controller]
        self.lut_data = None  # the last 0x32 data
        size = self.ram_row_bytes * ram_height
        # What a cold panel holds is unknown: patterns that no frame of the tests matches.
        self.ram_new = bytearray(size)
        self.ram_old = _filled(size, 0x0F)
        self.shown = _filled(size, 0xAA)
        super().__init__(controller, width, height, ticks_ms, **options)

    def _power_on_reset(self):
        self.entry = 0x03
        self.x_window = (0, self.ram_row_bytes - 1)
        self.y_window = (0, self.ram_rows - 1)
        self.x = 0
        self.y = 0
        self.sequence = 0xFF
        self.gates = self.ram_rows
        self.scan = 0
        self.sources_from_s8 = False  # 0x21 B[7]: reset value, sources S0 to S175
        self.ping_pong = False  # 0x37 F[6]: reset value, off
        self.lut = None  # the waveform in the LUT register: None, "otp-..." or "register"
        self._target = None

    def _begin(self, command):
        if command == 0x12:
            self._power_on_reset()
            self._start_busy(self.reset_ms)
        elif command == 0x20:
            self._activate()
        elif command == 0x24:
            self._target = self.ram_new
        elif command == 0x26:
            self._target = self.ram_old

    def _apply(self, command, params):
        if command == 0x01:
            self.gates = (params[0] | (params[1] & 1) << 8) + 1
            self.scan = params[2]
            if self.scan:
                self._violation("driver output control scan bits 0x%02x: not modelled" % params[2])
        elif command == 0x11:
            self.entry = params[0] & 0x07
        elif command == 0x44:
            self.x_window = (params[0] & 0x3F, params[1] & 0x3F)
        elif command == 0x45:
            self.y_window = (params[0] | (params[1] & 1) << 8, params[2] | (params[3] & 1) << 8)
        elif command == 0x4E:
            self.x = params[0] & 0x3F
        elif command == 0x4F:
            self.y = params[0] | (params[1] & 1) << 8
        elif command == 0x22:
            self.sequence = params[0]
        elif command == 0x21:
            self.sources_from_s8 = bool(params[1] & 0x80)
            if params[0]:
                self._violation("RAM content option 0x%02x (bypass/inverse): not modelled"
                                % params[0])
        elif command == 0x37:
            self.ping_pong = bool(params[5] & 0x40)
        elif command == 0x32:
            self.lut = "register"
            self.lut_data = bytes(params)
        elif command == 0x10:
            if params[0] & 0x03:
                self.asleep = True

    def _ram_data(self, buf):
        ram = self._target
        if ram is None:
            return
        row_bytes, rows = self.ram_row_bytes, self.ram_rows
        x, y = self.x, self.y
        x_lo, x_hi = min(self.x_window), max(self.x_window)
        y_lo, y_hi = min(self.y_window), max(self.y_window)
        x_step = 1 if self.entry & 0x01 else -1
        y_step = 1 if self.entry & 0x02 else -1
        y_first = self.entry & 0x04
        if not y_first and x_step > 0 and 0 <= x_lo and x_hi < row_bytes and (
                0 <= y_lo and y_hi < rows and x_lo <= x <= x_hi and y_lo <= y <= y_hi):
            # The drivers' usual order, in whole rows of the window: copy a row at a time
            # (byte by byte in Python, a refresh cost a millisecond per frame).
            self.x, self.y = self._ram_rows(ram, memoryview(buf), x, y, x_lo, x_hi, y_lo,
                                            y_hi, y_step)
            return
        outside = 0
        for b in buf:
            if 0 <= x < row_bytes and 0 <= y < rows:
                ram[y * row_bytes + x] = b
            else:
                outside += 1
            if y_first:
                y += y_step
                if y > y_hi or y < y_lo:
                    y = y_lo if y_step > 0 else y_hi
                    x += x_step
                    if x > x_hi or x < x_lo:
                        x = x_lo if x_step > 0 else x_hi
            else:
                x += x_step
                if x > x_hi or x < x_lo:
                    x = x_lo if x_step > 0 else x_hi
                    y += y_step
                    if y > y_hi or y < y_lo:
                        y = y_lo if y_step > 0 else y_hi
        if outside:
            self._violation("%d RAM byte(s) written outside the RAM" % outside)
        self.x, self.y = x, y

    def _ram_rows(self, ram, data, x, y, x_lo, x_hi, y_lo, y_hi, y_step):
        row_bytes = self.ram_row_bytes
        done = 0
        size = len(data)
        while done < size:
            n = min(size - done, x_hi - x + 1)
            start = y * row_bytes + x
            ram[start:start + n] = data[done:done + n]
            done += n
            x += n
            if x > x_hi:
                x = x_lo
                y += y_step
                if y > y_hi or y < y_lo:
                    y = y_lo if y_step > 0 else y_hi
        return x, y

    def _activate(self):
        # 0x22 sequence bits: 0x10 load the OTP waveform (for display mode 2 with 0x08),
        # 0x08 display mode 2, 0x04 display.
        sequence = self.sequence
        mode_2 = sequence & 0x08
        if sequence & 0x10:
            self.lut = "otp-partial" if mode_2 else "otp-full"
        if not sequence & 0x04:  # no "display" step: nothing reaches the glass
            self._start_busy(1)
            return
        waveform = self.lut
        if waveform is None:
            self._violation("display (0x22:%02x) with no waveform loaded" % sequence)
            self._start_busy(1)
            return
        # Mode 1, or mode 2 on the OTP's mode-1 waveform, drives every pixel.
        full = not mode_2 or waveform == "otp-full"
        if self.gates != self.height:
            self._violation("driver output control: %d gates for a %d-row panel" % (
                self.gates, self.height))
        shown, new, old = self.shown, self.ram_new, self.ram_old
        # Glass column c is driven by source (first_source + c), which shows RAM bit
        # (first_source + c - 8) with sources from S8, else RAM bit (first_source + c).
        # The offset is a whole byte: a flat shift of the RAM moves every row by it (a
        # row's last byte takes the next row's first, beyond the visible columns).
        offset = (self.first_source - (8 if self.sources_from_s8 else 0)) // 8
        size = len(shown)
        if offset >= 0:
            self._refresh(full, memoryview(new)[offset:], memoryview(old)[offset:], shown, 0,
                          size - offset)
        else:
            self._refresh(full, new, old, memoryview(shown)[-offset:], 0, size + offset)
        self._refreshed("full" if not mode_2 else "partial", waveform, full)
        if mode_2 and self.ping_pong:
            self.ram_new, self.ram_old = self.ram_old, self.ram_new
        self._start_busy(self.full_ms if full else self.partial_ms)

    def _ram_map(self):
        return 0, 1, 0, 1  # no mirrors: native pixel (px, py) is RAM bit (px, py)

    def _shown_row_bytes(self):
        return self.ram_row_bytes

    def _white_bit(self):
        return 1

    def ram_bit(self, px, py, old=False):
        ram = self.ram_old if old else self.ram_new
        return (ram[py * self.ram_row_bytes + (px >> 3)] >> (7 - (px & 7))) & 1

    def native_pixel(self, px, py):
        white = (self.shown[py * self.ram_row_bytes + (px >> 3)] >> (7 - (px & 7))) & 1
        return 1 - white


# -- JD79653A ---------------------------------------------------------------------------------
class SimJd79653a(_SimPanel):
    """JD79653A: BUSY active low. RAM bit 1 = white with the data polarity DDX=01."""

    BUSY_ACTIVE_LEVEL = 0
    RAM_COMMANDS = (0x10, 0x13)
    PARAMETERS = {
        0x00: 2, 0x01: 5, 0x02: 0, 0x03: 1, 0x04: 0, 0x06: 3, 0x07: 1, 0x11: 0, 0x12: 0,
        0x30: 1, 0x41: 1, 0x50: 1, 0x60: 1, 0x61: 3, 0x82: 1, 0x90: 7, 0x91: 0, 0x92: 0,
        0xE3: 1, 0x4D: 1, 0xAA: 1, 0xE9: 1, 0xB6: 1, 0xF3: 1,
        0x20: -1, 0x21: -1, 0x22: -1, 0x23: -1, 0x24: -1,  # LUTs: any length
    }

    def __init__(self, controller, width, height, ticks_ms, power_ms=_POWER_MS, **options):
        self.power_ms = power_ms
        self.row_bytes = width // 8
        size = self.row_bytes * height
        self.ram_new = bytearray(size)
        self.ram_old = _filled(size, 0x0F)
        self.shown = _filled(size, 0xAA)
        self.hv_left_on = 0
        self.hv_on_ms = 0
        self._powered_at = 0
        self._refreshes_powered = 0
        super().__init__(controller, width, height, ticks_ms, **options)

    def _power_on_reset(self):
        self.panel_setting = 0x0F  # UD, SHL, booster, no reset: the POR value
        self.cdi = 0x97
        self.resolution = None
        self.luts = {}
        if getattr(self, "powered", False):
            self._supply_off()
        self.powered = False
        self.partial = False
        self.window = (0, self.row_bytes - 1, 0, self.height - 1)  # byte columns, rows
        self._target = None
        self._offset = 0

    def _supply_off(self):
        self.hv_on_ms += ticks.diff(self.ticks_ms(), self._powered_at)

    def _begin(self, command):
        if command == 0x04:
            if not self.powered:
                self._powered_at = self.ticks_ms()
                self._refreshes_powered = 0
            self.powered = True
            self._start_busy(self.power_ms)
        elif command == 0x02:
            if self.powered:
                self._supply_off()
            self.powered = False
            self._start_busy(self.power_ms)
        elif command == 0x91:
            self.partial = True
        elif command == 0x92:
            self.partial = False
        elif command == 0x12:
            self._display_refresh()
        elif command in (0x10, 0x13):
            self._target = self.ram_old if command == 0x10 else self.ram_new
            self._offset = 0

    def _apply(self, command, params):
        if command == 0x00:
            self.panel_setting = params[0]
        elif command == 0x50:
            self.cdi = params[0]
        elif command == 0x61:
            self.resolution = (params[0] & 0xF8, (params[1] & 1) << 8 | params[2])
            if self.resolution != (self.width, self.height):
                self._violation("resolution %r for a %dx%d panel" % (
                    self.resolution, self.width, self.height))
        elif command == 0x90:
            h_start, h_end = params[0] >> 3, params[1] >> 3
            v_start = (params[2] & 1) << 8 | params[3]
            v_end = (params[4] & 1) << 8 | params[5]
            self.window = (h_start, h_end, v_start, v_end)
        elif command == 0x07:
            if params[0] == 0xA5:
                self.asleep = True

    def _finish_command(self):
        command = self._command
        if command is not None and 0x20 <= command <= 0x24:
            self.luts[command] = bytes(self._params)
        super()._finish_command()

    def _ram_data(self, buf):
        ram = self._target
        if ram is None:
            return
        if self.partial:
            c0, c1, r0, r1 = self.window
        else:
            c0, c1, r0, r1 = 0, self.row_bytes - 1, 0, self.height - 1
        columns = c1 - c0 + 1
        total = columns * (r1 - r0 + 1)
        offset = self._offset
        outside = 0
        for b in buf:
            if offset >= total:
                outside += 1
                continue
            row = r0 + offset // columns
            ram[row * self.row_bytes + c0 + offset % columns] = b
            offset += 1
        self._offset = offset
        if outside:
            self._violation("%d data byte(s) past the end of the window" % outside)

    def _display_refresh(self):
        if not self.powered:
            self._violation("refresh (0x12) with the power off")
        else:
            if self._refreshes_powered:
                self.hv_left_on += 1
            self._refreshes_powered += 1
        register = self.panel_setting & 0x20
        if register and len(self.luts) < 5:
            self._violation("register LUT selected but only %d of 5 LUTs loaded" % len(self.luts))
        # The OTP waveform is a full one: with it every pixel of the window is driven
        # (and the glass flashes), also in partial mode. A register waveform is taken to
        # be the differential partial one the drivers load.
        full = not register
        waveform = "register" if register else "otp"
        if self.partial:
            c0, c1, r0, r1 = self.window
            for row in range(r0, r1 + 1):
                base = row * self.row_bytes
                self._refresh(full, self.ram_new, self.ram_old, self.shown,
                              base + c0, base + c1 + 1)
            self._refreshed("partial", waveform, full)
        else:
            self._refresh(full, self.ram_new, self.ram_old, self.shown, 0, len(self.shown))
            self._refreshed("full", waveform, full)
        self._start_busy(self.full_ms if full else self.partial_ms)

    def _ram_map(self):
        # The panel setting mirrors the scan: SHL (bit 2) the sources, UD (bit 3) the gates.
        rx0, rx_step = (0, 1) if self.panel_setting & 0x04 else (self.width - 1, -1)
        ry0, ry_step = (0, 1) if self.panel_setting & 0x08 else (self.height - 1, -1)
        return rx0, rx_step, ry0, ry_step

    def _shown_row_bytes(self):
        return self.row_bytes

    def _white_bit(self):
        return (self.cdi >> 4) & 1  # data polarity DDX bit 0: 1 means RAM bit 1 = white

    def _ram_xy(self, px, py):
        rx0, rx_step, ry0, ry_step = self._ram_map()
        return rx0 + rx_step * px, ry0 + ry_step * py

    def ram_bit(self, px, py, old=False):
        """The RAM bit behind native pixel (px, py), after the mirrors."""
        rx, ry = self._ram_xy(px, py)
        ram = self.ram_old if old else self.ram_new
        return (ram[ry * self.row_bytes + (rx >> 3)] >> (7 - (rx & 7))) & 1

    def native_pixel(self, px, py):
        rx, ry = self._ram_xy(px, py)
        bit = (self.shown[ry * self.row_bytes + (rx >> 3)] >> (7 - (rx & 7))) & 1
        return 0 if bit == self._white_bit() else 1


def make_panel(controller, width, height, ticks_ms, **options):
    """A simulated panel: controller "ssd1680", "ssd1681" or "jd79653a"; options:
    full_ms, partial_ms, reset_ms, dead, record=False (and power_ms for the JD79653A)."""
    if controller in _SSD_RAM:
        return SimSsd168x(controller, width, height, ticks_ms, **options)
    if controller == "jd79653a":
        return SimJd79653a(controller, width, height, ticks_ms, **options)
    raise ValueError("no simulated %r panel" % controller)


def make_pair(controller, width, height, ticks_ms, rotation=0, sleep_ms=None,
              busy_timeout_ms=None, partial_lut=None, panel=None, **options):
    """(panel, driver): a simulated panel and the real driver wired to it. sleep_ms is
    the driver's awaitable sleep (asyncio.sleep_ms by default; a test on fake time passes
    one that advances its clock); partial_lut and panel go to the driver (a board's
    display.panel names the glass whose own waveform the driver loads, e.g. "depg0213bn");
    the other options to make_panel."""
    sim = make_panel(controller, width, height, ticks_ms, **options)
    extra = {}
    if busy_timeout_ms is not None:
        extra["busy_timeout_ms"] = busy_timeout_ms
    if controller == "jd79653a":
        from kiosk.drivers.jd79653a import Jd79653a

        cls = Jd79653a
    else:
        from kiosk.drivers import ssd1680

        cls = ssd1680.Ssd1681 if controller == "ssd1681" else ssd1680.Ssd1680
    if partial_lut is not None:
        extra["partial_lut"] = partial_lut
    if panel is not None:
        extra["panel"] = panel
    driver = cls(sim.spi, sim.cs, sim.dc, sim.rst, sim.busy, width, height,
                 rotation=rotation, busy_active=sim.BUSY_ACTIVE_LEVEL,
                 ticks_ms=ticks_ms, sleep_ms=sleep_ms, **extra)
    return sim, driver


# -- touch ---------------------------------------------------------------------------------
_TOUCH_BASE = 0x8140
_TOUCH_STATUS = 0x814E
_PRODUCT_IDS = {"gt911": b"911\x00", "gt1151": b"1158"}
_ENODEV = 19


class SimTouch:
    """A GT911 / GT1151 answering machine.I2C's readfrom_mem_into / writeto_mem.

    touch(px, py) puts a finger down (or moves it) in panel-native coordinates and
    release() lifts it; each produces a report (status bit 7 set) that the host
    acknowledges by writing 0 to the status register. With auto_report (default) a held
    finger produces the next report as soon as the previous one is acknowledged, as the
    chip does every scan; without it, reads between reports see "not ready"."""

    def __init__(self, chip="gt911", address=0x5D, auto_report=True):
        self.chip = chip
        self.address = address
        self.auto_report = auto_report
        self.regs = bytearray(0x40)  # 0x8140..0x817F
        self.regs[0:4] = _PRODUCT_IDS[chip]
        self.touching = False
        self.x = 0
        self.y = 0
        self.reports = 0
        self.acks = 0
        self.reads = 0
        self.fail = False  # every transfer raises OSError, as a broken bus does
        self.violations = []

    def touch(self, px, py):
        self.touching = True
        self.x, self.y = px, py
        self._report()

    def release(self):
        self.touching = False
        self._report()

    def _report(self):
        regs = self.regs
        status = _TOUCH_STATUS - _TOUCH_BASE
        if self.touching:
            regs[status] = 0x81
            regs[status + 1] = 0  # track id
            regs[status + 2] = self.x & 0xFF
            regs[status + 3] = self.x >> 8
            regs[status + 4] = self.y & 0xFF
            regs[status + 5] = self.y >> 8
            regs[status + 6] = 24  # contact size
            regs[status + 7] = 0
        else:
            regs[status] = 0x80
        self.reports += 1

    def _check(self, address, memaddr, length, addrsize):
        if self.fail or address != self.address:
            raise OSError(_ENODEV)
        if addrsize != 16:
            self.violations.append("8-bit register address used")
            raise OSError(_ENODEV)
        if memaddr < _TOUCH_BASE or memaddr + length > _TOUCH_BASE + len(self.regs):
            self.violations.append("register 0x%04x not modelled" % memaddr)
            raise OSError(_ENODEV)

    def readfrom_mem_into(self, address, memaddr, buf, addrsize=8):
        self._check(address, memaddr, len(buf), addrsize)
        self.reads += 1
        regs = self.regs
        offset = memaddr - _TOUCH_BASE
        for i in range(len(buf)):
            buf[i] = regs[offset + i]

    def writeto_mem(self, address, memaddr, buf, addrsize=8):
        self._check(address, memaddr, len(buf), addrsize)
        regs = self.regs
        offset = memaddr - _TOUCH_BASE
        for i in range(len(buf)):
            regs[offset + i] = buf[i]
        if memaddr == _TOUCH_STATUS and buf[0] == 0:
            self.acks += 1
            if self.auto_report and self.touching:
                self._report()
