"""The constants both ends of the wire rely on are the same numbers in the firmware and in
the host package. The firmware's are read from its source (`NAME = const(N)` or a plain
literal), as the device compiles them, without importing it."""

from __future__ import annotations

import ast
import functools
import json
from pathlib import Path

import pytest

from deskpulse import resources
from deskpulse.device.config_check import firmware_verdict
from deskpulse.protocol import batch, frames, signing, wire


@functools.cache
def firmware_constants(module: str) -> dict[str, object]:
    """Module-level `NAME = literal` and `NAME = const(literal)` of firmware/kiosk/<module>."""
    source = Path(resources.firmware_dir(), "kiosk", f"{module}.py").read_text()
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)):
            continue
        value = node.value
        if (isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id == "const" and len(value.args) == 1):
            value = value.args[0]
        try:
            found[node.targets[0].id] = ast.literal_eval(value)
        except ValueError:
            continue  # a computed value: not a wire constant
    return found


def firmware(module: str, name: str) -> object:
    constants = firmware_constants(module)
    assert name in constants, f"firmware/kiosk/{module}.py no longer defines {name}"
    return constants[name]


SHARED = [
    # (host value, firmware module, firmware name, why both ends need it)
    (wire.PROTOCOL, "serial_sync", "PROTOCOL", "HELLO's protocol version"),
    (wire.PULL_BYTES, "serial_sync", "MAX_PAYLOAD", "the largest batch a PULL asks for"),
    (wire.CONFIG_CHUNK, "serial_sync", "CONFIG_CHUNK", "bytes per CONFIG DATA line"),
    (wire.MAX_CONFIG_BYTES, "config", "MAX_FILE_BYTES", "the largest config"),
    (wire.CONFIG_PIECE_HEAD, "serial_sync", "_PIECE_HEAD", "CONFIG READ's answer head"),
    (frames.MARKER, "frames", "START", "a frame's start marker"),
    (frames.HEADER_SIZE, "frames", "HEAD", "a frame's header"),
    (frames.CRC_SIZE, "frames", "TAIL", "a frame's CRC"),
    (batch.EXT_GAP, "batch", "EXT_GAP", "a record's extension bits"),
    (batch.EXT_BOOT, "batch", "EXT_BOOT", "a record's extension bits"),
    (batch.EXT_FLAGS, "batch", "EXT_FLAGS", "a record's extension bits"),
    (batch.EXT_CONFIG, "batch", "EXT_CONFIG", "a record's extension bits"),
    (batch.EXT_WALL_BASE, "batch", "EXT_WALL", "a record's extension bits"),
    (batch.EXT_CLOCK, "batch", "EXT_CLOCK", "a record's extension bits"),
    (batch.FLAG_RAPID, "record", "FLAG_RAPID", "a record's flags"),
    (batch.FLAG_CLOSED, "record", "FLAG_CLOSED", "a record's flags"),
    (batch.EARLIEST_WALL, "clock", "EARLIEST_WALL", "the clock bounds"),
    (batch.LATEST_WALL, "clock", "LATEST_WALL", "the clock bounds"),
    (signing.KEY_BYTES, "push", "_KEY_BYTES", "the push key's length"),
    (wire.MAX_INPUT_S, "hwtest", "MAX_INPUT_S", "the longest INPUT test"),
    (wire.PATTERN_S, "hwtest", "PATTERN_S", "how long a test pattern stays"),
    (wire.PATTERNS, "hwtest", "PATTERNS", "the test patterns PATTERN draws"),
    (wire.MIN_MAINTENANCE_S, "serial_sync", "MIN_MAINTENANCE_S", "MAINT's shortest stop"),
    (wire.MAX_MAINTENANCE_S, "serial_sync", "MAX_MAINTENANCE_S", "MAINT's longest stop"),
]


@pytest.mark.parametrize(("host", "module", "name", "why"), SHARED,
                         ids=[f"{m}.{n}" for _, m, n, _ in SHARED])
def test_host_and_firmware_agree(host: object, module: str, name: str, why: str) -> None:
    assert host == firmware(module, name), why


def test_the_reader_sees_a_changed_constant(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison can fail: a firmware whose PROTOCOL moved on reads as another value."""
    kiosk = tmp_path / "kiosk"
    kiosk.mkdir()
    (kiosk / "serial_sync.py").write_text("PROTOCOL = const(2)\nX = 1 + 1\n")
    monkeypatch.setattr(resources, "firmware_dir", lambda: tmp_path)
    firmware_constants.cache_clear()
    try:
        assert firmware("serial_sync", "PROTOCOL") == 2 != wire.PROTOCOL
        assert "X" not in firmware_constants("serial_sync")
    finally:
        firmware_constants.cache_clear()


@pytest.mark.parametrize("device_id", ["a" * 32, "a" * 33, "front.desk_2-b", "front desk",
                                       "caf\u00e9", ""])
def test_the_server_takes_the_ids_the_firmware_takes(tmp_path: Path, device_id: str) -> None:
    """The id pattern a push URL must match is the config validator's rule (run here on
    CPython: kiosk/config.py runs on both), for every id a kiosk can be given."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"device_id": device_id}), encoding="utf-8")
    verdict = firmware_verdict(config, "cpython")
    firmware_takes = not any("device_id" in p for p in verdict.problems) and device_id != ""
    assert bool(signing.DEVICE_ID.fullmatch(device_id)) == firmware_takes
