# The touch check of the service screen: the customer's targets as the idle screen lays
# them out, and where each tap lands. A technician taps each face and sees a cross-hair at
# the point the controller reported (in screen coordinates, after the board's axis flags)
# and which target that point chose, so a mirrored or swapped sensor shows at the first tap
# instead of as inverted ratings in a report. Nothing here is recorded as a response.
#
# It draws through kiosk.ui.screens.Screens (its frame buffer, fonts, boxes and request),
# so the targets are exactly the ones a customer gets, and takes the touch driver only for
# its status (address, product, error), which it prints under the picture.
from kiosk import screen
from micropython import const

_ARM = const(9)  # half the length of the cross-hair's arms, in pixels
_RING = const(4)  # radius of the ring that marks the reported point
_FACES = const(5)

TITLE = "Touch check: tap each face"


class TouchCheck:
    def __init__(self, screens, touch=None, faces=_FACES):
        self.screens = screens
        self.touch = touch
        self.faces = faces
        self.taps = 0
        self.last = -1  # the last tap, (x << 16) | y, or -1 before the first
        self.hit = -1  # the option index it chose, or -1 for none

    def open(self):
        """Show the targets with no tap yet."""
        self.taps = 0
        self.last = -1
        self.hit = -1
        self._draw()

    def tap(self, point):
        """A debounced tap at (x << 16) | y in screen coordinates: mark it and say which
        target it chose. Returns the option index (face - 1), or -1."""
        self.last = point
        self.taps += 1
        # The targets are those on the glass now: the layout of the last _draw().
        self.hit = self.screens.target_at(point >> 16, point & 0xFFFF)
        self._draw()
        return self.hit

    def note(self):
        """The line under the targets: the last tap and the controller's state."""
        if self.last < 0:
            said = "no tap yet"
        else:
            x, y = self.last >> 16, self.last & 0xFFFF
            target = "face %d" % (self.hit + 1) if self.hit >= 0 else "no target"
            said = "tap %d at %d,%d: %s" % (self.taps, x, y, target)
        touch = self.touch
        if touch is None:
            return said
        if touch.error:
            return said + "\n" + touch.error
        return said + "\nGT%s at 0x%02x" % (touch.product_id, touch.address)

    def _draw(self):
        s = self.screens
        labels = [str(i + 1) for i in range(self.faces)]
        s.show(screen.VIEW_IDLE, TITLE, labels, self.note())
        # show() only asked for a refresh; the refresh task copies the buffer later, so
        # the marks drawn now are in the same picture.
        hit = self.hit
        if 0 <= hit < len(s.boxes):
            box = s.boxes[hit]
            s.fb.rect(box.x0, box.y0, box.x1 - box.x0, box.y1 - box.y0, s.ink)
        if self.last >= 0:
            self._cross(self.last >> 16, self.last & 0xFFFF)

    def _cross(self, x, y):
        s = self.screens
        fb = s.fb
        # A paper halo first, so the ink cross-hair shows over a face's ink too.
        fb.fill_rect(x - _ARM - 1, y - 1, 2 * _ARM + 3, 3, s.paper)
        fb.fill_rect(x - 1, y - _ARM - 1, 3, 2 * _ARM + 3, s.paper)
        fb.hline(x - _ARM, y, 2 * _ARM + 1, s.ink)
        fb.vline(x, y - _ARM, 2 * _ARM + 1, s.ink)
        fb.ellipse(x, y, _RING, _RING, s.ink)
