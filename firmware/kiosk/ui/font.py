# Bitmap fonts read glyph by glyph from flash, and the word wrapping of the screens.
#
# The files come from tools/make_fonts.py (format described there). Only the header and
# the glyph index (5 bytes a glyph, about 1 KB for Latin-1) stay in RAM; a glyph's rows
# are read into one preallocated buffer just before it is blitted, so drawing a line of
# text allocates nothing per glyph.
#
# Colours: the panels are 1-bit, ink and paper are 0 and 1 (either way round). Glyphs are
# blitted through a two-entry palette with the paper colour as the transparent key, so
# text can be drawn over anything.
import framebuf
from micropython import const

_MAGIC = b"DPF1"
_HEADER_BYTES = const(12)
_RANGE_BYTES = const(4)
_ENTRY_BYTES = const(5)
_QUESTION_MARK = const(0x3F)

# Typographic punctuation that translators paste in, drawn as its Latin-1 look-alike.
_LOOKALIKES = {
    0x2018: 0x27, 0x2019: 0x27, 0x201A: 0x2C, 0x201C: 0x22, 0x201D: 0x22, 0x201E: 0x22,
    0x2013: 0x2D, 0x2014: 0x2D, 0x2212: 0x2D, 0x2022: 0xB7,
}


class FontError(Exception):
    pass


def _u16(data, at):
    return data[at] | data[at + 1] << 8


# A text is walked over its UTF-8 bytes (memoryview(str): no copy). Walking it by character
# would make a str of every character, and MicroPython interns each one as a qstr: a hash
# and a pool search per character (a tenth of the simulator's CPU, and the same on the
# ESP32). ASCII is decoded inline in width() and draw() alike (a call per character would
# cost what the walk saves); the rest here, packed with its length so that nothing is
# allocated: code << 3 | bytes.
def _decode(data, i):
    b = data[i]
    if b < 0xE0:
        return ((b & 0x1F) << 6 | data[i + 1] & 0x3F) << 3 | 2
    if b < 0xF0:
        return ((b & 0x0F) << 12 | (data[i + 1] & 0x3F) << 6 | data[i + 2] & 0x3F) << 3 | 3
    return ((b & 0x07) << 18 | (data[i + 1] & 0x3F) << 12 | (data[i + 2] & 0x3F) << 6
            | data[i + 3] & 0x3F) << 3 | 4


