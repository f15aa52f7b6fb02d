"""The hardware test: a real ESP32 kiosk on --port and a technician in front of it.

    pytest -m hardware --port /dev/ttyUSB0 tests/device/test_hardware.py

It speaks only the sync protocol (docs/protocol.md), never the REPL, so the kiosk's app
keeps running and no step ends in a crash count. It checks HELLO (firmware, board, status),
sets the clock and reads it back, reads the kiosk's config back (CONFIG READ), uploads a
changed config and then the original again, asks the technician to press each button of
the board and touch each target (INPUT: the kiosk reports what it saw, and records no
rating), and shows each test pattern for the technician to confirm (PATTERN). Prompts
and answers use the terminal (/dev/tty), so pytest's capture does not hide them.

Skipped without --port. tests/device/test_hardware_sim.py runs these same tests against
the simulated kiosk, with a stand-in technician that presses the simulated buttons when a
prompt asks and compares the simulated glass with each pattern.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from typing import Any, Protocol

import pytest

from conftest import REPO
from deskpulse.device.boards import list_boards, load_board
from deskpulse.device.link import Link
from deskpulse.device.ports import open_port
from deskpulse.device.session import Hello, PatternShown, Session
from deskpulse.device.sync import read_kiosk_config
from deskpulse.protocol.wire import PATTERNS

pytestmark = pytest.mark.hardware

PRESS_WAIT = 60.0  # seconds a technician has for each press or tap


class Technician(Protocol):
    """Whoever acts on the kiosk: a person at a real board, a script at the simulator."""

    def press(self, index: int, what: str) -> None:
        """Ask for button `index` (described as `what`) to be pressed once."""

    def tap(self, target: int) -> None:
        """Ask for touch target `target` (0 = the leftmost face) to be touched once."""

    def sees(self, pattern: PatternShown) -> bool:
        """Whether the panel now shows `pattern` as docs/protocol.md describes it."""
        ...


# -- what the checks need, shared with the simulator's run -----------------------------------


def button_name(board: dict[str, Any], index: int) -> str:
    button = board["buttons"][index]
    if button.get("service"):
        role = "the service button"
    elif button.get("answer"):
        role = f"face {button['face']} (also '{button['answer']}')"
    else:
        role = f"face {button.get('face')}"
    return f"button {index}, {role}, GPIO {button['pin']}"


def firmware_version() -> str:
    text = (REPO / "firmware" / "kiosk" / "__init__.py").read_text()
    for line in text.splitlines():
        if line.startswith("FIRMWARE_VERSION"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("firmware/kiosk/__init__.py has no FIRMWARE_VERSION")


def expected_ink(pattern: str, x: int, y: int, width: int, height: int) -> bool | None:
    """Whether pixel (x, y) of a width x height screen is ink in `pattern` (docs/protocol.md,
    PATTERN); None where the pattern does not say (the border's diagonal)."""
    if pattern == "ink":
        return True
    if pattern == "paper":
        return False
    if pattern == "checker":
        return (x // 8 + y // 8) % 2 == 0
    if x in (0, width - 1) or y in (0, height - 1) or (x < 16 and y < 16):
        return True
    # The diagonal from the top-left to the bottom-right corner, give or take a pixel.
    distance = abs(x * (height - 1) - y * (width - 1)) / math.hypot(width - 1, height - 1)
    return None if distance < 2 else False


def input_seconds(board: dict[str, Any], targets: int) -> int:
    """Long enough for every press and tap the test asks for, and no longer than a kiosk
    takes (600 s): the kiosk gives its inputs back to the survey by itself after it."""
    return min(600, int(PRESS_WAIT) * (len(board["buttons"]) + targets) + 30)


# -- the checks --------------------------------------------------------------------------------


def test_hello_names_this_firmware_a_known_board_and_its_state(
        session: Session, board: dict[str, Any]) -> None:
    hello = session.hello()
    assert hello.firmware == firmware_version()
    assert hello.board == board["name"] and hello.board in list_boards()
    status = hello.status
    assert status["state"] in ("idle", "follow_up", "thanks", "service")
    assert isinstance(status["reset_cause"], str) and status["reset_cause"]
    assert status["display"] is None or status["display"]["failures"] == 0, status["display"]
    assert hello.first_seq <= hello.next_seq


def test_the_clock_set_is_the_clock_read_back(session: Session) -> None:
    boot = session.hello().status["boot"]
    now = int(time.time())
    anchor = session.set_time(now)
    assert (anchor.boot, anchor.wall, anchor.source) == (boot, now, 1)
    clock = session.hello().status["clock"]
    assert clock["known"] and clock["source"] == "host"
    assert now <= clock["wall"] <= int(time.time()) + 1


def test_a_config_round_trip_ends_with_the_original_config(
        session: Session, original_config: bytes) -> None:
    original = json.loads(original_config)
    before = session.hello()
    assert before.status["config_version"] == original.get("version", 0)
    changed = dict(original, version=(original.get("version", 0) + 1) % 0x10000)
    try:
        session.send_config(json.dumps(changed).encode())
        assert session.hello().status["config_version"] == changed["version"]
    finally:
        session.send_config(original_config)
    after = session.hello()
    assert after.status["config_version"] == before.status["config_version"]
    assert after.device_id == before.device_id
    # The kiosk took the original (it checks every upload), so it has nothing to complain of.
    assert after.status["config_problems"] == []


def test_each_button_is_seen_and_none_is_rated(
        session: Session, board: dict[str, Any], technician: Technician) -> None:
    before = session.hello()
    test = session.start_input(input_seconds(board, 0))
    try:
        assert test.buttons == len(board["buttons"])
        for index in range(len(board["buttons"])):
            technician.press(index, button_name(board, index))
            event = session.next_input(PRESS_WAIT)
            assert event is not None, f"the kiosk saw no press of {button_name(board, index)}"
            assert event.button == index, (
                f"pressed {button_name(board, index)}, the kiosk saw "
                + (button_name(board, event.button) if event.button is not None
                   else f"a tap at {event.tap}"))
    finally:
        seen = session.stop_input()
    assert seen == len(board["buttons"])
    after = session.hello()
    assert after.next_seq == before.next_seq, "a test press was stored as a rating"
    assert after.status["boot"] == before.status["boot"], "the kiosk restarted"
    assert after.status["state"] == "idle"


def test_each_touch_target_is_seen_where_it_is_drawn(
        session: Session, board: dict[str, Any], technician: Technician) -> None:
    if not board.get("touch"):
        pytest.skip(f"{board['name']} has no touch panel")
    before = session.hello()
    test = session.start_input(input_seconds(board, 5))
    try:
        assert test.touch and test.targets >= 1
        for target in range(test.targets):
            technician.tap(target)
            event = session.next_input(PRESS_WAIT)
            assert event is not None, f"the kiosk saw no touch of target {target + 1}"
            assert event.tap is not None, f"touched target {target + 1}, the kiosk saw {event}"
            chose = event.target if event.target is not None else -1
            assert chose == target, (
                f"touched target {target + 1}, the kiosk placed it at {event.tap} "
                f"({'no target' if chose == -1 else f'target {chose + 1}'}): "
                "check the board's touch mirror_x / mirror_y / swap_xy")
    finally:
        session.stop_input()
    after = session.hello()
    assert after.next_seq == before.next_seq, "a test touch was stored as a rating"
    assert after.status["boot"] == before.status["boot"], "the kiosk restarted"


def test_the_panel_shows_each_test_pattern(
        session: Session, board: dict[str, Any], technician: Technician) -> None:
    if not board.get("display"):
        pytest.skip(f"{board['name']} has no panel")
    boot = session.hello().status["boot"]
    try:
        for name in PATTERNS:
            shown = session.show_pattern(name)
            assert shown.pattern == name
            assert shown.shown and shown.error is None, f"{name}: the panel failed: {shown}"
            assert shown.full_refreshes >= 1
            assert technician.sees(shown), f"the panel does not show the {name} pattern"
    finally:
        session.pattern_off()
    hello = session.hello()
    assert hello.status["boot"] == boot and hello.status["state"] == "idle"
    assert hello.status["display"]["failures"] == 0


# -- a real board and a person ---------------------------------------------------------------


class PersonAtTheBoard:
    """Prompts on the terminal; the kiosk itself reports the presses."""

    def __init__(self, tty: Any) -> None:
        self.tty = tty

    def say(self, text: str) -> None:
        self.tty.write(text + "\n")
        self.tty.flush()

    def press(self, index: int, what: str) -> None:
        self.say(f"Press {what} once (within {PRESS_WAIT:.0f} s).")

    def tap(self, target: int) -> None:
        self.say(f"Touch face {target + 1} on the screen once (within {PRESS_WAIT:.0f} s).")

    def sees(self, pattern: PatternShown) -> bool:
        looks = {
            "checker": "a checkerboard of 8-pixel squares, ink in the top-left corner",
            "border": "a 1-pixel frame on the very edge, a filled square in the top-left "
                      "corner and a diagonal from it to the bottom-right",
            "ink": "all black", "paper": "all white, no ghost of the last screen"}
        self.say(f"The panel ({pattern.width}x{pattern.height}) should show "
                 f"{looks[pattern.pattern]}. Does it? [y/n] ")
        return self.tty.readline().strip().lower().startswith("y")


@pytest.fixture(scope="module")
def session(request: pytest.FixtureRequest) -> Iterator[Session]:
    path = str(request.config.getoption("--port"))
    port = open_port(path)
    try:
        yield Session(Link(port, name=path))
    finally:
        port.close()


@pytest.fixture(scope="module")
def board(session: Session) -> dict[str, Any]:
    hello: Hello = session.hello()
    assert hello.board in list_boards(), f"the kiosk runs an unknown board {hello.board!r}"
    return load_board(hello.board)


@pytest.fixture(scope="module")
def technician() -> Iterator[Technician]:
    try:
        tty = open("/dev/tty", "r+")  # noqa: SIM115 - held for the whole module
    except OSError:
        pytest.skip("the hardware test needs a technician at a terminal (/dev/tty)")
    with tty:
        yield PersonAtTheBoard(tty)


def kiosk_config(session: Session) -> bytes | None:
    return read_kiosk_config(session.link)


@pytest.fixture
def original_config(session: Session) -> bytes:
    """The kiosk's own config file, read back over the protocol: what the round trip
    puts back."""
    data = kiosk_config(session)
    if data is None:
        pytest.skip("the kiosk runs on its defaults (no config file): a round trip could "
                    "not put that back")
    return data
