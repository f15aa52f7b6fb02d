"""Config over the air: the rules every store engine shares for desired configs and their
versions (the engines keep the rows: store/<engine>/desired_config.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

MAX_VERSION = 0xFFFF
"""The kiosk's config version is a u16 (kiosk/config.py); versions wrap to 1 after it."""
HISTORY = 20
"""Desired configs kept per kiosk (the newest ones), for `deskpulse config diff`."""


def dumps(value: Any) -> str:
    """A config or layer as stored: sorted keys, compact, so equal values store alike."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def without_version(config: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in config.items() if key != "version"}


def unchanged(stored: str | None, new: Mapping[str, Any] | None) -> bool:
    """Whether the new desired config (None: not managed) is the stored one (JSON text,
    None for none), the version aside."""
    old = without_version(json.loads(stored)) if stored else None
    return old == (without_version(new) if new is not None else None)


def running_version(last_status: str | None) -> int:
    """The config version in a kiosk's last status (JSON text), 0 when it has none."""
    try:
        version = json.loads(last_status).get("config_version") if last_status else 0
    except (ValueError, AttributeError):
        return 0
    return version if isinstance(version, int) and 0 <= version <= MAX_VERSION else 0


def next_version(last_given: int, running: int) -> int:
    """Above every version the kiosk was given and the one it runs (which a USB config
    file may have set), so the kiosk never takes the new one for its own; wraps to 1."""
    return max(last_given, running) % MAX_VERSION + 1


def stored_config(config: Mapping[str, Any], version: int) -> str:
    return dumps({**without_version(config), "version": version})
