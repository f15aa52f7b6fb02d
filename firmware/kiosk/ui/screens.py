# The screens a customer (and a technician) sees, drawn into the panel's frame buffer.
#
# Screens implements the flow's show(kind, title, options, note) (kiosk.screen) and the
# touch hit test target_at(x, y). Every view is drawn from scratch: clear, draw, then
# request() asks the refresh task to put the buffer on the panel.
from array import array

from kiosk import screen
from kiosk.ui import faces, font, layout
from micropython import const

_BUTTON_PAD = const(8)  # pixels either side of an answer label inside its box
_OUTLINE = const(3)  # stroke of an outlined (touch) answer box
_THANKS_LINES = const(3)
_TITLE_LINES = const(6)  # the height share is what limits a question's lines
_NOTE_LINES = const(2)
_CHOSEN_SHARE = const(3)  # above touch targets the chosen face takes a third of the room
_HINT_SHARE = const(11)  # percent of the height a control hint under a face may take
_MARK_RADIUS = const(3)  # the neutral "service needed" ring in the bottom right corner


class Screens:
    def __init__(self, fb, width, height, ink, paper, board, fonts_dir, request):
        self.fb = fb
        self.width = width
        self.height = height
        self.ink = ink
        self.paper = paper
        self.request = request
        self.layout = layout.Layout(width, height, board)
        self.fonts = [font.Font(fonts_dir + "/" + name + ".bin") for name in layout.FONT_NAMES]
        self.small = self.fonts[-1]
        self.kind = None
        # Where the current view's options are (faces or no/yes), as layout.Box objects:
        # the touch targets on a touch board.
        self.boxes = []
        self.option_centres = []
        self.face_size = 0

    def font_ram_bytes(self):
        return sum(f.ram_bytes() for f in self.fonts)

    # -- the flow's interface ---------------------------------------------------------------
    def show(self, kind, title, options=(), note="", chosen=None, mark=False):
        self.fb.fill(self.paper)
        self.boxes = []
        self.option_centres = []
        self.face_size = 0
        if kind == screen.VIEW_IDLE:
            self._idle(title, len(options), note)
        elif kind == screen.VIEW_FOLLOW_UP:
            self._follow_up(title, options, note, chosen)
        elif kind == screen.VIEW_THANKS:
            self._thanks(title, note)
        elif kind == screen.VIEW_CLOSED:
            self._closed(title, len(options), note)
        else:
            self._service(title, note)
        if mark:
            self._mark()
        self.kind = kind
        self.request()

    def target_at(self, x, y):
        """Index of the option whose touch box holds (x, y), or -1 (also on boards
        without touch)."""
        if self.layout.touch:
            for i, box in enumerate(self.boxes):
                if box.contains(x, y):
                    return i
        return -1

    # -- pieces -------------------------------------------------------------------------------
    def _lines(self, used, lines, y, centred=True, x=-1, ink=-1):
        """Draw lines from top y; returns the y below them."""
        if ink < 0:
            ink = self.ink
        for line in lines:
            if centred:
                left = (self.width - used.width(line)) // 2 if x < 0 else x - used.width(line) // 2
            else:
                left = self.layout.margin if x < 0 else x
            used.draw(self.fb, line, left, y, ink)
            y += used.height
        return y

    def _note(self, note):
        """Draw a small note at the bottom; returns the y above it."""
        bottom = self.height - self.layout.margin
        if not note:
            return bottom
        inner = self.width - 2 * self.layout.margin
        used, lines = font.fit((self.small,), note, inner, _NOTE_LINES)
        top = bottom - len(lines) * used.height
        self._lines(used, lines, top)
        return top

    def _title(self, title):
        """The question at the top, in the largest font whose lines fit the title's share
        of the height (two lines of a large font on a 122-pixel panel, three on a square
        one; more of the small font for a long text); returns the y below it."""
        m = self.layout.margin
        used, lines = font.fit(self.fonts, title, self.width - 2 * m, _TITLE_LINES,
                               self.layout.title_height)
        # The rows above a capital hold only accents: let a first line use the margin.
        return self._lines(used, lines, max(0, m - used.cap_top // 2))

    def _faces(self, count, top, bottom, limit=0):
        lay = self.layout
        centres = lay.face_centres(count)
        size = lay.face_size(centres, bottom - top, limit)
        self.face_size = size
        half = size // 2
        cy = (top + bottom) // 2
        xs = [lay.clamp_x(x, half) for x in centres]
        for i, x in enumerate(xs):
            faces.draw(self.fb, x, cy, size, i + 1, count, self.ink, self.paper)
            self.option_centres.append((x, cy))
        self.boxes = lay.columns(xs, top, self.height)

    # -- views --------------------------------------------------------------------------------
    def _idle(self, title, count, note):
        lay = self.layout
        top = self._title(title) + lay.gap
        bottom = self._note(note) - lay.gap // 2
        hints = lay.hints(count)
        if not hints:
            self._faces(count, top, bottom)
            return
        # Which control selects each face, under it: the board's controls are not under
        # the panel, so nothing else says so.
        size = self.height * _HINT_SHARE // 100
        self._faces(count, top, bottom - size - lay.gap)
        for (x, _), controls in zip(self.option_centres, hints):
            step = size + lay.gap
            left = x - (len(controls) * step - lay.gap) // 2
            for i, (control, edge) in enumerate(controls):
                self._hint(left + i * step, bottom - size, size, control, edge)

    def _hint(self, x0, y0, size, control, edge):
        """A small picture of the kiosk seen from the front, with the control that selects
        a face marked on its edge and an arrow for how to move it: up or down for the
        dial's rolls, towards the mark for a press."""
        fb = self.fb
        ink = self.ink
        fb.rect(x0, y0, size, size, ink)
        third = size // 3
        mid = size // 2
        if edge in ("left", "right"):
            mx = x0 + size - 2 if edge == "right" else x0 - 1
            fb.fill_rect(mx, y0 + third, 3, size - 2 * third, ink)
            ax = x0 + size - third - 2 if edge == "right" else x0 + third + 1
        else:
            my = y0 - 1 if edge == "top" else y0 + size - 2
            fb.fill_rect(x0 + third, my, size - 2 * third, 3, ink)
            ax = x0 + mid
        ay = y0 + mid
        h = max(2, size // 5)
        if control == "dial_up":
            pts = (ax - h, ay + h // 2, ax + h, ay + h // 2, ax, ay - h)
        elif control == "dial_down":
            pts = (ax - h, ay - h // 2, ax + h, ay - h // 2, ax, ay + h)
        elif edge == "right":  # a press: the arrow points at the control
            pts = (ax - h, ay - h, ax - h, ay + h, ax + h // 2, ay)
        elif edge == "left":
            pts = (ax + h, ay - h, ax + h, ay + h, ax - h // 2, ay)
        elif edge == "top":
            pts = (ax - h, ay + h // 2, ax + h, ay + h // 2, ax, ay - h)
        else:
            pts = (ax - h, ay - h // 2, ax + h, ay - h // 2, ax, ay + h)
        fb.poly(0, 0, array("h", pts), ink, True)

    def _mark(self):
        """A small ring in the bottom right corner: service is needed. Neutral on purpose:
        the customer is not asked to do anything; the technician knows to open the
        service screen."""
        m = self.layout.margin + _MARK_RADIUS
        self.fb.ellipse(self.width - m - 1, self.height - m - 1, _MARK_RADIUS, _MARK_RADIUS,
                        self.ink)

    def _follow_up(self, title, options, note, chosen):
        lay = self.layout
        top = self._title(title) + lay.gap
        bottom = self._note(note)
        labels = list(options[:2])
        while len(labels) < 2:
            labels.append("?")
        if lay.touch:
            if chosen:  # above the two large targets, which take the whole width
                top = self._chosen_face(chosen, self.width // 2, top,
                                        (bottom - top) // _CHOSEN_SHARE)
            self._touch_answers(labels, top, bottom)
            return
        self._button_answers(labels, lay.answer_centres(), top, bottom)
        if chosen:
            # Between the answers, level with them, or in the space above them: where it
            # can be larger.
            left, right = sorted(self.boxes, key=lambda box: box.x0)
            between = min(right.x0 - left.x1 - 2 * lay.gap, left.y1 - left.y0)
            above = min(left.y0 - top - lay.gap, self.width // _CHOSEN_SHARE)
            if between >= above:
                self._chosen_face(chosen, (left.x1 + right.x0) // 2,
                                  (left.y0 + left.y1 - between) // 2, between)
            else:
                self._chosen_face(chosen, self.width // 2, (top + left.y0 - above) // 2, above)

    def _chosen_face(self, chosen, cx, top, size):
        """The face the customer tapped, small, at (cx, top): it tells the next person in
        line that this question is someone else's. Returns the y below it."""
        if size < faces.SMALLEST:
            return top
        rating, scale = chosen
        faces.draw(self.fb, cx, top + size // 2, size, rating, scale, self.ink, self.paper)
        return top + size + self.layout.gap

    def _answer_text(self, labels, room_width, room_height):
        """(font, lines of each label): the largest font in which each label takes at most
        two lines of room_width and room_height; else the small font, cut to fit."""
        for used in self.fonts:
            texts = [font.wrap(used, text, room_width) for text in labels]
            if all(len(lines) <= 2 and len(lines) * used.height <= room_height
                   for lines in texts):
                return used, texts
        small = self.small
        return small, [font.fit((small,), text, room_width, 2)[1] for text in labels]

    def _answer(self, used, lines, x0, y0, w, h, inverted):
        """One answer's box with its label centred; it becomes option len(self.boxes)."""
        if inverted:
            self.fb.fill_rect(x0, y0, w, h, self.ink)
        else:
            for d in range(_OUTLINE):
                self.fb.rect(x0 + d, y0 + d, w - 2 * d, h - 2 * d, self.ink)
        self._round_corners(x0, y0, w, h)
        cx = x0 + w // 2
        top = y0 + (h - len(lines) * used.height) // 2
        self._lines(used, lines, top, x=cx, ink=self.paper if inverted else self.ink)
        self.boxes.append(layout.Box(x0, y0, x0 + w, y0 + h))
        self.option_centres.append((cx, y0 + h // 2))

    def _button_answers(self, labels, centres, top, bottom):
        """Labels in dark boxes just above the "no" and "yes" buttons."""
        lay = self.layout
        gap = lay.gap
        apart = abs(centres[1] - centres[0])
        if apart < self.width // 4:
            # Buttons side by side: the labels cannot each stand above their own.
            centres = layout.spread(2, self.width)
            apart = centres[1] - centres[0]
        # Two boxes of this width fit side by side whatever the buttons' positions.
        limit = min(apart - gap, self.width // 2 - lay.margin - gap // 2)
        used, texts = self._answer_text(labels, limit - 2 * _BUTTON_PAD,
                                        bottom - top - _BUTTON_PAD)
        widest = max(used.width(line) for lines in texts for line in lines)
        box_w = min(limit, max(widest + 2 * _BUTTON_PAD, self.width // 4))
        box_h = max(len(lines) for lines in texts) * used.height + _BUTTON_PAD
        xs = self._apart(centres, box_w, gap)
        for i in range(2):
            self._answer(used, texts[i], xs[i] - box_w // 2, bottom - box_h, box_w, box_h, True)

    def _apart(self, centres, box_w, gap):
        """Centres for two boxes box_w wide: as asked, but inside the panel and apart."""
        lay = self.layout
        half = box_w // 2
        a, b = lay.clamp_x(centres[0], half), lay.clamp_x(centres[1], half)
        need = box_w + gap
        if abs(b - a) >= need:
            return [a, b]
        low = (a + b) // 2 - need // 2
        low = max(lay.margin + half, min(low, self.width - lay.margin - half - 1 - need))
        return [low, low + need] if a <= b else [low + need, low]

    def _touch_answers(self, labels, top, bottom):
        """Two large outlined buttons, one per half: the touch targets."""
        lay = self.layout
        w = self.width // 2 - lay.margin - lay.gap // 2
        h = bottom - top
        used, texts = self._answer_text(labels, w - 2 * _BUTTON_PAD, h - 2 * _OUTLINE)
        for i in range(2):
            x0 = lay.margin if i == 0 else self.width - lay.margin - w
            self._answer(used, texts[i], x0, top, w, h, False)

    def _round_corners(self, x0, y0, w, h):
        """Knock the corner pixels off a box so it reads as a button."""
        fb = self.fb
        for dx, dy in ((0, 0), (1, 0), (0, 1)):
            fb.pixel(x0 + dx, y0 + dy, self.paper)
            fb.pixel(x0 + w - 1 - dx, y0 + dy, self.paper)
            fb.pixel(x0 + dx, y0 + h - 1 - dy, self.paper)
            fb.pixel(x0 + w - 1 - dx, y0 + h - 1 - dy, self.paper)

    def _thanks(self, title, note):
        m = self.layout.margin
        bottom = self._note(note)
        room = bottom - m
        used, lines = font.fit(self.fonts, title, self.width - 2 * m, _THANKS_LINES, room)
        top = m + (room - len(lines) * used.height) // 2
        self._lines(used, lines, top)

    def _closed(self, title, count, note):
        """The closed message, large and centred, with nothing to tap: no faces and no
        question, so the screen asks nothing of anyone (docs/flow.md). A note, if any,
        goes small below it."""
        lay = self.layout
        inner = self.width - 2 * lay.margin
        big, lines = font.fit(self.fonts, title, inner, 3, lay.title_height)
        small_lines = font.fit((self.small,), note, inner, _NOTE_LINES)[1] if note else ()
        height = len(lines) * big.height + len(small_lines) * self.small.height
        top = max(0, (self.height - height) // 2)
        top = self._lines(big, lines, top)
        self._lines(self.small, small_lines, top)

    def _service(self, title, note):
        """For a technician: the title on a dark bar, then one line per fact in the small
        font, each cut to the width; what does not fit below is left out."""
        lay = self.layout
        m = lay.margin
        inner = self.width - 2 * m
        small = self.small
        bar = small.height + 2 * m
        self.fb.fill_rect(0, 0, self.width, bar, self.ink)
        self._lines(small, (self._cut(title, inner),), m, centred=False, ink=self.paper)
        y = bar + m
        for line in note.split("\n") if note else ():
            if y + small.height > self.height:
                break
            self._lines(small, (self._cut(line, inner),), y, centred=False)
            y += small.height

    def _cut(self, line, width):
        small = self.small
        return line if small.width(line) <= width else font.ellipsize(small, line, width)
