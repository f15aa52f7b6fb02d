"""`deskpulse sim --interactive`: the simulated kiosk at a terminal.

Keys press the board's buttons (or tap a touch target); the simulated e-ink glass is drawn
with braille (or half-block) characters, scaled to fit, and redrawn whenever it changes,
above a status line and a key legend. The console stays a pty for the serial sync, so
`deskpulse sync --port /dev/pts/N` works while a person is at the keys.

The kiosk side is firmware/kiosk/hal/simkeys.py; the two talk over two FIFOs in a private
folder (keys in, frames and status out). Everything that decides what is shown or which
key means what is a pure function here (`key_bindings`, `render`, `status_line`,
`compose`); the rest is terminal plumbing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import os
import selectors
import signal
import sys
import tempfile
import termios
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from deskpulse.device.micropython import DEFAULT_HEAP
from deskpulse.errors import DeskPulseError
from deskpulse.sim.simulator import Simulator

KEYS_FIFO = "keys"
FRAMES_FIFO = "frames"
GLYPHS = ("braille", "blocks")
QUIT_KEYS = ("q", "Q", "\x03")  # q, or Ctrl-C (the terminal sends it as a byte here)

# Dots per character cell (columns, rows): braille has 2 x 4, a half block 1 x 2. Both
# make roughly square dots in a terminal cell twice as high as it is wide.
_CELL = {"braille": (2, 4), "blocks": (1, 2)}
# Unicode braille: bit of dot (column, row) within the cell, indexed [row][column].
_BRAILLE_BITS = ((0x01, 0x08), (0x02, 0x10), (0x04, 0x20), (0x40, 0x80))
_HALF_BLOCKS = {(False, False): " ", (True, False): "▀", (False, True): "▄",
                (True, True): "█"}
_INK_SHARE = 3  # a dot shows ink when at least 1/3 of the pixels under it are ink
_MAX_FACES = 5  # the largest scale a kiosk takes: the touch targets of the idle screen
_WAKE_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_CHILD_POLL = 0.25  # seconds between checks that the kiosk is still running
_STATUS_SEPARATOR = " | "


@dataclass(frozen=True)
class Frame:
    """The glass in logical orientation: MONO_HLSB rows padded to bytes, 1 = ink."""

    width: int
    height: int
    bits: bytes

    def ink(self, x: int, y: int) -> bool:
        stride = (self.width + 7) // 8
        return bool(self.bits[y * stride + (x >> 3)] & (0x80 >> (x & 7)))


@dataclass(frozen=True)
class KeyBinding:
    """A key, the line sent to the kiosk for it (simkeys.py), and what the legend says."""

    key: str
    action: str
    label: str


# -- pure: keys -----------------------------------------------------------------------------


def key_bindings(board: Mapping[str, Any]) -> list[KeyBinding]:
    """Which key presses which button of `board` (a parsed board file), in legend order.

    Button boards: the digit of each face, n / y for the answer buttons (the same buttons
    as two of the faces, as on the board), s for a service button. Touch boards: 1-5 tap
    the targets of the screen shown (the faces; on the follow-up target 1 is no, 2 yes),
    n / y tap the follow-up's no / yes only while it is shown. w switches the WiFi.
    """
    out: list[KeyBinding] = []
    buttons = board.get("buttons") or []
    if board.get("touch"):
        for face in range(1, _MAX_FACES + 1):
            out.append(KeyBinding(str(face), f"tap {face - 1}", f"tap target {face}"))
        out.append(KeyBinding("n", "tap 0 follow_up", "tap no"))
        out.append(KeyBinding("y", "tap 1 follow_up", "tap yes"))
    else:
        faces = sorted((b["face"], i) for i, b in enumerate(buttons) if b.get("face"))
        for face, index in faces:
            out.append(KeyBinding(str(face), f"press {index}", f"face {face}"))
        for answer, letter in (("no", "n"), ("yes", "y")):
            for index, button in enumerate(buttons):
                if button.get("answer") == answer:
                    also = f" (= face {button['face']})" if button.get("face") else ""
                    out.append(KeyBinding(letter, f"press {index}", answer + also))
    for index, button in enumerate(buttons):
        if button.get("service"):
            out.append(KeyBinding("s", f"press {index}", "service button"))
            break
    out.append(KeyBinding("w", "wifi", "WiFi off/on"))
    return out


def legend_lines(bindings: Sequence[KeyBinding], cols: int) -> list[str]:
    """The key legend, entries wrapped to `cols` columns; q (quit) last."""
    return _wrap([f"[{b.key}] {b.label}" for b in bindings] + ["[q] quit"], "  ", cols)


def _wrap(entries: Sequence[str], separator: str, cols: int) -> list[str]:
    """Entries joined by separator into lines of at most cols, never split inside one
    (one longer than a line is cut)."""
    lines: list[str] = []
    line = ""
    for entry in entries:
        if line and len(line) + len(separator) + len(entry) > cols:
            lines.append(line)
            line = ""
        line = f"{line}{separator}{entry}" if line else entry
    if line:
        lines.append(line)
    return [text[:cols] for text in lines]


# -- pure: the picture ----------------------------------------------------------------------


def render(frame: Frame, cols: int, rows: int, glyphs: str = "braille") -> list[str]:
    """The frame as at most `rows` lines of at most `cols` characters, aspect kept.

    Shrunk to fit (never enlarged): a dot shows ink when a third of the pixels under it
    are ink, so 1-2 pixel strokes survive a reduction of two or three.
    """
    if glyphs not in _CELL:
        raise ValueError(f"glyphs must be one of {', '.join(GLYPHS)}")
    if cols < 1 or rows < 1 or frame.width < 1 or frame.height < 1:
        return []
    dx, dy = _CELL[glyphs]
    scale = max(frame.width / (cols * dx), frame.height / (rows * dy), 1.0)
    dots_w = min(cols * dx, math.ceil(frame.width / scale))
    dots_h = min(rows * dy, math.ceil(frame.height / scale))
    dots = _sample(frame, scale, dots_w, dots_h)

    def dot(x: int, y: int) -> bool:
        return x < dots_w and y < dots_h and dots[y][x]

    lines = []
    for row in range(math.ceil(dots_h / dy)):
        chars = []
        for col in range(math.ceil(dots_w / dx)):
            x, y = col * dx, row * dy
            if glyphs == "blocks":
                chars.append(_HALF_BLOCKS[dot(x, y), dot(x, y + 1)])
                continue
            code = 0
            for j in range(4):
                for i in range(2):
                    if dot(x + i, y + j):
                        code |= _BRAILLE_BITS[j][i]
            chars.append(chr(0x2800 + code) if code else " ")
        lines.append("".join(chars))
    return lines


def _sample(frame: Frame, scale: float, dots_w: int, dots_h: int) -> list[list[bool]]:
    # A summed-area table makes each dot's ink count four lookups, whatever the scale.
    w, h = frame.width, frame.height
    table = [[0] * (w + 1) for _ in range(h + 1)]
    for y in range(h):
        above, here = table[y], table[y + 1]
        run = 0
        for x in range(w):
            run += frame.ink(x, y)
            here[x + 1] = above[x + 1] + run

    def span(i: int, size: int) -> tuple[int, int]:
        lo = min(size - 1, int(i * scale))
        return lo, min(size, max(lo + 1, int((i + 1) * scale)))

    xs = [span(i, w) for i in range(dots_w)]
    dots = []
    for j in range(dots_h):
        y0, y1 = span(j, h)
        top, bottom = table[y0], table[y1]
        line = []
        for x0, x1 in xs:
            ink = bottom[x1] - bottom[x0] - top[x1] + top[x0]
            line.append(ink * _INK_SHARE >= (x1 - x0) * (y1 - y0))
        dots.append(line)
    return dots


# -- pure: status and the whole screen --------------------------------------------------------


def status_line(status: Mapping[str, Any] | None) -> str:
    """state, responses stored and unsynced, clock, WiFi and push, from simkeys' status."""
    if not status:
        return "starting..."
    clock = status.get("clock") or {}
    if clock.get("known") and clock.get("wall") is not None:
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(clock["wall"]))
        clock_text = f"clock {when} ({clock.get('source', '?')})"
    else:
        clock_text = "clock not set"
    push = status.get("push")
    parts = [
        f"state {status.get('state', '?')}",
        f"stored {status.get('stored', '?')}",
        f"unsynced {status.get('unsynced', '?')}",
        clock_text,
        "WiFi on" if status.get("wifi") else "WiFi off",
        f"push {push}" if push else "no push",
    ]
    return _STATUS_SEPARATOR.join(parts)


