# A fixed-size queue of small ints for input events (button indexes, packed touch points).
# It allocates nothing after construction, so the input hot path stays allocation-free.
# When full it keeps the oldest events: a flood of presses is not a customer.


class Ring:
    def __init__(self, storage):
        self._items = storage  # bytearray or array("i"): its length is the capacity + 1
        self._head = 0  # next to pop
        self._tail = 0  # next free slot
        self.overflows = 0

    def push(self, value):
        nxt = (self._tail + 1) % len(self._items)
        if nxt == self._head:
            self.overflows += 1
            return
        self._items[self._tail] = value
        self._tail = nxt

    def pop(self):
        """The oldest value, or -1 when empty."""
        if self._head == self._tail:
            return -1
        value = self._items[self._head]
        self._head = (self._head + 1) % len(self._items)
        return value
