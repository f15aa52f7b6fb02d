"""`deskpulse sim --interactive`: the pure pieces (keys, drawing, status, layout) and the
terminal kiosk itself, driven through a real terminal (tmux) against the real firmware."""

from __future__ import annotations

import base64
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import BOARDS
from deskpulse import cli
from deskpulse.device.inspect import read_state
from deskpulse.sim.interactive import (
    Frame,
    KeyBinding,
    compose,
    key_bindings,
    legend_lines,
    parse_message,
    render,
    status_line,
)

BUTTONS = BOARDS / "esp32-devkitc-ssd1680.json"
TOUCH = BOARDS / "esp32-touch-epd213.json"
DESKPULSE = Path(sys.executable).parent / "deskpulse"


def board(path: Path) -> dict:
    return json.loads(path.read_text())


def actions(bindings: list[KeyBinding]) -> dict[str, str]:
    return {b.key: b.action for b in bindings}


def frame_from(rows: list[str]) -> Frame:
    """A frame from rows of '#' (ink) and '.' (paper)."""
    width, height = len(rows[0]), len(rows)
    stride = (width + 7) // 8
    bits = bytearray(stride * height)
    for y, row in enumerate(rows):
        for x, c in enumerate(row):
            if c == "#":
                bits[y * stride + (x >> 3)] |= 0x80 >> (x & 7)
    return Frame(width, height, bytes(bits))


# -- keys ------------------------------------------------------------------------------------


def test_button_board_keys_press_the_faces_and_the_answer_buttons() -> None:
    got = actions(key_bindings(board(BUTTONS)))
    assert got == {"1": "press 0", "2": "press 1", "3": "press 2", "4": "press 3",
                   "n": "press 0", "y": "press 3", "w": "wifi"}


def test_a_service_button_gets_a_key_of_its_own() -> None:
    got = actions(key_bindings(board(BOARDS / "lilygo-t5-v2.3.json")))
    assert got["s"] == "press 4"
    assert got["4"] == "press 3"


def test_touch_board_keys_tap_targets_and_answers_only_on_the_follow_up() -> None:
    got = actions(key_bindings(board(TOUCH)))
    assert got == {"1": "tap 0", "2": "tap 1", "3": "tap 2", "4": "tap 3", "5": "tap 4",
                   "n": "tap 0 follow_up", "y": "tap 1 follow_up", "s": "press 0",
                   "w": "wifi"}


def test_every_shipped_board_has_distinct_keys_and_none_is_quit() -> None:
    for path in sorted(BOARDS.glob("*.json")):
        keys = [b.key for b in key_bindings(board(path))]
        assert len(keys) == len(set(keys)), path.name
        assert "q" not in keys, path.name


def test_the_legend_wraps_to_the_width_and_ends_with_quit() -> None:
    bindings = key_bindings(board(BUTTONS))
    lines = legend_lines(bindings, 30)
    assert len(lines) > 2
    assert all(len(line) <= 30 for line in lines)
    text = "  ".join(lines)
    assert "[4] face 4" in text and "[y] yes (= face 4)" in text
    assert text.endswith("[q] quit")


# -- drawing ---------------------------------------------------------------------------------


def test_braille_maps_each_pixel_to_its_dot() -> None:
    frame = frame_from(["#...", "....", "....", "...#"])  # 4 x 4: two braille cells wide
    assert render(frame, 80, 24) == ["⠁⢀"]


def test_half_blocks_map_two_rows_to_a_cell() -> None:
    frame = frame_from(["#.#", ".##"])
    assert render(frame, 80, 24, "blocks") == ["▀▄█"]


def test_a_large_frame_shrinks_to_fit_and_keeps_its_aspect() -> None:
    # 250 x 122 (the 2.13" panel in landscape): left half ink, right half paper.
    rows = ["#" * 125 + "." * 125] * 122
    lines = render(frame_from(rows), 40, 30)
    assert len(lines) <= 30
    assert all(len(line) <= 40 for line in lines)
    widths = {len(line) for line in lines}
    assert widths == {40}  # the width is what limits it
    # 250 / 80 dots: about 3.1 pixels a dot; 122 / 3.1 is 39 dots: 10 braille rows.
    assert len(lines) == 10
    for line in lines:
        assert set(line[:19]) == {"⣿"} and line[21:].strip() == ""


def test_a_small_frame_is_not_enlarged() -> None:
    assert render(frame_from(["##", "##", "##", "##"]), 80, 24) == ["⣿"]


def test_thin_strokes_survive_a_reduction() -> None:
    # A one-pixel vertical line in 12 x 12, drawn at half size: still one column of dots.
    rows = ["." * 5 + "#" + "." * 6] * 12
    lines = render(frame_from(rows), 3, 3)  # 6 x 12 dots: scale 2
    assert all(line.strip() for line in lines)


def test_an_unknown_glyph_set_is_refused() -> None:
    with pytest.raises(ValueError):
        render(frame_from(["#"]), 10, 10, "ascii")


