"""The hardware test (test_hardware.py) run here, against the simulated kiosk: the same test
functions, collected in this module with its fixtures. The kiosk is the real firmware in
micropython behind a pty (`deskpulse sim --interactive`'s InteractiveSimulator); the
stand-in technician presses the simulated buttons and touches the simulated panel through
the key FIFO when a prompt asks (kiosk/hal/simkeys.py: every press goes through the real
debouncer), and reads the simulated glass from the frame FIFO to check each pattern pixel
by pixel. Also here: the INPUT and PATTERN commands' own rules (docs/protocol.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_hardware as hardware

from conftest import BOARDS
from deskpulse.device.boards import load_board
from deskpulse.device.link import Link, SyncError
from deskpulse.device.ports import open_port
from deskpulse.device.session import InputEvent, PatternShown, Session
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.frames import Frame as WireFrame
from deskpulse.protocol.frames import encode_frame
from deskpulse.sim.interactive import (
    FRAMES_FIFO,
    KEYS_FIFO,
    Frame,
    InteractiveSimulator,
    parse_message,
)

pytestmark = pytest.mark.slow  # a simulated kiosk with a panel, over a pty

# The hardware test's own functions, collected here too, with this module's fixtures (and
# without its `hardware` mark, which belongs to its module).
HARDWARE_TESTS = sorted(name for name in vars(hardware) if name.startswith("test_"))
globals().update({name: getattr(hardware, name) for name in HARDWARE_TESTS})

PATIENCE = 60.0  # an upper bound for the simulated kiosk to act; never asserted as a duration
BUTTON_BOARD = "lilygo-t5-v2.3"  # four faces (two of them answers) and a service button
TOUCH_BOARD = "esp32-touch-epd213"  # faces as touch targets, a service button
CONFIG = {"device_id": "bench-7", "version": 41, "input_guard_ms": 100}


class Glass:
    """The simulated panel as the frame FIFO shows it: the newest picture, kept by a
    thread that drains the FIFO (so the kiosk never waits on it)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.frame: Frame | None = None
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if not ready:
                continue
            with contextlib.suppress(BlockingIOError):
                pending += os.read(self.fd, 1 << 16)
            *lines, pending = pending.split(b"\n")
            for line in lines:
                message = parse_message(line)
                if isinstance(message, Frame):
                    self.frame = message
                    self.frames += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(PATIENCE)


class ScriptedTechnician:
    """Acts when a prompt asks: a finger on the simulated button or panel, eyes on the
    simulated glass."""

    def __init__(self, keys: int, glass: Glass) -> None:
        self.keys = keys
        self.glass = glass
        self.prompts: list[str] = []

    def press(self, index: int, what: str) -> None:
        self.prompts.append(what)
        os.write(self.keys, f"press {index}\n".encode())

    def tap(self, target: int) -> None:
        self.prompts.append(f"target {target}")
        os.write(self.keys, f"tap {target}\n".encode())

    def sees(self, pattern: PatternShown) -> bool:
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline:
            frame = self.glass.frame
            if frame is not None and shows(frame, pattern):
                return True
            time.sleep(0.05)
        return False


def shows(frame: Frame, pattern: PatternShown) -> bool:
    if (frame.width, frame.height) != (pattern.width, pattern.height):
        return False
    for y in range(frame.height):
        for x in range(frame.width):
            want = hardware.expected_ink(pattern.pattern, x, y, frame.width, frame.height)
            if want is not None and frame.ink(x, y) != want:
                return False
    return True


class SimulatedBench:
    def __init__(self, sim: InteractiveSimulator, keys: int, glass: Glass, board: str,
                 config: bytes) -> None:
        self.sim = sim
        self.keys = keys
        self.glass = glass
        self.board = load_board(board)
        self.config = config
        self.port = open_port(sim.console_path)
        self.session = Session(Link(self.port, name=sim.console_path))
        self.technician = ScriptedTechnician(keys, glass)


@pytest.fixture(scope="module", params=[BUTTON_BOARD, TOUCH_BOARD])
def bench(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimulatedBench]:
    folder = tmp_path_factory.mktemp("bench")
    channel = folder / "channel"
    channel.mkdir(mode=0o700)
    fds = []
    for name in (KEYS_FIFO, FRAMES_FIFO):
        os.mkfifo(channel / name, 0o600)
        # Read-write and non-blocking: neither side ever blocks in open().
        fds.append(os.open(channel / name, os.O_RDWR | os.O_NONBLOCK))
    config = folder / "config.json"
    config.write_text(json.dumps(CONFIG))
    sim = InteractiveSimulator(channel, BOARDS / f"{request.param}.json", folder / "state",
                               config=config)
    glass = Glass(fds[1])
    sim.start()
    bench = None
    try:
        bench = SimulatedBench(sim, fds[0], glass, request.param, config.read_bytes())
        wait_until(lambda: idle(bench.session), "the simulated kiosk to show its question")
        yield bench
    finally:
        if bench is not None:
            bench.port.close()
        sim.stop()
        glass.stop()
        for fd in fds:
            os.close(fd)


