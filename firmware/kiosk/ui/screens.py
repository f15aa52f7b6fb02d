# The screens a customer (and a technician) sees, drawn into the panel's frame buffer.
#
# Screens implements the flow's show(kind, title, options, note) (kiosk.screen) and the
# touch hit test target_at(x, y). Every view is drawn from scratch: clear, draw, then
# request() asks the refresh task to put the buffer on the panel.
from kiosk import screen
from kiosk.ui import faces, font, layout
from micropython import const

_BUTTON_PAD = const(8)  # pixels either side of an answer label inside its box
_OUTLINE = const(3)  # stroke of an outlined (touch) answer box
_CLOSED_FACE_SHARE = const(30)  # percent of the height a face may take while closed
_THANKS_LINES = const(3)
_TITLE_LINES = const(6)  # the height share is what limits a question's lines
_NOTE_LINES = const(2)


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
    def show(self, kind, title, options=(), note=""):
        self.fb.fill(self.paper)
        self.boxes = []
        self.option_centres = []
        self.face_size = 0
        if kind == screen.VIEW_IDLE:
            self._idle(title, len(options), note)
        elif kind == screen.VIEW_FOLLOW_UP:
            self._follow_up(title, options, note)
        elif kind == screen.VIEW_THANKS:
            self._thanks(title, note)
        elif kind == screen.VIEW_CLOSED:
            self._closed(title, len(options), note)
        else:
            self._service(title, note)
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
        top = self._title(title) + self.layout.gap
        bottom = self._note(note) - self.layout.gap // 2
        self._faces(count, top, bottom)

    def _follow_up(self, title, options, note):
        lay = self.layout
        top = self._title(title) + lay.gap
        bottom = self._note(note)
        labels = list(options[:2])
        while len(labels) < 2:
            labels.append("?")
        if lay.touch:
            self._touch_answers(labels, top, bottom)
        else:
            self._button_answers(labels, lay.answer_centres(), top, bottom)

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
        """The closed message and, small, the question, over small faces: a press still
        counts (flagged as outside opening hours)."""
        lay = self.layout
        inner = self.width - 2 * lay.margin
        big, lines = font.fit(self.fonts, title, inner, 2, self.layout.title_height)
        small_lines = font.fit((self.small,), note, inner, _NOTE_LINES)[1] if note else ()
        bottom = self.height - lay.margin
        limit = self.height * _CLOSED_FACE_SHARE // 100
        faces_top = bottom - limit if count else bottom
        text_height = len(lines) * big.height + len(small_lines) * self.small.height
        top = max(0, (faces_top - text_height) // 2)
        top = self._lines(big, lines, top)
        top = self._lines(self.small, small_lines, top)
        if count:
            self._faces(count, max(top + lay.gap, faces_top), bottom, limit)

    def _service(self, title, note):
        """For a technician: the problem on a dark bar, the details below in the larger
        of the two text sizes that holds them all (cut with '...' if none does)."""
        lay = self.layout
        m = lay.margin
        inner = self.width - 2 * m
        used, lines = font.fit(self.fonts[1:], title, inner, 2)
        bar = len(lines) * used.height + 2 * m
        self.fb.fill_rect(0, 0, self.width, bar, self.ink)
        self._lines(used, lines, m, centred=False, ink=self.paper)
        if not note:
            return
        top = bar + lay.gap
        room = self.height - top - m
        used, detail = font.fit(self.fonts[-2:], note, inner, room // self.small.height, room)
        self._lines(used, detail, top, centred=False)
