"""Read a simulated device's stored state through the firmware's own code."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskpulse import resources
from deskpulse.device.micropython import require_micropython
from deskpulse.errors import DeskPulseError


@dataclass
class DeviceState:
    status: dict[str, Any]
    anchors: list[list[int]]
    responses: list[dict[str, Any]] = field(default_factory=list)


def read_state(board: Path, state_dir: Path, heap: str = "1M") -> DeviceState:
    """Run the firmware's dump mode over the flash image in state_dir (it reads the log
    with the same code the device runs, so host and device cannot disagree)."""
    micropython = require_micropython("deskpulse inspect")
    if not (state_dir / "flash.img").exists():
        raise DeskPulseError(f"no simulated flash in {state_dir}: run `deskpulse sim` first")
    proc = subprocess.run(
        [str(micropython), "-X", f"heapsize={heap}", str(resources.sim_entry()),
         "--board", str(board), "--state", str(state_dir), "--dump"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        message = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        raise DeskPulseError(f"reading {state_dir} failed: {message[-1] if message else '?'}")
    state = DeviceState(status={}, anchors=[])
    for line in proc.stdout.splitlines():
        if not line.startswith("@"):
            continue
        item = json.loads(line[1:])
        if "status" in item:
            state.status = item["status"]
            state.anchors = item["anchors"]
        elif "response" in item:
            state.responses.append(item["response"])
    return state
