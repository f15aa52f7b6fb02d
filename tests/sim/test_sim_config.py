"""`deskpulse sim --config/--device-config` installs a config as the device would take one:
never a text that is not strictly JSON, never a new device_id while responses wait."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import BOARDS, FIRMWARE, micropython_binary
from deskpulse import cli
from deskpulse.device.inspect import read_state

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"


def sim(tmp_path: Path, script: str, *extra: str) -> int:
    path = tmp_path / "script.txt"
    path.write_text(script)
    return cli.main(["sim", "--state", str(tmp_path / "state"), "--script", str(path), *extra])


def write(tmp_path: Path, name: str, value: object) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


def test_a_config_cannot_rename_a_simulated_kiosk_that_holds_unsynced_responses(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = write(tmp_path, "first.json", {"device_id": "desk-1"})
    assert sim(tmp_path, "rate 3\nyes\nexit\n", "--config", first) == 0
    flash = (tmp_path / "state" / "flash.img").read_bytes()
    capsys.readouterr()
    renamed = write(tmp_path, "renamed.json", {"device_id": "desk-2"})
    assert sim(tmp_path, "rate 4\nyes\nexit\n", "--config", renamed) == 2
    err = capsys.readouterr().err
    assert err == (f"deskpulse: config {renamed} rejected: device_id cannot change from desk-1 "
                   "to desk-2 while 1 responses are not confirmed by a host: sync them first\n")
    device = write(tmp_path, "device.json", {"device_id": "desk-3"})
    assert sim(tmp_path, "exit\n", "--device-config", device) == 2
    assert "from desk-1 to desk-3 while 1 responses" in capsys.readouterr().err
    # Nothing changed: no boot, no response, the same config.
    assert (tmp_path / "state" / "flash.img").read_bytes() == flash
    state = read_state(BOARD, tmp_path / "state")
    assert state.status["device_id"] == "desk-1" and len(state.responses) == 1
    # The same id, or other settings, may still change.
    same = write(tmp_path, "same.json", {"device_id": "desk-1", "version": 2})
    assert sim(tmp_path, "exit\n", "--config", same) == 0


def test_a_bare_simulated_kiosk_goes_by_its_mac_and_keeps_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The state folder gives the simulated chip its MAC at the first start and keeps it:
    a kiosk whose config names no id goes by kiosk- and that MAC, named so it stays
    itself with responses waiting, named otherwise it must be synced first."""
    assert sim(tmp_path, "rate 3\nyes\nexit\n") == 0
    mac = (tmp_path / "state" / "mac").read_text()
    assert len(bytes.fromhex(mac)) == 6 and int(mac[:2], 16) & 0x03 == 0x02  # local, unicast
    mac_id = f"kiosk-{mac}"
    assert read_state(BOARD, tmp_path / "state").status["device_id"] == mac_id
    capsys.readouterr()
    named = write(tmp_path, "named.json", {"device_id": "desk-5"})
    assert sim(tmp_path, "exit\n", "--config", named) == 2
    assert (f"device_id cannot change from {mac_id} to desk-5 while 1 responses"
            in capsys.readouterr().err)
    itself = write(tmp_path, "itself.json", {"device_id": mac_id, "version": 2})
    assert sim(tmp_path, "exit\n", "--config", itself) == 0
    state = read_state(BOARD, tmp_path / "state")
    assert state.status["device_id"] == mac_id and len(state.responses) == 1
    assert (tmp_path / "state" / "mac").read_text() == mac


def test_sim_main_takes_a_mac_and_keeps_it_for_the_state_folder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = write(tmp_path, "script.txt", "exit\n")

    def boot(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [micropython_binary(), str(FIRMWARE / "sim_main.py"), "--board", str(BOARD),
             "--state", str(state), "--script", script, *extra],
            capture_output=True, text=True, timeout=120, check=False)

    for extra in (("--mac", "24:0A:C4:12:34:56"), ()):
        proc = boot(*extra)
        assert proc.returncode == 0, proc
        status = json.loads(proc.stdout.splitlines()[-1][1:])["status"]
        assert status["device_id"] == "kiosk-240ac4123456"
    bad = boot("--mac", "24:0a:c4")
    assert bad.returncode == 2 and bad.stderr == (
        "deskpulse: --mac '24:0a:c4' is not a MAC: give 12 hex digits, e.g. "
        "24:0a:c4:12:34:56\n")


@pytest.mark.parametrize(("text", "problem"), [
    ('{"scale": 3,,}', "is not valid JSON: expected '\"' (a key) at byte 12"),
    ('{"device_id": "a" "scale": 3}', "is not valid JSON: expected ',' or '}' at byte 18"),
    ('{"version": NaN}', "is not valid JSON: expected a value at byte 12"),
    ('{"texts": ' + "[" * 20 + "]" * 20 + "}", "is nested too deeply"),
])
def test_the_firmware_side_refuses_a_config_that_is_not_strict_json(
        tmp_path: Path, text: str, problem: str) -> None:
    """sim_main itself (the host CLI checks too, with CPython's json, which takes NaN)."""
    path = write(tmp_path, "config.json", text)
    for option, what in (("--config", "config"), ("--device-config", "device config")):
        proc = subprocess.run(
            [micropython_binary(), str(FIRMWARE / "sim_main.py"), "--board", str(BOARD),
             "--state", str(tmp_path / "state"), option, path],
            capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 2, proc
        assert proc.stderr.startswith(f"deskpulse: {what} {path} {problem}"), proc.stderr
        assert proc.stderr.count("\n") == 1 and proc.stdout == ""
