"""Tagged commands and their answer frames over a kiosk's serial port."""

from __future__ import annotations

import json
import random
import time
from collections import deque
from typing import Any

import serial

from deskpulse.device.ports import SerialPort
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.frames import Frame, FrameParser, command_line

DEFAULT_TIMEOUT = 3.0
"""Seconds to wait for the answer to one command before sending it again. A full 4 KB
batch takes 0.4 s at 115200 baud; the rest is slack for a busy device."""
DEFAULT_ATTEMPTS = 4
HELD_FRAMES = 64
"""Frames kept that arrived while an answer to another command was awaited: the hardware
test's input events come unasked, with INPUT's tag, and may share a read with any answer.
Beyond this many (late answers to retried commands that nobody collects), the oldest go."""


class SyncError(DeskPulseError):
    """The kiosk did not answer as the protocol says."""


class Link:
    """Tagged commands and their answer frames over one port."""

    def __init__(self, port: SerialPort, *, timeout: float = DEFAULT_TIMEOUT,
                 attempts: int = DEFAULT_ATTEMPTS, name: str = "the port") -> None:
        self.port = port
        self.timeout = timeout
        self.attempts = attempts
        self.name = name
        self.parser = FrameParser()
        self._held: deque[Frame] = deque(maxlen=HELD_FRAMES)
        self._tag = random.randrange(1, 0x10000)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.retries = 0

    def _next_tag(self) -> int:
        # Tag 0 is left out: a device that cannot read a damaged line's tag may answer 0.
        self._tag = self._tag % 0xFFFF + 1
        return self._tag

    def _write(self, data: bytes) -> None:
        try:
            self.port.write(data)
        except (serial.SerialException, OSError) as exc:
            raise DeskPulseError(f"lost the kiosk on {self.name}: {exc}") from exc
        self.bytes_sent += len(data)

    def _read(self) -> bytes:
        try:
            waiting = self.port.in_waiting
            return self.port.read(max(1, min(waiting, 65536)))
        except (serial.SerialException, OSError) as exc:
            raise DeskPulseError(f"lost the kiosk on {self.name}: {exc}") from exc

    def _read_frames(self) -> list[Frame]:
        data = self._read()
        if not data:
            return []
        self.bytes_received += len(data)
        return self.parser.feed(data)

    def _await(self, tag: int, deadline: float) -> Frame | None:
        while time.monotonic() < deadline:
            answer = None
            # One read may carry the answer and frames that are not it, before or after
            # it: those are kept for receive(), not dropped.
            for frame in self._read_frames():
                if answer is None and frame.tag == tag:
                    answer = frame
                else:
                    self._held.append(frame)
            if answer is not None:
                return answer
        return None

    def receive(self) -> list[Frame]:
        """Frames that came without a request waiting for them (the hardware test's input
        events): first those that arrived while request() awaited another answer, in
        order of arrival; else whatever one read of the port brings (at most its timeout)."""
        if self._held:
            frames = list(self._held)
            self._held.clear()
            return frames
        return self._read_frames()

    def request(self, command: str, expect: str) -> Frame:
        """Send `command` until a frame of type `expect` answers it."""
        verb = command.split(" ", 1)[0]
        problem = "no answer"
        for attempt in range(self.attempts):
            if attempt:
                self.retries += 1
            tag = self._next_tag()
            self._write(command_line(tag, command))
            frame = self._await(tag, time.monotonic() + self.timeout)
            if frame is None:
                problem = "no answer"
            elif frame.type == expect:
                return frame
            elif frame.type == "E":
                problem = "the kiosk said: " + str(frame_json(frame).get("error", "?"))
            else:
                problem = f"a {frame.type} frame instead of {expect}"
        raise SyncError(f"{verb}: {problem} after {self.attempts} tries on {self.name}")


def frame_json(frame: Frame) -> dict[str, Any]:
    try:
        value = json.loads(frame.payload.decode("utf-8"))
    except (UnicodeError, ValueError) as exc:
        raise SyncError(f"the kiosk sent a {frame.type} frame that is not JSON") from exc
    if not isinstance(value, dict):
        raise SyncError(f"the kiosk sent a {frame.type} frame that is not a JSON object")
    return value

