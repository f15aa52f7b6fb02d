"""A config file checked, before it goes to a kiosk, by the firmware's own validator."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from deskpulse import resources
from deskpulse.device import micropython as runner
from deskpulse.device.zone_rule import with_zone_rule
from deskpulse.errors import DeskPulseError
from deskpulse.protocol.wire import MAX_CONFIG_BYTES

MAX_CONFIG_DEPTH = 16
"""Nesting a config file may have (a real one nests 3 deep): deeper is refused before
parsing it could exhaust the stack (here) or the heap (on the kiosk)."""

_VALIDATE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from kiosk import config
cfg, problems = config.load(sys.argv[2])
print("@" + json.dumps({"problems": problems, "version": cfg["version"],
                        "device_id": cfg["device_id"]}))
"""


Runtime = Literal["micropython", "cpython"]


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    data: bytes  # exactly what goes to the device
    version: int
    device_id: str


@dataclass(frozen=True, slots=True)
class FirmwareVerdict:
    """What the firmware's own `config.load()` says of a config file."""

    problems: list[str]  # in the order the validator found them
    version: int
    device_id: str


def check_config(path: str | os.PathLike[str], runtime: Runtime | None = None) -> CheckedConfig:
    """Read a config file and validate it with the firmware's own validator (kiosk/config.py),
    so that the host and the device cannot disagree about what is valid.

    It runs on MicroPython, the device's runtime, when the `sim` extra installed it, and
    on this CPython otherwise: the verdict is the same; a message can differ only in how
    it quotes non-ASCII names (MicroPython's repr escapes them). Problems are listed
    sorted, because their order follows each runtime's dict order.

    A config that names a time zone gets the zone's rule from this host's tzdata
    (`zone_rule.with_zone_rule`) before it is checked: what is checked and sent carries
    it, the file itself is left as it is."""
    return check_config_value(read_config_json(path), f"config {path}", runtime)


def check_config_value(raw: Any, what: str, runtime: Runtime | None = None) -> CheckedConfig:
    """check_config() for a config already read (e.g. a file merged into a kiosk's own
    config: merge_config); `what` names it in errors ("config front-1.json")."""
    raw = with_zone_rule(raw)
    try:
        data = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:
        raise DeskPulseError(f"{what} holds a \\u escape of half a surrogate pair, "
                             "which is no character") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise DeskPulseError(f"{what} is {len(data)} bytes compacted; the kiosk "
                             f"takes at most {MAX_CONFIG_BYTES}")
    if runtime is None:
        runtime = "micropython" if runner.default_micropython() is not None else "cpython"
    with tempfile.TemporaryDirectory(prefix="deskpulse-config-") as tmp:
        candidate = Path(tmp) / "config.json"
        candidate.write_bytes(data)
        verdict = firmware_verdict(candidate, runtime)
    if verdict.problems:
        raise DeskPulseError(f"{what} rejected: " + "; ".join(sorted(verdict.problems)))
    return CheckedConfig(data, verdict.version, verdict.device_id)


def check_overlay(raw: Any, what: str) -> None:
    """What can be told of a config meant to be merged into a kiosk's own before the
    kiosk is asked: it is an object and every value it sets is one the firmware's
    validator takes. A language whose texts the kiosk may already hold counts as having
    them here; the merged whole is checked again (check_config_value)."""
    if not isinstance(raw, dict):
        raise DeskPulseError(f"{what} is not a JSON object of config keys")
    probe = dict(raw)
    language = probe.get("language")
    texts = probe.get("texts", {})
    if isinstance(language, str) and isinstance(texts, dict) and language not in texts:
        probe["texts"] = {**texts, language: {}}
    with tempfile.TemporaryDirectory(prefix="deskpulse-config-") as tmp:
        candidate = Path(tmp) / "config.json"
        candidate.write_text(json.dumps(with_zone_rule(probe), ensure_ascii=False),
                             encoding="utf-8")
        problems = firmware_verdict(candidate, "cpython").problems
    if problems:
        raise DeskPulseError(f"{what} rejected: " + "; ".join(sorted(problems)))


# -- merging and comparing configs ----------------------------------------------------------


