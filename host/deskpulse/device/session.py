"""One conversation with a kiosk over a link: HELLO, TIME, PULL, ACK, CONFIG."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deskpulse.device.link import Link, SyncError, frame_json
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.batch import Anchor, BatchError, Response, decode_batch, parse_anchor
from deskpulse.protocol.frames import Frame
from deskpulse.protocol.wire import CONFIG_CHUNK, PROTOCOL, PULL_BYTES


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


Progress = Callable[[int, int], None]
"""progress(responses pulled so far, responses the device said it holds)."""


class Session:
    """One sync with one kiosk over an open link."""

    def __init__(self, link: Link) -> None:
        self.link = link

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


def _refused(reply: dict[str, Any]) -> None:
    problems = reply.get("problems") or [reply.get("error") or "no reason given"]
    if not isinstance(problems, list):
        problems = [str(problems)]
    raise ConfigRefused("the kiosk refused the config: " + "; ".join(map(str, problems)))
