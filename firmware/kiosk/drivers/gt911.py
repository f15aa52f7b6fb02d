# Goodix GT911 and GT1151 capacitive touch controllers over I2C (see
# kiosk/drivers/__init__.py for the interface).
#
# Both chips use 16-bit register addresses (addrsize=16 in MicroPython) and, for what this
# driver reads, the same map: product ID at 0x8140 (4 ASCII bytes: "911" / "1158"),
# status at 0x814E (bit 7: a new report is ready, bits 3..0: number of touch points),
# then 8 bytes per point from 0x814F: track id, X low, X high, Y low, Y high, size low,
# size high, reserved. So the first point's X is at 0x8150. The host acknowledges a report
# by writing 0 to the status register; until then the chip does not update it. They
# differ in where their configuration block starts (GT911 0x8047, GT1151 0x8050), which
# this driver never touches: the modules ship configured for their panel. The GT1151
# layout was checked against the GT1151Q programming guide as used for Waveshare's 2.13"
# Touch e-Paper HAT (status 0x814E, first point 0x8150), which is the board we support.
#
# Start-up: a Goodix chip takes its I2C address from the level of INT at the moment RST
# is released: high selects 0x14 (0x28/0x29 on the wire), low selects 0x5D (0xBA/0xBB).
# start() runs that sequence once, from the hardware layer, before the app polls:
#   RST low, INT driven to the wanted level, 20 ms (Goodix asks > 10 ms, and > 100 us
#   between INT settling and RST rising); RST high; INT held 6 ms (> 5 ms) while the chip
#   latches the address; INT low for 50 ms (the "INT synchronisation" Goodix's own drivers
#   do before using the pin as an interrupt); INT back to a floating input.
# Sources: GT911 programming guide sections 1 and 4.2; Goodix's gt1x driver
# (gt1x_select_addr, gt1x_reset_guitar) and Linux drivers/input/touchscreen/goodix.c
# (goodix_reset_no_int_sync, goodix_int_sync), which handles the GT1151 the same way.
# Then both addresses are probed (the configured one first) by reading the product ID:
# a module whose INT cannot be driven (an input-only GPIO, or not wired) still answers
# at the address its INT line's idle level picked. If neither answers, start() records
# `error` and read_xy() reports "no touch" without touching the bus; nothing raises.
#
# Coordinates: the touch sensor is laminated on the e-paper panel (same size), but its
# axes need not run the way the panel's RAM does. mirror_x / mirror_y / swap_xy (board
# file) turn a sensor point into the panel's native coordinates, then it is turned into
# the screens' logical coordinates with the inverse of the panel driver's rotation:
#   rotation  panel (px, py) -> logical (x, y)
#   0         (px, py)
#   90        (py, W-1-px)
#   180       (W-1-px, H-1-py)
#   270       (H-1-py, px)
# Waveshare's HAT reports both axes reversed against the SSD1680's RAM (its demos draw the
# touch point through a both-axes mirror, see docs/boards.md): its board file sets
# mirror_x and mirror_y.
#
# read_xy() allocates nothing (a preallocated buffer, the answer packed in a small int),
# so the touch task can poll it every few milliseconds; read() is the tuple form.
import time

from micropython import const

_PRODUCT_ID = const(0x8140)
_STATUS = const(0x814E)
_READY = const(0x80)
_COUNT_MASK = const(0x0F)
_MAX_POINTS = const(10)
_ACK = b"\x00"

ADDRESS_INT_HIGH = const(0x14)  # INT high while RST rises
ADDRESS_INT_LOW = const(0x5D)  # INT low while RST rises

_RESET_LOW_MS = const(20)
_ADDRESS_HOLD_MS = const(6)
_INT_SYNC_MS = const(50)
_BOOT_MS = const(100)  # without INT control: Waveshare's GT_Reset waits 100 ms after RST


def pack(x, y):
    """A touch position as one small int (allocation-free to pass around)."""
    return (x << 16) | y


def unpack(point):
    return point >> 16, point & 0xFFFF


def _other_address(address):
    return ADDRESS_INT_LOW if address == ADDRESS_INT_HIGH else ADDRESS_INT_HIGH


