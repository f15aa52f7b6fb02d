# Renders every view of the screens for a board into a plain MONO_HLSB frame buffer and
# prints it as one '@' JSON line per view (MicroPython side of tools/render_screens.py and
# tests/firmware/test_screens.py). Paper is 1 and ink 0, so the bytes are black-on-white as
# they are.
import binascii
import gc
import json

import framebuf
from kiosk import config, screen
from kiosk.ui.screens import Screens

INK = 0
PAPER = 1

GERMAN_QUESTION = "Wie würden Sie Ihren Besuch bewerten?"
FRENCH_FOLLOW_UP = "Vous a-t-on expliqué la suite ?"
SERVICE_TITLE = "Service: 2 to fix"
SERVICE_NOTE = ("scale must be between 3 and 5 (got 7)\n"
                "flash full: 12 oldest dropped, sync\n"
                "id desk-07  board %s\n"
                "app 0.1.0  MicroPython 1.24.1\n"
                "wifi up 192.168.1.57\n"
                "push ok, 3 waiting, last ok 2026-11-23 14:02Z\n"
                "synced to #1480 of #1492\n"
                "flash 97%% full, 1492 kept, 12 dropped\n"
                "clock ntp 2026-11-23 14:05Z\n"
                "boot 14, crashes 0")


def logical_size(board):
    """The panel's size as the screens see it: native size, swapped at 90/270 degrees."""
    display = board["display"]
    if display.get("rotation", 0) in (90, 270):
        return display["height"], display["width"]
    return display["width"], display["height"]


def face_buttons(board):
    return len([b for b in board["buttons"] if b.get("face")])


def views(board):
    """(name, kind, title, options, note, chosen, mark) of every view worth reviewing on
    this board."""
    t = config.ENGLISH
    touch = bool(board.get("touch"))
    most = 5 if touch else min(5, face_buttons(board))
    usual = min(4, most)

    def labels(scale):
        return [str(i + 1) for i in range(scale)]

    out = []
    for scale in (3, 4, 5):
        if scale <= most:
            out.append(("idle-%d" % scale, screen.VIEW_IDLE, t["question"], labels(scale), "",
                        None, False))
    # With storage or config trouble: the neutral service mark, no technician text.
    out.append(("idle-note", screen.VIEW_IDLE, t["question"], labels(usual), "", None, True))
    out.append(("idle-de", screen.VIEW_IDLE, GERMAN_QUESTION, labels(usual), "", None, False))
    # The follow-up shows the face its customer tapped (here the best of 4, then 2 of 3).
    out.append(("follow_up", screen.VIEW_FOLLOW_UP, t["follow_up"], (t["no"], t["yes"]), "",
                (usual, usual), False))
    out.append(("follow_up-fr", screen.VIEW_FOLLOW_UP, FRENCH_FOLLOW_UP, ("Non", "Oui"), "",
                (2, 3), False))
    out.append(("thanks", screen.VIEW_THANKS, t["thanks"], (), "", None, False))
    out.append(("thanks-no", screen.VIEW_THANKS, t["sorry"], (), "", None, False))
    out.append(("closed", screen.VIEW_CLOSED, t["closed"], (), "", None, False))
    out.append(("service", screen.VIEW_SERVICE, SERVICE_TITLE, (),
                SERVICE_NOTE % board["name"], None, False))
    return out


def make(board, fonts_dir):
    """A frame buffer of the board's logical size and Screens drawing on it."""
    width, height = logical_size(board)
    buf = bytearray(((width + 7) // 8) * height)
    fb = framebuf.FrameBuffer(buf, width, height, framebuf.MONO_HLSB)
    requests = []
    screens = Screens(fb, width, height, INK, PAPER, board, fonts_dir,
                      lambda: requests.append(1))
    return buf, screens, requests


def describe(screens, buf):
    return {
        "width": screens.width,
        "height": screens.height,
        "touch": screens.layout.touch,
        "buttons": screens.layout.button_xs(),
        "edges": [list(mark) for mark in screens.layout.edge_marks],
        "boxes": [[b.x0, b.y0, b.x1, b.y1] for b in screens.boxes],
        "centres": [list(c) for c in screens.option_centres],
        "pixels": binascii.hexlify(buf).decode(),
    }


def main(fonts_dir, board_paths):
    for path in board_paths:
        with open(path) as f:
            board = json.load(f)
        buf, screens, requests = make(board, fonts_dir)
        for name, kind, title, options, note, chosen, mark in views(board):
            screens.show(kind, title, options, note, chosen, mark)
            out = describe(screens, buf)
            out["board"] = board["name"]
            out["view"] = name
            out["requests"] = len(requests)
            print("@" + json.dumps(out))
            gc.collect()


class OffsetCanvas:
    """A panel-sized drawing surface placed inside a larger frame buffer with a border of
    `pad` pixels all round, so that ink drawn outside the panel can be found."""

    def __init__(self, width, height, pad, paper):
        self.pad = pad
        self.paper = paper
        self.outer_width = width + 2 * pad
        self.outer_height = height + 2 * pad
        self.width = width
        self.height = height
        self.buf = bytearray(((self.outer_width + 7) // 8) * self.outer_height)
        self.big = framebuf.FrameBuffer(self.buf, self.outer_width, self.outer_height,
                                        framebuf.MONO_HLSB)
        self.big.fill(paper)

    def fill(self, c):
        self.big.fill_rect(self.pad, self.pad, self.width, self.height, c)

    def fill_rect(self, x, y, w, h, c):
        self.big.fill_rect(x + self.pad, y + self.pad, w, h, c)

    def rect(self, x, y, w, h, c, f=False):
        self.big.rect(x + self.pad, y + self.pad, w, h, c, f)

    def pixel(self, x, y, c=None):
        if c is None:
            return self.big.pixel(x + self.pad, y + self.pad)
        self.big.pixel(x + self.pad, y + self.pad, c)

    def hline(self, x, y, w, c):
        self.big.hline(x + self.pad, y + self.pad, w, c)

    def vline(self, x, y, h, c):
        self.big.vline(x + self.pad, y + self.pad, h, c)

    def line(self, x0, y0, x1, y1, c):
        p = self.pad
        self.big.line(x0 + p, y0 + p, x1 + p, y1 + p, c)

    def ellipse(self, x, y, xr, yr, c, f=False):
        self.big.ellipse(x + self.pad, y + self.pad, xr, yr, c, f)

    def poly(self, x, y, coords, c, f=False):
        self.big.poly(x + self.pad, y + self.pad, coords, c, f)

    def blit(self, source, x, y, key=-1, palette=None):
        self.big.blit(source, x + self.pad, y + self.pad, key, palette)

    def ink_outside(self, ink):
        """Pixels of ink in the border around the panel."""
        count = 0
        p = self.pad
        for y in range(self.outer_height):
            inside_row = p <= y < p + self.height
            for x in range(self.outer_width):
                if inside_row and p <= x < p + self.width:
                    continue
                if self.big.pixel(x, y) == ink:
                    count += 1
        return count