def compose(
    frame: Frame | None,
    status: Mapping[str, Any] | None,
    bindings: Sequence[KeyBinding],
    header: str,
    note: str,
    cols: int,
    rows: int,
    glyphs: str = "braille",
) -> list[str]:
    """The whole terminal screen as at most `rows` lines of at most `cols` characters:
    header, the glass in a frame, status line, legend, note (the last key)."""
    cols, rows = max(cols, 4), max(rows, 1)
    legend = legend_lines(bindings, cols)
    below = [*_wrap(status_line(status).split(_STATUS_SEPARATOR), _STATUS_SEPARATOR, cols),
             *legend, note[:cols]]
    room = rows - 1 - 2 - len(below)  # header, the frame's top and bottom edges
    picture = render(frame, cols - 2, max(room, 1), glyphs) if frame else []
    if not picture:
        picture = ["waiting for the panel's first refresh..."[: cols - 2]]
    width = max(len(line) for line in picture)
    boxed = ["┌" + "─" * width + "┐"]
    boxed += ["│" + line.ljust(width) + "│" for line in picture]
    boxed.append("└" + "─" * width + "┘")
    return ([header[:cols], *boxed, *below])[:rows]


def parse_message(line: bytes) -> Frame | dict[str, Any] | None:
    """One line from simkeys.py: a Frame, a status dict, or None if it is neither."""
    kind, _, rest = line.partition(b" ")
    try:
        if kind == b"F":
            width, height, data = rest.split(b" ", 2)
            frame = Frame(int(width), int(height), base64.b64decode(data, validate=False))
            if len(frame.bits) < (frame.width + 7) // 8 * frame.height:
                return None
            return frame
        if kind == b"S":
            status = json.loads(rest)
            return status if isinstance(status, dict) else None
    except (ValueError, binascii.Error):
        return None
    return None