# -- status and layout -------------------------------------------------------------------------


STATUS = {"state": "follow_up", "screen": "follow_up", "targets": 2, "stored": 2,
          "unsynced": 1, "clock": {"known": True, "source": "host", "wall": 1795428000},
          "wifi": False, "push": "backoff", "actions": 3}


def test_status_line_says_state_counts_clock_and_network() -> None:
    line = status_line(STATUS)
    for part in ("state follow_up", "stored 2", "unsynced 1",
                 "clock 2026-11-23 10:00:00 UTC (host)", "WiFi off", "push backoff"):
        assert part in line
    unset = status_line({**STATUS, "clock": {"known": False}, "wifi": True, "push": None})
    assert "clock not set" in unset and "WiFi on" in unset and "no push" in unset
    assert status_line(None) == "starting..."


@pytest.mark.parametrize(("cols", "rows"), [(100, 40), (80, 24), (40, 12), (20, 6), (1, 1)])
def test_the_screen_always_fits_the_terminal(cols: int, rows: int) -> None:
    frame = frame_from(["#" * 250] * 122)
    lines = compose(frame, STATUS, key_bindings(board(BUTTONS)), "header", "note",
                    cols, rows)
    assert 1 <= len(lines) <= rows
    assert all(len(line) <= max(cols, 4) for line in lines)
    assert lines[0] == "header"[:max(cols, 4)]


def test_the_screen_shows_the_picture_status_legend_and_note() -> None:
    lines = compose(frame_from(["#" * 8] * 8), STATUS, key_bindings(board(BUTTONS)),
                    "kiosk: console /dev/pts/9", "key [4]: face 4", 80, 24)
    assert lines[0] == "kiosk: console /dev/pts/9"
    assert lines[1:5] == ["┌────┐", "│⣿⣿⣿⣿│", "│⣿⣿⣿⣿│", "└────┘"]
    # The status line wraps between its parts where the terminal is too narrow for it.
    assert " | ".join(lines[5:7]) == status_line(STATUS)
    assert len(status_line(STATUS)) > 80
    assert lines[7].startswith("[1] face 1")
    assert lines[-1] == "key [4]: face 4"
    waiting = compose(None, None, [], "h", "", 80, 24)
    assert "waiting for the panel's first refresh" in waiting[2]


def test_messages_from_the_kiosk_are_parsed_and_garbage_is_not() -> None:
    frame = frame_from(["#..", ".#."])
    line = b"F 3 2 " + base64.b64encode(frame.bits)
    assert parse_message(line) == frame
    assert parse_message(b"S " + json.dumps(STATUS).encode()) == STATUS
    for bad in (b"F 3 2 AA==", b"F 3", b"F x y AA==", b"S [1]", b"S {", b"", b"X 1"):
        assert parse_message(bad) is None, bad


# -- the CLI without a terminal ----------------------------------------------------------------


def test_interactive_needs_a_terminal(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["sim", "--interactive", "--state", str(tmp_path / "state")])
    assert code != 0
    assert "--interactive needs a terminal" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()  # refused before the kiosk booted


