"""Plain-text renderings of what the device and the sync report, for the terminal: the
`deskpulse` commands and the demo print the same lines."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from deskpulse.store.health import REASON_SHORT

if TYPE_CHECKING:
    from collections.abc import Mapping

    from deskpulse.device.sync import SyncSummary
    from deskpulse.store.base import DeviceHealth
    from deskpulse.store.health import KioskHealth


def format_status(status: dict) -> str:
    log = status.get("log", {})
    clock = status.get("clock", {})
    source = {"kept": "the RTC across a reset"}.get(clock.get("source"), clock.get("source"))
    clock_text = f"set by {source}" if clock.get("known") else "unknown"
    lines = [
        f"device {status.get('device_id') or '(no id)'} on {status.get('board')}, "
        f"firmware {status.get('firmware')}, boot {status.get('boot')} "
        f"({status.get('reset_cause')}), crashes {status.get('crashes')}",
        f"log: {log.get('stored')} stored, {log.get('unacked')} unacknowledged, "
        f"{log.get('dropped')} dropped, {log.get('corrupt')} corrupt; next seq "
        f"{log.get('next_seq')}; flash {100 * log.get('fs_fill', 0):.1f}% full",
        f"clock: {clock_text}; config version {status.get('config_version')}",
    ]
    for problem in status.get("config_problems", []):
        lines.append(f"config problem: {problem}")
    if status.get("last_failure"):
        lines.append(f"last failure to start or run: {status['last_failure']}")
    return "\n".join(lines)


def format_response(r: dict) -> str:
    flags = ",".join(name for name in ("rapid", "closed") if r.get(name)) or "-"
    when = (datetime.fromtimestamp(r["wall"], UTC).strftime("%Y-%m-%d %H:%M:%SZ")
            if r.get("wall") else f"time unknown (boot {r['boot']} +{r['uptime_s']}s)")
    return (f"  #{r['seq']:<5} face {r['rating']}/{r['scale']}  told next: "
            f"{r['told_next']:<9}  after {r['latency_s']:>4}s  flags {flags:<12} {when}")


def _when(unix: int | None) -> str:
    if unix is None:
        return "never"
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _fill(fill: float | None) -> str:
    return "flash fill unknown" if fill is None else f"flash {100 * fill:.1f}% full"


def format_summary(s: SyncSummary) -> str:
    about = ", ".join(x for x in (s.board, f"firmware {s.firmware}" if s.firmware else "") if x)
    lines = [f"synced {s.device_id}{f' ({about})' if about else ''} on {s.port}"]
    lines.append(f"  new responses: {s.new}; duplicates ignored: {s.duplicates}")
    lines.append(f"  time unknown: {s.time_unknown} of the new "
                 f"({s.time_unknown_total} in all for this kiosk)")
    if s.dropped is None:
        lines.append("  drops reported by the device: unknown")
    else:
        since = "" if s.dropped_since_last is None else f" ({s.dropped_since_last} since last sync)"
        lines.append(f"  drops reported by the device: {s.dropped}{since}")
    corrupt = "" if s.corrupt is None else f", {s.corrupt} corrupt records"
    lines.append(f"  device: {_fill(s.fill)}{corrupt}")
    if s.config_version is not None:
        lines.append(f"  config version {s.config_version} sent and applied")
    lines += [f"  warning: {w}" for w in s.warnings]
    return "\n".join(lines)


def format_devices(devices: list[DeviceHealth], registered: set[str] | None = None,
                   stores: Mapping[str, str] | None = None,
                   contacts: Mapping[str, KioskHealth] | None = None) -> str:
    """One block per kiosk; a kiosk in `registered` (ids with a push key) gets a line
    saying so, one in `stores` (id to store path) its store, one in `contacts` its
    contacts, clock, config and refused pushes (format_contact)."""
    if not devices:
        return "no kiosks in the database yet: run `deskpulse sync`"
    lines = []
    for d in devices:
        label = d.device_id + (f" ({d.name})" if d.name else "")
        if d.location:
            label += f" at {d.location}"
        if d.time_zone:
            label += f", {d.time_zone}"
        if stores and d.device_id in stores:
            label += f", in {stores[d.device_id]}"
        lines.append(label)
        via = f" over {d.transport}" if d.transport else ""
        lines.append(f"  last sync {_when(d.last_sync)}{via} ({d.syncs} in all); "
                     f"{d.responses} responses stored, {d.time_unknown} with time unknown")
        clock = {None: "clock unknown", True: "clock set", False: "clock not set"}[d.clock_known]
        health = [_fill(d.fill)]
        health.append(f"{d.dropped if d.dropped is not None else '?'} dropped")
        health.append(f"{d.corrupt if d.corrupt is not None else '?'} corrupt")
        boot = f"boot {d.boot}" if d.boot is not None else "boot ?"
        if d.reset_cause:
            boot += f" ({d.reset_cause})"
        health += [boot, f"{d.crashes} crashes" if d.crashes is not None else "crashes ?", clock]
        lines.append("  health at last sync: " + ", ".join(health))
        if d.board or d.firmware:
            lines.append(f"  {d.board or '?'}, firmware {d.firmware or '?'}")
        if registered is not None and d.device_id in registered:
            lines.append("  registered for the WiFi push (deskpulse serve)")
        if contacts and d.device_id in contacts:
            lines.append("  " + format_contact(contacts[d.device_id]))
    return "\n".join(lines)


def format_contact(k: KioskHealth) -> str:
    """A kiosk's contacts, clock, config and refused pushes on one line:
    "last push 2026-12-05 14:02 UTC, last USB sync never; clock +3 s; config 4 (wanted 5);
    refused in 24 h: 5 wrong key"."""
    parts = [f"last push {_when(k.last_push)}, last USB sync {_when(k.last_serial)}"]
    if k.clock_offset_s is not None:
        parts.append(f"clock {k.clock_offset_s:+d} s")
    elif k.clock_known is False:
        parts.append("clock not set")
    if k.config_running is not None or k.config_desired is not None:
        running = "?" if k.config_running is None else str(k.config_running)
        wanted = (f" (wanted {k.config_desired})" if k.config_behind
                  else " (as wanted)" if k.config_desired is not None else "")
        parts.append(f"config {running}{wanted}")
    if k.refused:
        parts.append("refused in 24 h: " + ", ".join(
            f"{count} {REASON_SHORT.get(reason, reason)}"
            for reason, count in sorted(k.refused.items())))
    return "; ".join(parts)
