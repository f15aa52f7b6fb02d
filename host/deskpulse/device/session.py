"""One conversation with a kiosk over a link: HELLO, TIME, PULL, ACK, CONFIG, and the
hardware test's INPUT and PATTERN."""

from __future__ import annotations

import base64
import binascii
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from deskpulse.device.link import Link, SyncError, frame_json
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, BatchError, Response, decode_batch, parse_anchor
from deskpulse.protocol.frames import Frame
from deskpulse.protocol.wire import (
    CONFIG_CHUNK,
    MAX_MAINTENANCE_S,
    MIN_MAINTENANCE_S,
    PATTERNS,
    PROTOCOL,
    PULL_BYTES,
)

PATTERN_TIMEOUT = 25.0
"""Seconds to wait for PATTERN's answer: the kiosk answers once the panel has finished a
full refresh (4 s on the slowest supported panel), or after 15 s."""


class ConfigRefused(DeskPulseError):
    """The kiosk checked the config and kept its old one."""


def number(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise SyncError(f"the kiosk's {what} is not a number: {value!r}")
    return value


@dataclass
class Hello:
    proto: int
    device_id: str
    board: str | None
    firmware: str | None
    status: dict[str, Any]
    anchors: list[Anchor]
    first_seq: int
    next_seq: int


def parse_hello(frame: Frame) -> Hello:
    """Check the device's protocol version first, then the rest of its H frame."""
    body = frame_json(frame)
    proto = body.get("proto")
    if not isinstance(proto, int) or isinstance(proto, bool) or proto < 1:
        raise SyncError(f"the kiosk answered HELLO without a protocol version ({proto!r})")
    if proto > PROTOCOL:
        raise DeskPulseError(
            f"this kiosk speaks protocol {proto}; upgrade deskpulse "
            f"(this one speaks protocol {PROTOCOL})")
    status = body.get("status")
    anchors = body.get("anchors", [])
    if not isinstance(status, dict) or not isinstance(anchors, list):
        raise SyncError("the kiosk's HELLO answer lacks its status or anchors")
    device_id = body.get("device_id")
    try:
        parsed = [parse_anchor(a) for a in anchors]
    except BatchError as exc:
        raise SyncError(f"the kiosk's HELLO answer: {exc}") from exc
    return Hello(
        proto=proto,
        device_id=device_id if isinstance(device_id, str) else "",
        board=body.get("board") if isinstance(body.get("board"), str) else None,
        firmware=body.get("firmware") if isinstance(body.get("firmware"), str) else None,
        status=status,
        anchors=parsed,
        first_seq=number(body.get("first_seq"), "first_seq"),
        next_seq=number(body.get("next_seq"), "next_seq"),
    )


@dataclass(frozen=True)
class InputTest:
    """The kiosk's answer to INPUT: it reports presses and taps for `seconds`."""

    seconds: int
    buttons: int
    touch: bool
    targets: int  # touch targets on its test screen (0 without touch)


@dataclass(frozen=True)
class InputEvent:
    """A press or a tap the kiosk saw during INPUT; `n` counts them from 1."""

    n: int
    button: int | None = None  # index into the board's buttons
    tap: tuple[int, int] | None = None  # screen coordinates
    target: int | None = None  # the touch target the tap chose, -1 for none


@dataclass(frozen=True)
class PatternShown:
    """The kiosk's answer to PATTERN."""

    pattern: str
    width: int
    height: int
    shown: bool  # the panel finished the refresh without a failure
    full_refreshes: int
    error: str | None


Progress = Callable[[int, int], None]
"""progress(responses pulled so far, responses the device said it holds)."""


class Session:
    """One sync with one kiosk over an open link."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self._input_tag = 0
        self._unread: list[Frame] = []  # frames read while waiting for INPUT's events

    def hello(self) -> Hello:
        return parse_hello(self.link.request(f"HELLO {PROTOCOL}", "H"))

    def set_time(self, now: int) -> Anchor:
        body = frame_json(self.link.request(f"TIME {now}", "T"))
        try:
            return parse_anchor(body.get("anchor"))
        except BatchError as exc:
            raise SyncError(f"the kiosk's TIME answer: {exc}") from exc

    def pull_all(self, first_seq: int, expected: int,
                 progress: Progress | None = None) -> tuple[list[Response], int]:
        """Every record from first_seq until the device has no more: (records, batches)."""
        out: list[Response] = []
        batches = 0
        from_seq = max(1, first_seq)
        while True:
            frame = self.link.request(f"PULL {from_seq} {PULL_BYTES}", "B")
            try:
                batch = decode_batch(frame.payload)
            except BatchError as exc:
                raise SyncError(f"the kiosk sent a malformed batch ({exc}); nothing was "
                                "stored or acknowledged") from exc
            batches += 1
            if batch.responses and batch.responses[0].seq < from_seq:
                raise SyncError(f"the kiosk answered PULL {from_seq} with seq "
                                f"{batch.responses[0].seq}")
            out += batch.responses
            if progress is not None:
                progress(len(out), max(expected, len(out)))
            if not batch.more:
                return out, batches
            if not batch.responses:
                raise SyncError("the kiosk says more records wait but sent none")
            from_seq = batch.responses[-1].seq + 1

    def ack(self, upto: int) -> int:
        return number(frame_json(self.link.request(f"ACK {upto}", "A")).get("acked"), "acked")

    def send_config(self, data: bytes) -> None:
        """Upload a (host-checked) config; the device checks, writes atomically, applies.
        Any doubt about what arrived restarts the upload from BEGIN."""
        crc = binascii.crc32(data)
        problem = ""
        for _ in range(self.link.attempts):
            reply = frame_json(self.link.request(f"CONFIG BEGIN {len(data)} {crc:08x}", "C"))
            if not reply.get("ok"):
                _refused(reply)
            sent = 0
            intact = True
            for start in range(0, len(data), CONFIG_CHUNK):
                chunk = data[start:start + CONFIG_CHUNK]
                reply = frame_json(self.link.request(
                    "CONFIG DATA " + base64.b64encode(chunk).decode("ascii"), "C"))
                sent += len(chunk)
                if not reply.get("ok") or reply.get("received") != sent:
                    intact = False
                    problem = f"the kiosk had {reply.get('received')} of {sent} bytes"
                    break
            if not intact:
                continue
            reply = frame_json(self.link.request("CONFIG END", "C"))
            if reply.get("ok"):
                return
            if reply.get("problems"):
                _refused(reply)
            problem = "the kiosk did not take the config"
        raise SyncError(f"CONFIG: {problem} after {self.link.attempts} uploads")

    # -- the hardware test -----------------------------------------------------------
    def start_input(self, seconds: int) -> InputTest:
        """Ask the kiosk to report every press and tap for `seconds` (1-600) instead of
        acting on them; next_input() returns them."""
        frame = self.link.request(f"INPUT {seconds}", "I")
        body = frame_json(frame)
        if body.get("input") is not True:
            raise SyncError(f"the kiosk did not start the input test: {body!r}")
        self._input_tag = frame.tag
        self._unread = []
        return InputTest(seconds=number(body.get("seconds"), "seconds"),
                         buttons=number(body.get("buttons"), "buttons"),
                         touch=body.get("touch") is True,
                         targets=number(body.get("targets"), "targets"))

    def next_input(self, timeout: float) -> InputEvent | None:
        """The next press or tap of the input test, or None after `timeout` seconds."""
        if not self._input_tag:
            raise SyncError("no input test is running: call start_input first")
        deadline = time.monotonic() + timeout
        while True:
            while self._unread:
                frame = self._unread.pop(0)
                if frame.tag == self._input_tag and frame.type == "I":
                    return self._event(frame_json(frame))
            if time.monotonic() >= deadline:
                return None
            self._unread += self._read_frames()

    def _event(self, body: dict[str, Any]) -> InputEvent:
        if body.get("input") is False:
            self._input_tag = 0
            raise SyncError(f"the kiosk ended the input test ({body.get('ended', '?')}) "
                            f"after {body.get('events')} presses and taps")
        n = number(body.get("n"), "event number")
        if "button" in body:
            return InputEvent(n, button=number(body.get("button"), "button"))
        tap = body.get("tap")
        if not (isinstance(tap, list) and len(tap) == 2):
            raise SyncError(f"the kiosk sent an input event without a button or tap: {body!r}")
        return InputEvent(n, tap=(number(tap[0], "tap x"), number(tap[1], "tap y")),
                          target=number(body.get("target"), "tap target"))

    def _read_frames(self) -> list[Frame]:
        # Not Link.request: the events come unasked, with INPUT's tag, several at a time,
        # and some may have arrived already, in the same read as an answer.
        return self.link.receive()

    def stop_input(self) -> int:
        """End the input test (the kiosk's survey gets its inputs and screen back);
        returns how many presses and taps the kiosk saw."""
        self._input_tag = 0
        self._unread = []
        body = frame_json(self.link.request("INPUT 0", "I"))
        return number(body.get("events"), "events")

    def show_pattern(self, name: str) -> PatternShown:
        """Draw a test pattern on the panel with a full refresh; answered once the panel is
        done. `PATTERN off` (pattern_off) gives the screen back to the survey."""
        if name not in PATTERNS:
            raise DeskPulseError(f"unknown test pattern {name!r}: {', '.join(PATTERNS)}")
        with self._patience(PATTERN_TIMEOUT):
            body = frame_json(self.link.request(f"PATTERN {name}", "P"))
        error = body.get("error")
        return PatternShown(pattern=str(body.get("pattern")),
                            width=number(body.get("width"), "width"),
                            height=number(body.get("height"), "height"),
                            shown=body.get("shown") is True,
                            full_refreshes=number(body.get("full_refreshes"), "full_refreshes"),
                            error=error if isinstance(error, str) else None)

    def pattern_off(self) -> None:
        self.link.request("PATTERN off", "P")

    def stop_for_maintenance(self, seconds: int) -> int:
        """Stop the kiosk's app for `seconds`: its REPL is then free (mpremote, a
        technician) with the watchdog fed, and it restarts into the app by itself; not a
        crash. Returns the seconds the kiosk took."""
        if not MIN_MAINTENANCE_S <= seconds <= MAX_MAINTENANCE_S:
            raise DeskPulseError(f"maintenance lasts {MIN_MAINTENANCE_S}-{MAX_MAINTENANCE_S} "
                                 f"s, not {seconds}")
        body = frame_json(self.link.request(f"MAINT {seconds}", "M"))
        return number(body.get("maintenance"), "maintenance")

    @contextlib.contextmanager
    def _patience(self, timeout: float) -> Iterator[None]:
        saved = self.link.timeout
        self.link.timeout = max(saved, timeout)
        try:
            yield
        finally:
            self.link.timeout = saved


def _refused(reply: dict[str, Any]) -> None:
    problems = reply.get("problems") or [reply.get("error") or "no reason given"]
    if not isinstance(problems, list):
        problems = [str(problems)]
    raise ConfigRefused("the kiosk refused the config: " + "; ".join(map(str, problems)))