def idle(session: Session) -> bool:
    try:
        return session.hello().status["state"] == "idle"
    except DeskPulseError:
        return False


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.2)


# The fixtures the hardware test asks for, here from the simulated bench.


@pytest.fixture
def session(bench: SimulatedBench) -> Session:
    return bench.session


@pytest.fixture
def board(bench: SimulatedBench) -> dict[str, Any]:
    return bench.board


@pytest.fixture
def technician(bench: SimulatedBench) -> ScriptedTechnician:
    return bench.technician


@pytest.fixture
def original_config(bench: SimulatedBench) -> bytes:
    """What the hardware test reads back (CONFIG READ): exactly the file the simulated
    kiosk was given."""
    data = hardware.kiosk_config(bench.session)
    assert json.loads(data) == json.loads(bench.config)  # the simulator wrote the file itself
    return data


# -- the commands' own rules ------------------------------------------------------------------


def test_the_stand_in_technician_was_asked_for_every_button(bench: SimulatedBench) -> None:
    bench.technician.prompts.clear()
    hardware.test_each_button_is_seen_and_none_is_rated(bench.session, bench.board,
                                                        bench.technician)
    assert len(bench.technician.prompts) == len(bench.board["buttons"])
    assert any("service" in prompt for prompt in bench.technician.prompts)


def test_input_and_pattern_need_a_line_checksum(bench: SimulatedBench) -> None:
    for command in ("INPUT 30", "PATTERN ink"):
        bench.port.write(f"9 {command}\n".encode())
        frame = answer(bench, 9)
        body = json.loads(frame.payload)
        assert frame.type == "E" and "checksum" in body["error"], body
    assert idle(bench.session)


def answer(bench: SimulatedBench, tag: int) -> Any:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for frame in bench.session.link.receive():
            if frame.tag == tag:
                return frame
    pytest.fail(f"no answer with tag {tag}")


def test_an_unknown_pattern_or_a_long_input_is_refused(bench: SimulatedBench) -> None:
    link = bench.session.link
    with pytest.raises(SyncError, match="unknown pattern 'plaid'"):
        link.request("PATTERN plaid", "P")
    with pytest.raises(SyncError, match="seconds must be between 0 and 600"):
        link.request("INPUT 601", "I")
    assert idle(bench.session)


def test_the_kiosk_takes_its_inputs_back_at_the_deadline(bench: SimulatedBench) -> None:
    session = bench.session
    before = session.hello().next_seq
    session.start_input(1)
    with pytest.raises(SyncError, match="ended the input test"):
        while True:  # the kiosk's own frame ends it; a press would come back as an event
            if session.next_input(PATIENCE) is None:
                pytest.fail("the input test did not end by itself")
    rate_once(bench)
    assert session.hello().next_seq == before + 1


def rate_once(bench: SimulatedBench) -> None:
    """A customer rates face 1 and answers the follow-up; back when the kiosk has stored
    it and shows its question again."""
    before = bench.session.hello().next_seq
    if bench.board.get("touch"):
        actions = ["tap 0 idle", "tap 1 follow_up"]
    else:
        face = next(i for i, b in enumerate(bench.board["buttons"]) if b.get("face") == 1)
        yes = next(i for i, b in enumerate(bench.board["buttons"]) if b.get("answer") == "yes")
        actions = [f"press {face}", f"press {yes}"]
    for action in actions:
        os.write(bench.keys, f"{action}\n".encode())
    wait_until(lambda: bench.session.hello().next_seq == before + 1, "the rating stored")
    wait_until(lambda: idle(bench.session), "the kiosk back at its question")


def test_the_test_waits_for_a_customer_to_finish(bench: SimulatedBench) -> None:
    session = bench.session
    if bench.board.get("touch"):
        os.write(bench.keys, b"tap 0 idle\n")
    else:
        os.write(bench.keys, b"press 1\n")
    wait_until(lambda: session.hello().status["state"] == "follow_up", "a customer's face")
    with pytest.raises(SyncError, match=r"busy \(follow_up\)"):
        session.start_input(30)
    with pytest.raises(SyncError, match=r"busy \(follow_up\)"):
        session.show_pattern("ink")
    wait_until(lambda: idle(session), "the unanswered follow-up to time out")
    session.start_input(30)
    assert session.stop_input() == 0