def test_interactive_and_a_script_do_not_mix(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "day.txt"
    script.write_text("rate 4\nexit\n")
    code = cli.main(["sim", "--interactive", "--script", str(script),
                     "--state", str(tmp_path / "state")])
    assert code != 0
    assert "--interactive and --script do not mix" in capsys.readouterr().err


# -- the real thing in a real terminal ---------------------------------------------------------


class Tmux:
    """One detached tmux session on a private server: type keys, read the screen."""

    def __init__(self, name: str) -> None:
        self.server = name

    def __call__(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-u", "-L", self.server, *args], capture_output=True,
                              text=True, encoding="utf-8", timeout=30, check=True)
        return done.stdout

    def screen(self) -> list[str]:
        return self("capture-pane", "-p", "-t", "k").splitlines()

    def keys(self, *keys: str) -> None:
        self("send-keys", "-t", "k", *keys)

    def pane(self, fmt: str) -> str:
        return self("display-message", "-p", "-t", "k", fmt).strip()


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Callable[[list[str]], Tmux]]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed (`make pytest` installs it with apt-get): "
                    "the interactive kiosk is tested in a real terminal")
    tmux = Tmux(f"deskpulse-test-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def start(argv: list[str]) -> Tmux:
        env = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
        # The shell reports the exit status on the screen (tmux's own record of it is not
        # reliable: a pane can die before tmux has reaped its process); remain-on-exit
        # keeps that last screen readable.
        command = " ".join(shlex.quote(a) for a in argv) + '; echo "deskpulse-exit=$?"'
        subprocess.run(["tmux", "-u", "-L", tmux.server, "new-session", "-d", "-s", "k",
                        "-x", "100", "-y", "40", command, ";",
                        "set-option", "-t", "k", "remain-on-exit", "on"],
                       env=env, check=True, timeout=30, cwd=tmp_path)
        return tmux

    try:
        yield start
    finally:
        subprocess.run(["tmux", "-L", tmux.server, "kill-server"], capture_output=True,
                       timeout=30)


def wait_for(what: str, predicate: Callable[[], bool], tmux: Tmux) -> None:
    deadline = time.monotonic() + 60
    while not predicate():
        if time.monotonic() > deadline:
            screen = "\n".join(tmux.screen())
            raise AssertionError(f"timed out waiting for {what}; the terminal shows:\n{screen}")
        time.sleep(0.1)


def picture(tmux: Tmux) -> list[str]:
    """The glass as drawn: the lines inside the frame."""
    lines = tmux.screen()
    top = next(i for i, line in enumerate(lines) if line.startswith("┌"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("└"))
    return lines[top + 1:bottom]


def status(tmux: Tmux) -> str:
    return next((line for line in tmux.screen() if line.startswith("state ")), "")


def has_ink(lines: list[str]) -> bool:
    return any(0x2801 <= ord(c) <= 0x28FF for line in lines for c in line)


def shows(tmux: Tmux, state_text: str, not_like: list[str] | None) -> bool:
    """The status says state_text and the picture, with ink on it, differs from not_like."""
    if state_text not in status(tmux):
        return False
    try:
        drawn = picture(tmux)
    except StopIteration:
        return False
    return has_ink(drawn) and drawn != not_like


def ended(tmux: Tmux) -> str | None:
    """The program's exit status, once it has ended."""
    for line in tmux.screen():
        if line.startswith("deskpulse-exit="):
            return line.removeprefix("deskpulse-exit=")
    return None


LINGERING = {"device_id": "desk-t1", "thank_you_s": 60, "follow_up_timeout_s": 120}


@pytest.mark.slow
def test_a_person_rates_at_the_terminal_and_a_sync_runs_meanwhile(
    tmp_path: Path, terminal: Callable[[list[str]], Tmux], capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.json"
    # A thank-you shown long enough to be seen, whatever the load on the test machine.
    config.write_text(json.dumps(LINGERING))
    tmux = terminal([str(DESKPULSE), "sim", "--interactive", "--board", str(BUTTONS),
                     "--state", str(state), "--config", str(config)])

    wait_for("the idle screen", lambda: shows(tmux, "state idle", None), tmux)
    header = tmux.screen()[0]
    assert "console /dev/pts/" in header
    assert tmux.pane("#{alternate_on}") == "1"
    idle = picture(tmux)
    assert "stored 0 | unsynced 0" in status(tmux)

    tmux.keys("4")
    wait_for("the follow-up question", lambda: shows(tmux, "state follow_up", idle), tmux)
    follow_up = picture(tmux)
    assert "key [4]: face 4" in tmux.screen()

    tmux.keys("y")
    wait_for("the thank-you", lambda: shows(tmux, "state thanks", follow_up), tmux)
    wait_for("the stored response", lambda: "stored 1 | unsynced 1" in status(tmux), tmux)

    # The console pty the header names is a serial port `deskpulse sync` talks to.
    port = header.split("console ", 1)[1].split()[0]
    capsys.readouterr()
    assert cli.main(["sync", "--port", port, "--db", str(tmp_path / "host.db")]) == 0
    assert "new responses: 1" in capsys.readouterr().out
    wait_for("the sync on the status line",
             lambda: "unsynced 0" in status(tmux) and "(host)" in status(tmux), tmux)

    tmux.keys("q")
    wait_for("the program to end", lambda: ended(tmux) is not None, tmux)
    assert ended(tmux) == "0"
    assert tmux.pane("#{alternate_on}") == "0"  # the terminal is back to normal
    after = "\n".join(tmux.screen())
    assert "stopped; the simulated flash" in after

    log = read_state(BUTTONS, state).status["log"]
    assert (log["next_seq"], log["acked_upto"]) == (2, 1)  # one response, synced


@pytest.mark.slow
def test_taps_on_a_touch_board_and_ctrl_c_quits(
    tmp_path: Path, terminal: Callable[[list[str]], Tmux],
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.json"
    config.write_text(json.dumps(LINGERING))
    tmux = terminal([str(DESKPULSE), "sim", "--interactive", "--board", str(TOUCH),
                     "--state", str(state), "--glyphs", "blocks", "--config", str(config)])
    wait_for("the idle screen", lambda: "state idle" in status(tmux)
             and any("█" in line for line in picture(tmux)), tmux)
    assert "[n] tap no" in "\n".join(tmux.screen())
    # y taps "yes" only on the follow-up: on the idle screen it must not rate a face
    # (target 2 there would be face 2), so the response below is face 3, answered no.
    tmux.keys("y", "3", "n")
    wait_for("the thank-you", lambda: "state thanks" in status(tmux)
             and "stored 1" in status(tmux), tmux)

    tmux.keys("C-c")
    wait_for("the program to end", lambda: ended(tmux) is not None, tmux)
    assert ended(tmux) == "0"
    got = read_state(TOUCH, state).responses
    assert [(r["rating"], r["told_next"]) for r in got] == [(3, "no")]