class Gt911:
    def __init__(self, i2c, address, width, height, rotation=0, int_pin=None, rst_pin=None,
                 mirror_x=False, mirror_y=False, swap_xy=False, sleep_ms=None):
        if rotation not in (0, 90, 180, 270):
            raise ValueError("rotation must be 0, 90, 180 or 270")
        self._i2c = i2c
        self.address = address  # where the chip answers (start() finds out)
        self._wanted = address
        self._int = int_pin  # reports are polled; the pin is driven only by start()
        self._rst = rst_pin
        # Blocking: start() runs once while the hardware layer is built, before the loop.
        self._sleep_ms = sleep_ms or time.sleep_ms
        self.native_width = width
        self.native_height = height
        self.rotation = rotation
        self._mirror_x = mirror_x
        self._mirror_y = mirror_y
        self._swap_xy = swap_xy
        if rotation in (90, 270):
            self.width, self.height = height, width
        else:
            self.width, self.height = width, height
        # status, track id, X low, X high, Y low, Y high, size low, size high
        self._report = bytearray(8)
        self._last = -1
        self.errors = 0  # I2C failures so far (a read that fails keeps the last state)
        self.product_id = ""
        # Why the controller cannot be used (None while it can): set by start().
        self.error = None
        self.address_selected = False  # start() drove INT while RST rose

    # -- start-up ---------------------------------------------------------------------
    def start(self):
        """Reset the chip with the address-select sequence (as far as its pins are wired),
        then find it at either Goodix address. Returns the product ID, or None with the
        reason in `error` when nothing answers. Blocks about 80 ms (120 ms when INT
        cannot be driven)."""
        self.address_selected = False
        rst = self._rst
        if rst is not None:
            self._reset(rst)
        return self._probe()

    def _reset(self, rst):
        sleep_ms = self._sleep_ms
        pin = self._int
        rst.value(0)
        driven = pin is not None and self._drive_int(pin)
        sleep_ms(_RESET_LOW_MS)
        rst.value(1)
        sleep_ms(_ADDRESS_HOLD_MS)
        if pin is None or not driven:
            sleep_ms(_BOOT_MS - _ADDRESS_HOLD_MS)
            return
        pin.value(0)
        sleep_ms(_INT_SYNC_MS)
        pin.init(pin.IN)  # floating, as Goodix asks; a mode change keeps the pull setting
        self.address_selected = True

    def _drive_int(self, pin):
        try:
            pin.init(pin.OUT, value=1 if self._wanted == ADDRESS_INT_HIGH else 0)
        except ValueError:
            return False  # an input-only GPIO: the line's idle level picks the address
        return True

    def _probe(self):
        raw = bytearray(4)
        first = self._wanted
        for address in (first, _other_address(first)):
            try:
                self._i2c.readfrom_mem_into(address, _PRODUCT_ID, raw, addrsize=16)
            except OSError:
                continue  # not acknowledged: not there
            try:
                self._i2c.writeto_mem(address, _STATUS, _ACK, addrsize=16)  # a stale report
            except OSError:
                self.errors += 1
            self.address = address
            self.product_id = "".join(chr(b) for b in raw if 0x20 < b < 0x7F)
            self.error = None
            self._last = -1
            return self.product_id
        self.error = "no touch controller answers at 0x%02x or 0x%02x" % (
            first, _other_address(first))
        self._last = -1
        return None

    # -- reports ----------------------------------------------------------------------
    def _logical(self, px, py):
        w, h = self.native_width, self.native_height
        if self._swap_xy:
            px, py = py, px
        if self._mirror_x:
            px = w - 1 - px
        if self._mirror_y:
            py = h - 1 - py
        # A sensor reports a little past the active area at the edges: clamp.
        if px < 0:
            px = 0
        elif px >= w:
            px = w - 1
        if py < 0:
            py = 0
        elif py >= h:
            py = h - 1
        rotation = self.rotation
        if rotation == 0:
            return (px << 16) | py
        if rotation == 90:
            return (py << 16) | (w - 1 - px)
        if rotation == 180:
            return ((w - 1 - px) << 16) | (h - 1 - py)
        return ((h - 1 - py) << 16) | px

    def read_xy(self):
        """The first touch point, packed as (x << 16) | y in logical coordinates, or -1
        when nothing touches (or start() found no controller). Between reports (the chip
        reports every ~10 ms) it returns the last report's answer, so polling faster than
        the chip is harmless."""
        if self.error is not None:
            return -1
        report = self._report
        i2c = self._i2c
        try:
            i2c.readfrom_mem_into(self.address, _STATUS, report, addrsize=16)
        except OSError:
            self.errors += 1
            return self._last
        status = report[0]
        if not status & _READY:
            return self._last
        try:
            i2c.writeto_mem(self.address, _STATUS, _ACK, addrsize=16)
        except OSError:
            self.errors += 1
        count = status & _COUNT_MASK
        if count == 0 or count > _MAX_POINTS:
            self._last = -1
        else:
            self._last = self._logical(report[2] | (report[3] << 8), report[4] | (report[5] << 8))
        return self._last

    def read(self):
        """(x, y) of the first touch point in logical coordinates, or None."""
        point = self.read_xy()
        if point < 0:
            return None
        return point >> 16, point & 0xFFFF

    def status(self):
        """For the service screen and the status report."""
        return {"address": self.address, "product": self.product_id, "error": self.error,
                "address_selected": self.address_selected, "errors": self.errors}


class Gt1151(Gt911):
    """The same registers for what this driver reads (see the top of this file)."""
