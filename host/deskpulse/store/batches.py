"""What every engine decides about a batch before it writes it: which records are
duplicates, which conflict with a stored namesake, what a device's status says about its
health, and whether a push's nonce still holds. Pure functions over rows an engine read;
the SQL stays in each engine's package."""

from __future__ import annotations

import bisect
import hmac
import operator
from collections.abc import Mapping, Sequence
from typing import Any

from deskpulse.protocol.batch import Response
from deskpulse.protocol.signing import Nonce
from deskpulse.store.base import ConflictError, PushCheck, PushRefused

COMPARED = ("rating", "scale", "told_next", "latency_ds", "rapid", "closed", "boot",
            "uptime_s", "device_wall", "config_version")
"""The stored columns that must match for a record sent again to be a duplicate."""


def compared_fields(r: Response) -> tuple[Any, ...]:
    """A response as its stored namesake's COMPARED columns read back."""
    return (r.rating, r.scale, r.told_next, r.latency_ds, int(r.rapid), int(r.closed),
            r.boot, r.uptime_s, r.wall, r.config_version)


def increasing(responses: Sequence[Response]) -> bool:
    seqs = [r.seq for r in responses]
    return all(map(operator.lt, seqs, seqs[1:]))


def seq_range(responses: Sequence[Response], is_increasing: bool) -> tuple[int, int]:
    """The lowest and highest seq of a non-empty batch."""
    if is_increasing:
        return responses[0].seq, responses[-1].seq
    return min(r.seq for r in responses), max(r.seq for r in responses)


def refuse_conflicts(device_id: str, responses: Sequence[Response],
                     stored: Mapping[int, tuple[Any, ...]]) -> None:
    """Raise ConflictError when a response's stored namesake differs: the same record sent
    again is a duplicate; a different one means the device's numbering restarted."""
    if not stored:  # the usual case: nothing of this range stored yet
        return
    clashes = sorted({r.seq for r in responses
                      if r.seq in stored and stored[r.seq] != compared_fields(r)})
    if clashes:
        raise ConflictError(
            f"device {device_id} sent {len(clashes)} responses (seq {clashes[0]}..."
            f"{clashes[-1]}) that differ from the stored ones with the same numbers: "
            "its log was probably erased and renumbered. Nothing was stored. Give the "
            "device a new device_id (sync --config) so its records keep apart.")


def new_ones(responses: Sequence[Response], stored: Mapping[int, Any],
             is_increasing: bool) -> Sequence[Response]:
    """The responses to insert: not stored yet, and each seq once."""
    if is_increasing and not stored:
        return responses
    seen = set(stored)
    out = []
    for r in responses:
        if r.seq not in seen:
            seen.add(r.seq)
            out.append(r)
    return out


def _num(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def health(status: Mapping[str, Any]) -> tuple[Any, ...]:
    """(stored, unacked, dropped, corrupt, fill, boot, reset_cause, crashes, clock_known)
    of a device's status, each None where the status does not say it plainly."""
    log = status.get("log")
    log = log if isinstance(log, Mapping) else {}
    clock = status.get("clock")
    clock = clock if isinstance(clock, Mapping) else {}
    fill = log.get("fs_fill")
    return (
        _num(log.get("stored")), _num(log.get("unacked")), _num(log.get("dropped")),
        _num(log.get("corrupt")),
        float(fill) if isinstance(fill, int | float) and not isinstance(fill, bool) else None,
        _num(status.get("boot")), text(status.get("reset_cause")),
        _num(status.get("crashes")),
        None if "known" not in clock else int(bool(clock.get("known"))),
    )


def check_push(device_id: str, stored: tuple[bytes, int, int] | None, push: PushCheck
               ) -> None:
    """Raise PushRefused unless the device still has the push's key and its nonce is higher
    than the last accepted one; `stored` is (key, nonce boot, nonce count) or None."""
    if stored is None:
        raise PushRefused("unknown_device",
                          f"no device {device_id} is registered (it was just removed)")
    if not hmac.compare_digest(bytes(stored[0]), push.key):
        raise PushRefused("key_replaced",
                          "the signature does not match: the device's key was just replaced")
    last, nonce = Nonce(int(stored[1]), int(stored[2])), push.nonce
    if (nonce.boot, nonce.count) <= (last.boot, last.count):
        raise PushRefused("replayed", f"nonce {nonce} is not higher than the last accepted "
                                      f"one ({last}): a replayed request; nothing was stored")


BootSpan = tuple[int, int, int, int]
"""(boot, first_seq, last_seq, max_uptime_s): what the `boots` table keeps of a device's
boot. A kiosk's seq counter survives its reboots and its boot counter only grows, so a
boot's responses lie in one range of its seqs: placement reads them through the primary
key (device_id, seq) in that range instead of through an index of every response by boot,
which cost ingest about a quarter of SQLite's own work per response."""


def boot_spans(seqs: list[int], boots: list[int], uptimes: list[int]) -> list[BootSpan]:
    """The span of each boot among these responses (given column by column, in the same
    order), one per boot: the rows an engine upserts into its boots table, widening what
    it holds (least first seq, greatest last seq and uptime)."""
    if boots == sorted(boots):
        # A kiosk's batch: its boots in runs, each run a slice whose ends bisect finds;
        # loops in C only (a loop in Python over every response cost 0.3 µs each).
        spans = []
        start = 0
        while start < len(boots):
            end = bisect.bisect_right(boots, boots[start], start)
            spans.append((boots[start], min(seqs[start:end]), max(seqs[start:end]),
                          max(uptimes[start:end])))
            start = end
        return spans
    by_boot: dict[int, BootSpan] = {}
    for seq, boot, uptime in zip(seqs, boots, uptimes, strict=True):
        span = by_boot.get(boot)
        by_boot[boot] = (boot, seq, seq, uptime) if span is None else (
            boot, min(span[1], seq), max(span[2], seq), max(span[3], uptime))
    return list(by_boot.values())
