"""Checks on a real ESP32 (opt-in): `pytest -m hardware --port /dev/ttyUSB0`.

Skipped without --port. They expect the DeskPulse firmware files on the board's flash.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from deskpulse.device.boards import list_boards

MPREMOTE = Path(sys.executable).parent / "mpremote"


def mpremote_exec(port: str, code: str) -> str:
    # `resume` keeps mpremote from soft-resetting the board (and its running app).
    proc = subprocess.run([str(MPREMOTE), "connect", port, "resume", "exec", code],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.hardware
def test_the_board_runs_this_firmware_version(port: str) -> None:
    from_board = mpremote_exec(port, "import kiosk; print(kiosk.FIRMWARE_VERSION)")
    here = (REPO / "firmware" / "kiosk" / "__init__.py")
    assert f'FIRMWARE_VERSION = "{from_board}"' in here.read_text()


@pytest.mark.hardware
def test_the_board_file_on_flash_is_a_known_board(port: str) -> None:
    name = mpremote_exec(port, "import json; print(json.load(open('/board.json'))['name'])")
    assert name in list_boards()