# -- the simulator with the channel ---------------------------------------------------------


class InteractiveSimulator(Simulator):
    """A Simulator whose firmware serves the key / frame FIFOs in `channel`."""

    def __init__(self, channel: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.channel = Path(channel)

    def command(self, micropython: Path) -> list[str]:
        return [*super().command(micropython), "--interactive", str(self.channel)]


@contextlib.contextmanager
def _fifos(folder: Path) -> Iterator[tuple[int, int]]:
    """(keys, frames) descriptors. Opened read-write so that neither side ever blocks in
    open() and the kiosk never sees end-of-file while this process lives."""
    fds: list[int] = []
    try:
        for name in (KEYS_FIFO, FRAMES_FIFO):
            os.mkfifo(folder / name, 0o600)
            fds.append(os.open(folder / name, os.O_RDWR | os.O_NONBLOCK))
        yield fds[0], fds[1]
    finally:
        for fd in fds:
            os.close(fd)


@contextlib.contextmanager
def _keyboard(fd: int) -> Iterator[None]:
    """Keys arrive one at a time, unechoed, and Ctrl-C / Ctrl-Z / Ctrl-S as plain bytes
    (a suspended runner would leave the terminal in the alternate screen)."""
    saved = termios.tcgetattr(fd)
    mode = termios.tcgetattr(fd)
    mode[0] &= ~termios.IXON
    mode[3] &= ~(termios.ICANON | termios.ECHO | termios.ISIG | termios.IEXTEN)
    mode[6][termios.VMIN] = 1
    mode[6][termios.VTIME] = 0
    termios.tcsetattr(fd, termios.TCSANOW, mode)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class _Session:
    """The terminal loop: keys to the kiosk, frames and status to the screen."""

    def __init__(self, sim: Simulator, keys_fd: int, frames_fd: int, stdin_fd: int,
                 out: TextIO, bindings: list[KeyBinding], glyphs: str, header: str) -> None:
        self.sim = sim
        self.keys_fd = keys_fd
        self.frames_fd = frames_fd
        self.stdin_fd = stdin_fd
        self.out = out
        self.bindings = {b.key: b for b in bindings}
        self.legend = bindings
        self.glyphs = glyphs
        self.header = header
        self.frame: Frame | None = None
        self.status: dict[str, Any] | None = None
        self.note = "waiting for the kiosk..."
        self.pending = bytearray()
        self.stop_signal: int | None = None

    def run(self) -> int:
        """Until q / Ctrl-C (0), a stop signal (0 for SIGINT, else 128 + it), or the kiosk
        exiting by itself (its status)."""
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)

        def on_signal(signum: int, frame: FrameType | None) -> None:
            if signum != signal.SIGWINCH:
                self.stop_signal = signum
            with contextlib.suppress(OSError):
                os.write(wake_write, b"x")

        previous = {sig: signal.signal(sig, on_signal) for sig in (*_WAKE_SIGNALS,
                                                                   signal.SIGWINCH)}
        sel = selectors.DefaultSelector()
        sel.register(self.stdin_fd, selectors.EVENT_READ)
        sel.register(self.frames_fd, selectors.EVENT_READ)
        sel.register(wake_read, selectors.EVENT_READ)
        try:
            self.draw()
            while True:
                for key, _ in sel.select(_CHILD_POLL):
                    if key.fd == wake_read:
                        os.read(wake_read, 512)
                        self.draw()  # a resize, or a stop signal checked below
                    elif key.fd == self.frames_fd:
                        self.read_frames()
                    elif key.fd == self.stdin_fd and self.read_keys():
                        return 0
                if self.stop_signal is not None:
                    return 0 if self.stop_signal == signal.SIGINT else 128 + self.stop_signal
                code = self.sim.wait(0)
                if code is not None:
                    return code if code >= 0 else 128 - code
        finally:
            sel.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)

    def read_keys(self) -> bool:
        """Send the actions of the keys typed; True when one of them is quit."""
        try:
            typed = os.read(self.stdin_fd, 1024).decode(errors="replace")
        except OSError:
            return True  # the terminal went away
        if not typed:
            return True
        for key in typed:
            if key in QUIT_KEYS:
                return True
            binding = self.bindings.get(key)
            if binding is None:
                continue
            try:
                os.write(self.keys_fd, binding.action.encode() + b"\n")
                self.note = f"key [{key}]: {binding.label}"
            except BlockingIOError:
                self.note = f"key [{key}] dropped: the kiosk has not taken the keys before it"
        self.draw()
        return False

    def read_frames(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self.pending += os.read(self.frames_fd, 1 << 16)
        changed = False
        while b"\n" in self.pending:
            line, _, rest = bytes(self.pending).partition(b"\n")
            self.pending = bytearray(rest)
            message = parse_message(line)
            if isinstance(message, Frame):
                self.frame = message
                changed = True
            elif message is not None:
                self.status = message
                changed = True
        if changed:
            if self.note == "waiting for the kiosk...":
                self.note = "ready: press a key"
            self.draw()

    def draw(self) -> None:
        size = os.get_terminal_size(self.out.fileno()) if self.out.isatty() else None
        cols, rows = (size.columns, size.lines) if size else (80, 24)
        lines = compose(self.frame, self.status, self.legend, self.header, self.note,
                        cols, rows, self.glyphs)
        # Home, each line cleared to its end, everything below cleared: no flicker from a
        # full clear, and nothing left over when the picture shrinks.
        self.out.write("\x1b[H" + "\x1b[K\r\n".join(lines) + "\x1b[K\x1b[J")
        self.out.flush()


def _fileno(stream: TextIO) -> int:
    """The stream's descriptor, or -1 when it has none (a test's or an IDE's stand-in)."""
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return -1


def run(
    board: str | os.PathLike[str],
    board_data: Mapping[str, Any],
    state_dir: str | os.PathLike[str],
    *,
    serial_link: str | os.PathLike[str] | None = None,
    config: str | os.PathLike[str] | None = None,
    device_config: str | os.PathLike[str] | None = None,
    heap: str = DEFAULT_HEAP,
    glyphs: str = "braille",
    simulator_options: Mapping[str, Any] | None = None,
    stdin_fd: int | None = None,
    out: TextIO | None = None,
) -> int:
    """`deskpulse sim --interactive`: run the kiosk with a person at this terminal.

    Returns 0 after q or Ctrl-C, 128 + signal for SIGTERM / SIGHUP, or the firmware's exit
    status if it stopped by itself. `simulator_options` go to the Simulator as they are,
    except that a person at the keys always gets wall-clock time (realtime).
    """
    screen: TextIO = out or sys.stdout
    keyboard = _fileno(sys.stdin) if stdin_fd is None else stdin_fd
    if glyphs not in GLYPHS:
        raise DeskPulseError(f"--glyphs must be one of {', '.join(GLYPHS)}")
    if keyboard < 0 or not os.isatty(keyboard) or not screen.isatty():
        raise DeskPulseError("--interactive needs a terminal on stdin and stdout "
                             "(use --script to drive the kiosk without one)")
    bindings = key_bindings(board_data)
    with tempfile.TemporaryDirectory(prefix="deskpulse-sim-") as folder, \
            _fifos(Path(folder)) as (keys_fd, frames_fd), \
            InteractiveSimulator(folder, board, state_dir, serial_link=serial_link,
                                 config=config, device_config=device_config, heap=heap,
                                 **{**(simulator_options or {}), "realtime": True}) as sim:
        console = sim.console_path
        # Printed before the full-screen view, so it is still there after it; the header
        # repeats it while the view is up.
        print(f"console on {console}", file=screen, flush=True)
        header = (f"{board_data.get('name', 'kiosk')}: console {console} "
                  f"(deskpulse sync --port {console})")
        session = _Session(sim, keys_fd, frames_fd, keyboard, screen, bindings, glyphs, header)
        screen.write("\x1b[?1049h\x1b[?25l")  # the alternate screen, cursor hidden
        try:
            with _keyboard(keyboard):
                code = session.run()
        finally:
            screen.write("\x1b[?25h\x1b[?1049l")
            screen.flush()
    print(f"stopped; the simulated flash is in {state_dir} "
          f"(deskpulse inspect --state {state_dir})", file=screen, flush=True)
    return code
