# The simulator's virtual clock: asyncio's time source and idle wait on the unix port.
#
# MicroPython's asyncio scheduler (extmod/asyncio/core.py) reads the time through its
# module global `ticks` and, when no task is due, waits in `_io_queue.wait_io_event(dt)`
# (a select.poll). install() replaces both: virtual time is the host's ticks plus an
# offset, and an idle wait of dt ms adds dt to the offset instead of sleeping, so time
# jumps to the next deadline. Every timer of the firmware (debounce, follow-up timeout,
# thank-you, e-ink BUSY, push interval and backoff) then fires at its own simulated
# moment, and a script plays as fast as the CPU allows.
#
# Virtual time only ever runs ahead of the host's ticks (the offset never shrinks): the
# C part of asyncio (_asyncio.TaskQueue.push without a key, Task.cancel) stamps a task
# woken "now" with the host's ticks, and such a task must sort as due, never as late.
#
# Real waiting (wall-clock pacing) instead of a jump:
#   - while a task awaits a stream (a socket to a server on 127.0.0.1): the peer runs on
#     the host's clock, so a read timeout must not expire before the peer could answer;
#   - while a peer talks on the console (a host sync): `peer_activity()` returns a number
#     that changes with each exchange, and the clock keeps real time for _PEER_HOLD_MS
#     after the last change, so the taps it sees come at a person's pace;
#   - while `realtime` is set (`deskpulse sim --realtime`, and after the script: a
#     person or a host tool then talks to the kiosk).
# The last two end inside fast_forward() (a script's `wait`): the serial sync has no
# timeout on the kiosk's side, so a console peer loses nothing when a wait races ahead.
# The logic never sees this module: it reads the HAL's ticks_ms, which follows now().
import time

from asyncio import core  # pyright: ignore[reportAttributeAccessIssue]  (not in the stubs)
from micropython import const

_PEER_HOLD_MS = const(1000)


def _no_peer():
    return 0


class VirtualClock:
    def __init__(self, realtime=False):
        self.realtime = realtime
        # A script's `wait` on the wall clock too: the firmware at a device's own pace, the
        # anchor of tools/bench_sim.py.
        self.paced_waits = False
        self.skipped_ms = 0  # idle time jumped over instead of waited for
        self.peer_activity = _no_peer  # callable -> int, set by the simulator's entry
        self._offset = 0
        self._fast_forwards = 0
        self._last_activity = 0
        self._peer_seen_at = None  # host ticks of the last change of peer_activity()
        self._wait_for_io = self._no_streams
        self._io_map = {}

    def now(self):
        """Virtual ticks in the host's ticks space (time.ticks_* arithmetic)."""
        return time.ticks_add(time.ticks_ms(), self._offset)

    def jump(self, ms):
        """Move virtual time forward at once (tests; timers see the jump only when they
        next run, as after a stall)."""
        if ms < 0:
            raise ValueError("the virtual clock never runs backwards")
        self._offset += ms
        self.skipped_ms += ms

    def install(self):
        """Make asyncio run on this clock: call once, before asyncio.run()."""
        queue = core._io_queue
        self._wait_for_io = queue.wait_io_event
        self._io_map = queue.map
        core.ticks = self.now
        queue.wait_io_event = self._idle

    def fast_forward(self, on):
        """While on (nestable), idle time is jumped over even when realtime is set."""
        self._fast_forwards += 1 if on else -1

    def _paced(self):
        if self._io_map:
            return True  # a task awaits a socket: its peer keeps real time
        if self._fast_forwards:
            return False
        seen = self.peer_activity()
        if seen != self._last_activity:
            self._last_activity = seen
            self._peer_seen_at = time.ticks_ms()
        if self._peer_seen_at is not None:
            if time.ticks_diff(time.ticks_ms(), self._peer_seen_at) < _PEER_HOLD_MS:
                return True
            self._peer_seen_at = None
        return self.realtime

    def _no_streams(self, dt):
        pass  # until install(): no asyncio queue to wait on

    def _idle(self, dt):
        # dt: ms until the next task is due, -1 when only streams can wake a task.
        if dt > 0 and not self._paced():
            self._offset += dt
            self.skipped_ms += dt
            return  # no stream is registered (else _paced): nothing to poll for
        self._wait_for_io(dt)