def test_the_pattern_stays_while_the_buttons_are_tested_and_then_goes(
        bench: SimulatedBench) -> None:
    session = bench.session
    shown = session.show_pattern("checker")
    assert bench.technician.sees(shown)
    test = session.start_input(30)
    index = len(bench.board["buttons"]) - 1
    bench.technician.press(index, "the last button")
    event = session.next_input(PATIENCE)
    assert event is not None and event.button == index
    assert test.buttons == len(bench.board["buttons"])
    assert bench.technician.sees(shown), "a press drew over the pattern"
    assert session.stop_input() == 1
    assert bench.technician.sees(shown), "the pattern went with the input test"
    session.pattern_off()
    wait_until(lambda: bench.glass.frame is not None and not shows(bench.glass.frame, shown),
               "the question back on the glass")
    assert idle(session)


def test_every_step_of_the_hardware_test_runs_here() -> None:
    assert len(HARDWARE_TESTS) == 6, HARDWARE_TESTS
    for name in HARDWARE_TESTS:
        assert globals()[name] is getattr(hardware, name)


def test_the_simulated_console_is_the_port_the_hardware_test_takes(
        bench: SimulatedBench) -> None:
    # The real-board run opens --port the same way: without a reset, input flushed.
    assert Path(bench.sim.console_path).exists()
    assert bench.session.hello().board == bench.board["name"]


# -- input events that share a read with an answer ------------------------------------------
# On a real UART the kiosk's answer and the event of a press made at that moment often
# arrive in one read; the pty of the simulated bench rarely shows it, so a stand-in port
# hands both over at once.


class OneReadPort:
    """A port whose kiosk answers each command line with the frames `reply(verb, tag)`
    gives, all of them in the next single read."""

    def __init__(self, reply: Callable[[str, int], list[tuple[str, int, dict[str, Any]]]]
                 ) -> None:
        self.reply = reply
        self.waiting = b""

    def write(self, data: bytes, /) -> int:
        tag, verb = data.decode("ascii").split()[:2]
        for type_, frame_tag, body in self.reply(verb, int(tag)):
            self.waiting += encode_frame(type_, frame_tag, json.dumps(body).encode())
        return len(data)

    def read(self, size: int = 1, /) -> bytes:
        data, self.waiting = self.waiting[:size], self.waiting[size:]
        return data

    @property
    def in_waiting(self) -> int:
        return len(self.waiting)

    def reset_input_buffer(self) -> None:
        self.waiting = b""


STARTED = {"input": True, "seconds": 30, "buttons": 5, "touch": False, "targets": 0}


def bodies(frames: list[WireFrame]) -> list[tuple[str, dict[str, Any]]]:
    return [(frame.type, json.loads(frame.payload)) for frame in frames]


def test_an_event_right_behind_the_answer_to_input_is_kept() -> None:
    # A press at the moment INPUT is answered: its event (INPUT's tag) follows the answer
    # in the same read. Before, the link returned the answer and dropped the rest.
    port = OneReadPort(lambda verb, tag: [("I", tag, STARTED),
                                          ("I", tag, {"n": 1, "button": 2})])
    link = Link(port, timeout=PATIENCE)
    assert json.loads(link.request("INPUT 30", "I").payload) == STARTED
    assert bodies(link.receive()) == [("I", {"n": 1, "button": 2})]
    assert link.receive() == []  # handed over once


def test_an_event_ahead_of_another_commands_answer_is_kept() -> None:
    # During the input test the host asks something else (HELLO): a press's event, with
    # INPUT's tag, arrives first in the read that brings the answer.
    input_tag = 0

    def reply(verb: str, tag: int) -> list[tuple[str, int, dict[str, Any]]]:
        nonlocal input_tag
        if verb == "INPUT":
            input_tag = tag
            return [("I", tag, STARTED)]
        return [("I", input_tag, {"n": 1, "button": 0}),
                ("I", input_tag, {"n": 2, "button": 4}), ("H", tag, {"proto": 1})]

    link = Link(port := OneReadPort(reply), timeout=PATIENCE)
    link.request("INPUT 30", "I")
    assert json.loads(link.request("HELLO 1", "H").payload) == {"proto": 1}
    assert bodies(link.receive()) == [("I", {"n": 1, "button": 0}),
                                      ("I", {"n": 2, "button": 4})]
    assert port.waiting == b""


def test_the_input_test_sees_a_press_that_came_with_its_answer() -> None:
    port = OneReadPort(lambda verb, tag: [("I", tag, STARTED),
                                          ("I", tag, {"n": 1, "button": 2})])
    session = Session(Link(port, timeout=PATIENCE))
    session.start_input(30)
    assert session.next_input(PATIENCE) == InputEvent(1, button=2)
