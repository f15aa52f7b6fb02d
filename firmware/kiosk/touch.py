# Touch-down taps from a polled touch controller, debounced.
#
# poll() takes one reading from `read` (a callable returning the touch point packed as
# (x << 16) | y, or -1 when nothing touches: kiosk.drivers.gt911's read_xy) and queues one
# tap per touch-down: the touch must be seen in `down_polls` consecutive polls (a brush of
# a sleeve or a noisy report does not count), and a new tap needs the release to be seen
# in `up_polls` consecutive polls first (a finger that flickers off for a report while it
# slides does not tap twice). The tap is at the position of the poll that confirmed it.
#
# Like kiosk.buttons.Debouncer, it allocates nothing: small ints and a preallocated ring;
# tests prove it under micropython.heap_lock().
from array import array

from kiosk.ring import Ring


class TouchTaps:
    def __init__(self, read, down_polls=2, up_polls=3, queue_size=8):
        if down_polls < 1 or up_polls < 1:
            raise ValueError("down_polls and up_polls must be at least 1")
        self._read = read
        self.down_polls = down_polls
        self.up_polls = up_polls
        self._down = False
        self._count = 0
        self._queue = Ring(array("i", [0] * queue_size))
        self.pop = self._queue.pop  # the oldest queued tap as (x << 16) | y, or -1
        self.taps = 0  # debounced taps so far, queued or not

    def touching(self):
        """True while a debounced touch is held."""
        return self._down

    def poll(self):
        point = self._read()
        if self._down:
            if point < 0:
                self._count += 1
                if self._count >= self.up_polls:
                    self._down = False
                    self._count = 0
            else:
                self._count = 0
            return
        if point < 0:
            self._count = 0
            return
        self._count += 1
        if self._count >= self.down_polls:
            self._down = True
            self._count = 0
            self._push(point)

    def _push(self, point):
        self.taps += 1
        self._queue.push(point)

    @property
    def overflows(self):
        return self._queue.overflows
