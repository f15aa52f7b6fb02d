# The `time` module the app sees in the heap harness (tools/bench_heap.py): the unix
# port's own, except that ticks_ms() follows a virtual clock that asyncio runs on too.
#
# Why: 500 customer sessions at a device's pace take an hour; most of it is waiting
# (thank-you screens, e-ink refreshes, push intervals). install() makes asyncio's idle
# wait jump virtual time to its next deadline instead of sleeping, as the simulator does
# (firmware/kiosk/hal/simclock.py; it is not reused because it lives in the kiosk
# package, which must come from the device's filesystem here). Time runs at the host's
# pace while a task waits on a socket (the push server and NTP answer in real time) and
# for a second after each console line (a host sync), so that no peer times out.
# Blocking sleeps jump the virtual clock as well.
# The ESP32's ticks wrap at 2**30; so do the 32-bit port's, and Esp32Hal hands out
# time.ticks_ms as it is (on the 64-bit port they are masked here, as on the chip).
import time as _host
from time import gmtime, localtime, mktime, sleep_us  # noqa: F401
from time import ticks_add, ticks_diff, ticks_us, time  # noqa: F401

_MASK = 0x3FFFFFFF
_PEER_HOLD_MS = 1000


def _no_peer():
    return 0


class VirtualClock:
    def __init__(self):
        self.realtime = False  # pace by the host's clock throughout (set after the customers)
        self.offset = 0
        self.skipped_ms = 0
        self.peer_activity = _no_peer
        self._last_activity = 0
        self._peer_seen_at = None
        self._wait = None
        self._streams = None

    def now(self):
        """Virtual ticks in the host's tick space (asyncio's time source)."""
        return _host.ticks_add(_host.ticks_ms(), self.offset)

    def ticks_ms(self):
        """Virtual ticks reduced to the ESP32's period (what the app reads)."""
        return _host.ticks_add(_host.ticks_ms(), self.offset) & _MASK

    def install(self, core):
        queue = core._io_queue
        self._wait = queue.wait_io_event
        self._streams = queue.map
        core.ticks = self.now
        queue.wait_io_event = self._idle

    def _paced(self):
        if self._streams:
            return True
        seen = self.peer_activity()
        if seen != self._last_activity:
            self._last_activity = seen
            self._peer_seen_at = _host.ticks_ms()
        if self._peer_seen_at is not None:
            if _host.ticks_diff(_host.ticks_ms(), self._peer_seen_at) < _PEER_HOLD_MS:
                return True
            self._peer_seen_at = None
        return self.realtime

    def _idle(self, dt):
        if dt > 0 and not self._paced():
            self.offset += dt
            self.skipped_ms += dt
            return
        self._wait(dt)


clock = VirtualClock()
ticks_ms = clock.ticks_ms


def sleep_ms(ms):
    # A blocking wait (a driver's reset pulse, kiosk.boot's backoff) passes on the
    # virtual clock too: nothing else runs meanwhile, on the device or here.
    clock.offset += ms
    clock.skipped_ms += ms


def sleep(seconds):
    sleep_ms(int(seconds * 1000))
