# Where things go on a panel of a given logical size, for a given board.
#
# Pure arithmetic, no drawing: screens.py asks it where faces, answers and text blocks
# sit. A face stands above the button that selects it. Buttons are listed in a board file
# left to right; one may carry "x", the logical pixel x of its centre along the panel's
# bottom edge; buttons without it are spread evenly over the width among the buttons that
# have a role (a face or an answer). On a touch board the faces themselves are what the
# customer taps, so they are spread evenly over the width whatever the buttons.
#
# A scale smaller than the face-button count is laid over all of them
# (kiosk.config.scale_rating): a face that two buttons take stands between them. A control
# that is not a push button under the panel (the CoreInk's side dial and top button, board
# keys "control" and "edge") gets a hint under its face showing which control it is.
from kiosk.config import scale_rating
from micropython import const

# Font files in kiosk/ui/fonts, largest first; text shrinks down this list until it fits.
FONT_NAMES = ("sansb30", "sansb22", "sans22", "sans17", "sans13")

_FACE_FILL = const(88)  # a face's share (percent) of the distance between neighbours
_TITLE_SHARE = const(50)  # percent of the height a question may take


class Box:
    """A rectangle: x0, y0 inclusive, x1, y1 exclusive."""

    def __init__(self, x0, y0, x1, y1):
        self.x0 = x0
        self.y0 = y0
        self.x1 = x1
        self.y1 = y1

    def contains(self, x, y):
        return self.x0 <= x < self.x1 and self.y0 <= y < self.y1

    def centre(self):
        return (self.x0 + self.x1) // 2, (self.y0 + self.y1) // 2


def spread(count, width):
    """x of `count` centres spread evenly over width (each in the middle of its share)."""
    return [(2 * i + 1) * width // (2 * count) for i in range(count)]


class Layout:
    def __init__(self, width, height, board):
        self.width = width
        self.height = height
        self.touch = bool(board.get("touch"))
        self.margin = max(2, min(width, height) // 60)
        self.gap = max(3, height // 40)  # between blocks
        self.title_height = height * _TITLE_SHARE // 100
        roles = [b for b in board.get("buttons") or () if b.get("face") or b.get("answer")]
        even = spread(len(roles), width) if roles else []
        self.face_x = {}
        self.answer_x = {}
        self.controls = {}  # face -> (control, edge) of a control that is not under the panel
        self.bottom_xs = []  # x of the push buttons under the panel
        self.edge_marks = []  # (edge, position) of the other controls, one per control
        for i, button in enumerate(roles):
            x = button.get("x")
            if x is None:
                x = even[i]
            control = button.get("control", "button")
            edge = button.get("edge", "bottom")
            if control == "button" and edge == "bottom":
                self.bottom_xs.append(x)
            else:
                along = button.get("y" if edge in ("left", "right") else "x")
                if along is None:
                    along = (height if edge in ("left", "right") else width) // 2
                if (edge, along) not in self.edge_marks:
                    self.edge_marks.append((edge, along))
            if button.get("face"):
                self.face_x[button["face"]] = x
                if control != "button" or edge != "bottom":
                    self.controls[button["face"]] = (control, edge)
            if button.get("answer"):
                self.answer_x[button["answer"]] = x

    def button_xs(self):
        """x of every push button under the panel (for drawing them beside a render)."""
        return sorted(set(self.bottom_xs))

    def buttons_of(self, count):
        """For each face 1..count, the face buttons (board face numbers) that select it."""
        n = len(self.face_x)
        out = [[] for _ in range(count)]
        for position in range(1, n + 1):
            rating = scale_rating(position, n, count)
            if rating:
                out[rating - 1].append(position)
        return out

    # -- faces ------------------------------------------------------------------------------
    def face_centres(self, count):
        """x of the centres of faces 1..count: above the buttons that select them (the
        middle of two), or spread evenly."""
        face_x = self.face_x
        n = len(face_x)
        if self.touch or count > n or not all(i in face_x for i in range(1, n + 1)):
            return spread(count, self.width)
        return [sum(face_x[b] for b in group) // len(group) for group in self.buttons_of(count)]

    def hints(self, count):
        """For each face 1..count, the (control, edge) pairs that select it when they are
        not push buttons under the panel; empty lists on other boards."""
        if self.touch or not self.controls:
            return []
        return [[self.controls[b] for b in group if b in self.controls]
                for group in self.buttons_of(count)]

    def face_size(self, centres, room, limit=0):
        """Diameter for faces at centres: within room pixels of height, apart from their
        neighbours and inside the panel; at most limit if given."""
        closest = self.width
        for i in range(1, len(centres)):
            closest = min(closest, abs(centres[i] - centres[i - 1]))
        size = min(room, closest * _FACE_FILL // 100, self.width - 2 * self.margin)
        if limit:
            size = min(size, limit)
        return max(0, size) & ~1

    def clamp_x(self, x, half):
        """Centre x moved just enough for a thing `half` wide either side to stay inside."""
        return max(self.margin + half, min(self.width - self.margin - half - 1, x))

    def columns(self, centres, y0, y1):
        """Touch boxes for things at centres: each reaches halfway to its neighbours (the
        panel's edge for the outer ones), from y0 to y1."""
        boxes = []
        for i, x in enumerate(centres):
            left = 0 if i == 0 else (centres[i - 1] + x + 1) // 2
            right = self.width if i == len(centres) - 1 else (x + centres[i + 1] + 1) // 2
            boxes.append(Box(left, y0, right, y1))
        return boxes

    # -- answers ----------------------------------------------------------------------------
    def answer_centres(self):
        """x of the "no" and "yes" choices: above their buttons, or the two halves."""
        if not self.touch and "no" in self.answer_x and "yes" in self.answer_x:
            return [self.answer_x["no"], self.answer_x["yes"]]
        return spread(2, self.width)
