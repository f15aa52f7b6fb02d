# Button debouncing, polled from a task every few milliseconds.
#
# poll() takes the logical mask from the hardware layer (bit i = button i pressed) and
# queues a press once the mask has been stable for `stable_polls` polls. It allocates
# nothing (small ints and a preallocated ring), so it is also safe to call from a
# scheduled IRQ callback; tests prove it with micropython.heap_lock().
from kiosk.ring import Ring


class Debouncer:
    def __init__(self, stable_polls=3, queue_size=16):
        self.stable_polls = stable_polls
        self._candidate = 0
        self._count = 0
        self._stable = 0
        self._queue = Ring(bytearray(queue_size))
        self.pop = self._queue.pop  # the index of the oldest queued press, or -1
        self.presses = 0  # debounced presses so far, queued or not

    def held(self):
        """Mask of the buttons debounced as held down now."""
        return self._stable

    def poll(self, mask):
        if mask != self._candidate:
            self._candidate = mask
            self._count = 0
            return
        if self._count >= self.stable_polls:
            return
        self._count += 1
        if self._count < self.stable_polls:
            return
        pressed = mask & ~self._stable
        self._stable = mask
        index = 0
        while pressed:
            if pressed & 1:
                self._push(index)
            pressed >>= 1
            index += 1

    def _push(self, index):
        self.presses += 1
        self._queue.push(index)

    @property
    def overflows(self):
        return self._queue.overflows