def merge_config(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """overlay merged into base, neither changed: an object in both (texts, each language's
    texts, sync, opening_hours) is merged key by key, anything else in overlay replaces
    base's value. So a store template or a WiFi file changes only what it names; a key
    cannot be taken out this way (a whole config replaces instead: sync --replace)."""
    merged = copy.deepcopy(dict(base))
    for key, value in overlay.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge_config(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def effective_config(raw: Mapping[str, Any]) -> dict[str, Any]:
    """What a kiosk takes from the config raw (valid): the firmware's defaults for every
    key it leaves out, in sync too, and each language's texts over the English ones
    (kiosk/config.py validate() does the same for the language shown)."""
    module = firmware_module("kiosk.config")
    out = module.defaults()
    english = dict(module.ENGLISH)
    for key, value in raw.items():
        if key == "sync" and isinstance(value, Mapping):
            out["sync"].update(value)
        elif key == "texts" and isinstance(value, Mapping):
            out["texts"].update({lang: {**english, **table} if isinstance(table, Mapping)
                                 else table for lang, table in value.items()})
        else:
            out[key] = value
    return out


def secret_paths() -> tuple[str, ...]:
    """The config keys never shown (the firmware's SECRET_KEYS, in sync)."""
    return tuple(f"sync.{key}" for key in firmware_module("kiosk.config").SECRET_KEYS)


def redacted_config(raw: Any) -> Any:
    """raw with every secret that is set shown as "***" (a copy; anything else as it is)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("sync"), dict):
        return raw
    sync = dict(raw["sync"])
    for path in secret_paths():
        key = path.removeprefix("sync.")
        if sync.get(key):
            sync[key] = "***"
    return {**raw, "sync": sync}


def config_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per key path whose value the kiosk takes differs between the configs
    before and after (defaults filled in: effective_config), as `path: old -> new`, in
    key order; secrets as *** (set) or "" (empty). Empty when nothing changes."""
    secrets = secret_paths()
    lines: list[str] = []

    def shown(path: str, value: Any) -> str:
        if value is _ABSENT:
            return "(none)"
        if path in secrets and isinstance(value, str):
            return "***" if value else '""'
        return json.dumps(value, ensure_ascii=False)

    def walk(path: str, old: Any, new: Any) -> None:
        # An object that comes or goes (a language's texts) is listed key by key too.
        if isinstance(old, Mapping) and new is _ABSENT:
            new = {}
        elif isinstance(new, Mapping) and old is _ABSENT:
            old = {}
        if isinstance(old, Mapping) and isinstance(new, Mapping):
            for key in sorted(set(old) | set(new), key=str):
                walk(f"{path}.{key}" if path else str(key),
                     old.get(key, _ABSENT), new.get(key, _ABSENT))
        elif old != new or type(old) is not type(new):
            if path in secrets and old != new and shown(path, old) == shown(path, new):
                lines.append(f"{path}: {shown(path, old)} -> {shown(path, new)} (changed)")
            else:
                lines.append(f"{path}: {shown(path, old)} -> {shown(path, new)}")

    walk("", effective_config(before), effective_config(after))
    return lines


_ABSENT: Any = object()


def firmware_verdict(path: Path, runtime: Runtime) -> FirmwareVerdict:
    """Run the firmware's `config.load(path)` on `runtime` (kiosk/config.py and the
    kiosk/jsoncheck.py it uses run on both)."""
    if runtime == "cpython":
        config, problems = firmware_module("kiosk.config").load(str(path))
        return FirmwareVerdict(list(problems), int(config["version"]), str(config["device_id"]))
    micropython = runner.require_micropython("checking a config on MicroPython")
    try:
        proc = subprocess.run(
            [str(micropython), "-X", "heapsize=1M", "-c", _VALIDATE,
             str(resources.firmware_dir()), str(path)],
            capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeskPulseError(f"cannot run {micropython} to check the config: {exc}") from exc
    answer = [line for line in proc.stdout.splitlines() if line.startswith("@")]
    if proc.returncode != 0 or not answer:
        detail = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DeskPulseError(
            f"checking the config failed: {detail[-1] if detail else proc.returncode}")
    result = json.loads(answer[-1][1:])
    return FirmwareVerdict(list(result["problems"]), int(result["version"]),
                           str(result["device_id"]))


@functools.cache
def firmware_module(name: str) -> ModuleType:
    """A firmware module that runs on CPython too (kiosk.config, kiosk.tzrule), imported
    into this CPython."""
    firmware = resources.firmware_dir()
    sys.path.insert(0, str(firmware))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(firmware))
    # Another package named `kiosk` imported earlier would be used instead: refuse it.
    if Path(module.__file__ or "").resolve().parent != firmware / "kiosk":
        raise DeskPulseError(f"cannot check configs: the module {name} at "
                             f"{module.__file__} is not the firmware's ({firmware})")
    return module


def read_config_json(path: str | os.PathLike[str], what: str = "config") -> Any:
    """A config file's JSON, or one sentence on why it cannot be read. A file far beyond
    what a kiosk takes, or nested deeper than MAX_CONFIG_DEPTH, is refused before it is
    parsed."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES * 8 + 1)
    except OSError as exc:
        raise DeskPulseError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_CONFIG_BYTES * 8:
        raise DeskPulseError(f"{what} {path} is far too big for a kiosk config (which takes "
                             f"at most {MAX_CONFIG_BYTES} bytes compacted)")
    try:
        text = data.decode("utf-8")
    except UnicodeError as exc:
        raise DeskPulseError(f"{what} {path} is not valid JSON: {exc}") from exc
    depth = _nesting(text)
    if depth > MAX_CONFIG_DEPTH:
        raise DeskPulseError(f"{what} {path} nests {depth} levels deep; a kiosk config "
                             f"takes at most {MAX_CONFIG_DEPTH}")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise DeskPulseError(f"{what} {path} is not valid JSON: {exc}") from exc


def _nesting(text: str) -> int:
    """The deepest [ / { nesting outside JSON strings (an upper bound for malformed text)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest
