# What every e-paper panel driver shares: the 4-wire SPI bus with a data/command pin, the
# hardware reset, and waiting on BUSY without blocking the event loop.
import asyncio
import time

from kiosk import ticks
from kiosk.drivers import PanelError
from micropython import const

_RESET_MS = const(10)


def _default_ticks_ms():
    # ticks_diff(t, 0) turns the stubs' opaque tick type into an int.
    return time.ticks_diff(time.ticks_ms(), 0) & ticks.MASK


class EpdBus:
    NAME = "epd"

    def __init__(self, spi, cs, dc, rst, busy, busy_active, busy_timeout_ms, ticks_ms,
                 sleep_ms, poll_ms):
        self._spi = spi
        self._cs = cs
        self._dc = dc
        self._rst = rst
        self._busy = busy
        self._busy_active = busy_active
        self._busy_timeout_ms = busy_timeout_ms
        self._ticks_ms = ticks_ms or _default_ticks_ms
        self._sleep_ms = sleep_ms or asyncio.sleep_ms
        self._poll_ms = poll_ms
        self._command_byte = bytearray(1)
        # Whether the panel's previous-image RAM (or, for a driver that keeps one, its copy
        # of the last frame) holds what the glass shows: a partial refresh is right then.
        self._known = False
        self._asleep = True  # until init()

    def _command(self, command, data=None):
        cs, dc = self._cs, self._dc
        self._command_byte[0] = command
        dc.value(0)
        cs.value(0)
        self._spi.write(self._command_byte)
        if data is not None:
            dc.value(1)
            self._spi.write(data)
        cs.value(1)

    def _begin_data(self, command):
        """Start `command` whose data follows in several bus writes (_spi.write of each
        piece), so that a frame can be sent from a small scratch buffer; _end_data()
        ends it."""
        self._command_byte[0] = command
        self._dc.value(0)
        self._cs.value(0)
        self._spi.write(self._command_byte)
        self._dc.value(1)

    def _end_data(self):
        self._cs.value(1)

    def busy(self):
        return self._busy.value() == self._busy_active

    async def _hard_reset(self):
        rst = self._rst
        if rst is not None:
            rst.value(0)
            await self._sleep_ms(_RESET_MS)
            rst.value(1)
            await self._sleep_ms(_RESET_MS)

    async def _wait_idle(self):
        """Await BUSY released, yielding to other tasks; PanelError after the timeout.
        Sleeps before the first look, so a BUSY that the controller raises a moment after
        the command is not mistaken for a finished job."""
        start = self._ticks_ms()
        while True:
            await self._sleep_ms(self._poll_ms)
            if self._busy.value() != self._busy_active:
                return
            if ticks.diff(self._ticks_ms(), start) >= self._busy_timeout_ms:
                self._known = False
                raise PanelError("%s: BUSY still active after %d ms: panel not responding" % (
                    self.NAME, self._busy_timeout_ms))

    def _check_awake(self):
        if self._asleep:
            raise PanelError("%s: not initialised (or in deep sleep): call init()" % self.NAME)
