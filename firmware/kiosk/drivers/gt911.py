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
# Coordinates: the chip reports points in the panel's native orientation (the touch
# sensor is laminated on the e-paper panel, same size); mirror_x / mirror_y / swap_xy
# correct a module whose sensor axes differ, then the point is turned into the screens'
# logical coordinates with the inverse of the panel driver's rotation:
#   rotation  panel (px, py) -> logical (x, y)
#   0         (px, py)
#   90        (py, W-1-px)
#   180       (W-1-px, H-1-py)
#   270       (H-1-py, px)
#
# read_xy() allocates nothing (a preallocated buffer, the answer packed in a small int),
# so the touch task can poll it every few milliseconds; read() is the tuple form.
import asyncio

from micropython import const

_PRODUCT_ID = const(0x8140)
_STATUS = const(0x814E)
_READY = const(0x80)
_COUNT_MASK = const(0x0F)
_MAX_POINTS = const(10)
_ACK = b"\x00"

_RESET_LOW_MS = const(10)
_RESET_BOOT_MS = const(60)  # the GT911 answers on I2C about 50 ms after reset


def pack(x, y):
    """A touch position as one small int (allocation-free to pass around)."""
    return (x << 16) | y


def unpack(point):
    return point >> 16, point & 0xFFFF


class Gt911:
    def __init__(self, i2c, address, width, height, rotation=0, int_pin=None, rst_pin=None,
                 mirror_x=False, mirror_y=False, swap_xy=False, sleep_ms=None):
        if rotation not in (0, 90, 180, 270):
            raise ValueError("rotation must be 0, 90, 180 or 270")
        self._i2c = i2c
        self._address = address
        self._int = int_pin  # reports are polled; the pin is kept for a future IRQ wake
        self._rst = rst_pin
        self._sleep_ms = sleep_ms or asyncio.sleep_ms
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

    async def init(self):
        """Reset the chip if its reset pin is wired, and read its product ID."""
        rst = self._rst
        if rst is not None:
            rst.value(0)
            await self._sleep_ms(_RESET_LOW_MS)
            rst.value(1)
            await self._sleep_ms(_RESET_BOOT_MS)
        raw = bytearray(4)
        self._i2c.readfrom_mem_into(self._address, _PRODUCT_ID, raw, addrsize=16)
        self.product_id = bytes(raw).split(b"\x00")[0].decode()
        self._i2c.writeto_mem(self._address, _STATUS, _ACK, addrsize=16)
        self._last = -1
        return self.product_id

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
        when nothing touches. Between reports (the chip reports every ~10 ms) it returns
        the last report's answer, so polling faster than the chip is harmless."""
        report = self._report
        i2c = self._i2c
        try:
            i2c.readfrom_mem_into(self._address, _STATUS, report, addrsize=16)
        except OSError:
            self.errors += 1
            return self._last
        status = report[0]
        if not status & _READY:
            return self._last
        try:
            i2c.writeto_mem(self._address, _STATUS, _ACK, addrsize=16)
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


class Gt1151(Gt911):
    """The same registers for what this driver reads (see the top of this file)."""