class Font:
    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            head = f.read(_HEADER_BYTES)
            if len(head) != _HEADER_BYTES or head[:4] != _MAGIC:
                raise FontError("%s is not a DeskPulse font file" % path)
            self.height = head[4]  # rows of every glyph: the line height
            self.baseline = head[5]  # rows from the top of a line to its baseline
            max_stride = head[6]
            range_count = head[7]
            count = _u16(head, 8)
            self.cap_top = head[10]  # first row of a capital letter
            table = f.read(range_count * _RANGE_BYTES)
            self._index = f.read(count * _ENTRY_BYTES)
        if len(table) != range_count * _RANGE_BYTES or len(self._index) != count * _ENTRY_BYTES:
            raise FontError("%s is truncated" % path)
        ranges = []
        number = 0
        for i in range(range_count):
            first = _u16(table, i * _RANGE_BYTES)
            size = _u16(table, i * _RANGE_BYTES + 2)
            ranges.append((first, first + size, number))
            number += size
        if number != count:
            raise FontError("%s: ranges and index disagree" % path)
        self._ranges = tuple(ranges)
        self._bitmaps = _HEADER_BYTES + range_count * _RANGE_BYTES + count * _ENTRY_BYTES
        self._fallback = 0
        self._fallback = self._entry(_QUESTION_MARK)
        # One buffer for the largest glyph, seen through a frame buffer per row width
        # (1..max_stride bytes): a glyph is read at its own stride into the buffer's start
        # (the bytes read after it, the next glyph's, lie beyond what its frame shows).
        rows = self.height
        buf = bytearray(max_stride * rows)
        self._buf = buf
        self._frames = [None] + [
            framebuf.FrameBuffer(buf, 8 * s, rows, framebuf.MONO_HLSB)
            for s in range(1, max_stride + 1)
        ]
        self._palette = framebuf.FrameBuffer(bytearray(1), 2, 1, framebuf.MONO_HLSB)

    def ram_bytes(self):
        """Bytes this font keeps on the heap for its data (index and glyph buffer)."""
        return len(self._index) + len(self._buf) + 1

    def _entry(self, code):
        """Offset of the character's index entry; unknown characters get the '?' entry."""
        if code > 0xFF:
            code = _LOOKALIKES.get(code, code)
        for first, end, number in self._ranges:
            if first <= code < end:
                return (number + code - first) * _ENTRY_BYTES
        return self._fallback

    def width(self, text):
        """Pixels from the pen start to the right edge of the text's ink: what a line
        needs, without the space a last glyph leaves for a next one. Allocates one
        memoryview, whatever the text's length."""
        index = self._index
        pen = 0
        right = 0
        data = memoryview(text)
        end = len(data)
        i = 0
        while i < end:
            code = data[i]
            if code < 0x80:
                i += 1
            else:
                code = _decode(data, i)
                i += code & 7
                code >>= 3
            at = self._entry(code)
            ink = index[at + 2]
            if ink:
                offset = index[at + 3]
                if offset > 127:
                    offset -= 256
                right = max(right, pen + offset + ink)
            pen += index[at + 4]
        return right

    def draw(self, fb, text, x, y, ink):
        """Draw text with its line box's top-left corner at (x, y); returns the pen's x
        after the text. Only ink pixels are written."""
        index = self._index
        key = ink ^ 1
        palette = self._palette
        palette.pixel(0, 0, key)
        palette.pixel(1, 0, ink)
        buf = self._buf
        frames = self._frames
        bitmaps = self._bitmaps
        data = memoryview(text)
        end = len(data)
        i = 0
        with open(self.path, "rb") as f:
            while i < end:
                code = data[i]
                if code < 0x80:
                    i += 1
                else:
                    code = _decode(data, i)
                    i += code & 7
                    code >>= 3
                at = self._entry(code)
                ink_width = index[at + 2]
                if ink_width:
                    stride = (ink_width + 7) >> 3
                    f.seek(bitmaps + _u16(index, at))
                    f.readinto(buf)
                    offset = index[at + 3]
                    if offset > 127:
                        offset -= 256
                    fb.blit(frames[stride], x + offset, y, key, palette)
                x += index[at + 4]
        return x


# -- word wrapping ------------------------------------------------------------------------
def _break_word(font, word, width, lines):
    """Split a word wider than width into pieces that fit; returns the last piece."""
    while len(word) > 1 and font.width(word) > width:
        cut = len(word) - 1
        while cut > 1 and font.width(word[:cut]) > width:
            cut -= 1
        lines.append(word[:cut])
        word = word[cut:]
    return word


def wrap(font, text, width):
    """Break text into lines no wider than width, at spaces (and at newlines, which
    always break); a word wider than a line is split between characters."""
    lines = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split():
            candidate = line + " " + word if line else word
            if font.width(candidate) <= width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = _break_word(font, word, width, lines)
        lines.append(line)
    return lines


def _balance_two(font, text, lines, width):
    """Two lines from a greedy wrap, re-split so that the longer one is as short as
    possible: a centred two-line question reads better as two similar lines."""
    words = text.split()
    for word in words:
        if font.width(word) > width:
            return lines  # a word was split between characters: keep that split
    best = lines
    best_width = max(font.width(lines[0]), font.width(lines[1]))
    for cut in range(1, len(words)):
        first = " ".join(words[:cut])
        second = " ".join(words[cut:])
        widest = max(font.width(first), font.width(second))
        if widest < best_width and widest <= width:
            best = [first, second]
            best_width = widest
    return best


def ellipsize(font, line, width):
    """line shortened until it fits width with '...' after it."""
    while line and font.width(line + "...") > width:
        line = line[:-1].rstrip()
    return line + "..."


def fit(fonts, text, width, max_lines=2, max_height=0):
    """(font, lines) for text in the first (largest) of fonts whose wrapped lines number
    at most max_lines and, if max_height is set, stack within it. If even the last font
    needs more, its lines are cut to what fits and the last ends with '...'."""
    lines = []
    font = fonts[-1]
    for font in fonts:
        lines = wrap(font, text, width)
        if len(lines) <= max_lines and (not max_height or len(lines) * font.height <= max_height):
            if len(lines) == 2 and "\n" not in text:
                lines = _balance_two(font, text, lines, width)
            return font, lines
    if max_height:
        max_lines = max(1, min(max_lines, max_height // font.height))
    lines = lines[:max_lines]
    lines[-1] = ellipsize(font, lines[-1], width)
    return font, lines
