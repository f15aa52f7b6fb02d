"""Config over the air, device side: firmware/kiosk/ota.py (through kiosk/push.py) on the
real MicroPython interpreter, pushing to and fetching from tests/pushserver.py, which
signs with host/deskpulse/protocol/signing.py. The staged config is installed by
kiosk.config.install, the serial upload's path; a power cut at every flash operation of
the apply leaves the old config or the new one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import BOARDS, mpy_json
from deskpulse.store import open_store
from pushserver import FORGE, TAMPER, UNSIGNED, PushServer

BOARD = BOARDS / "esp32-devkitc-ssd1680.json"
DEVICE = "front-1"
KEY = bytes(range(100, 132))

# A kiosk on the simulated hardware with the given config; each step is one push (with
# the fetch it leads to), after which its state is emitted; then the config file is read
# again from the flash as a boot would.
DRIVE = """
import asyncio, sys
from harness import emit, kiosk_from_plan
from kiosk import config as cfg

plan, k = kiosk_from_plan(sys.argv[-1])
p = k.push
p.step_timeout_ms = p.answer_timeout_ms = 3000

async def main():
    for step in range(plan["pushes"]):
        if step < plan["fed"]:
            k.log.append(1, 4, 1, 20, 0, k.boot, 10 + step, 0, 0)
        due = p.due()
        await p.push_once()
        if p.desired_config is not None:
            await p.fetch_config()
        emit({"version": k.config["version"], "question": cfg.texts(k.config)["question"],
              "ota": p.status()["config"], "nonce": p.status()["nonce"],
              "push_error": p.last_error, "due": due})

asyncio.run(main())
saved, problems = cfg.load(k.config_path)
emit({"file": saved, "problems": problems, "status": k.status()})
k.close()
"""


def kiosk_config(url: str) -> dict[str, Any]:
    return {"version": 3, "device_id": DEVICE,
            "sync": {"server_url": url, "device_key": KEY.hex(), "wifi_ssid": "store",
                     "wifi_password": "pw"}}


def served(version: int, question: str) -> dict[str, Any]:
    """A desired config as the server sends it: no identity, no network settings."""
    return {"version": version, "texts": {"en": {"question": question}},
            "sync": {"push_interval_s": 60}}


def drive(tmp_path: Path, config: dict[str, Any], pushes: int, fed: int = 99, wall: int = 0
          ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """wall: the kiosk's clock, set first (0: unknown)."""
    (tmp_path / "state").mkdir(exist_ok=True)
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"board": str(BOARD), "state": str(tmp_path / "state"),
                                "config": config, "pushes": pushes, "fed": fed,
                                "wall": wall}))
    out = mpy_json(DRIVE, str(path), heap="2M", timeout=120)
    return out[:-1], out[-1]


@pytest.fixture
def server(tmp_path: Path):
    with PushServer(tmp_path / "host.db", {DEVICE: KEY}) as srv:
        yield srv


def test_a_named_version_is_fetched_verified_and_applied_keeping_the_network(
        tmp_path: Path, server: PushServer) -> None:
    server.configs[DEVICE] = served(7, "Were we quick enough?")
    steps, end = drive(tmp_path, kiosk_config(server.url), pushes=3, fed=1)
    assert steps[0]["version"] == 7 and steps[0]["question"] == "Were we quick enough?"
    assert steps[0]["ota"] == {"desired": 7, "fetches": 1, "applied": 1, "rejected": None,
                               "last_error": None}
    # With no record waiting, a push reports the version at once; its answer names 7
    # again and nothing is fetched. Then nothing is due.
    assert steps[1]["due"] and steps[1]["ota"]["fetches"] == 1
    assert not steps[2]["due"]
    assert server.seen[2].seqs == [] and server.seen[2].code == 200
    with open_store(tmp_path / "host.db") as store:
        latest = store.latest_sync(DEVICE)
    assert latest is not None and latest.status["config_version"] == 7
    # Push, fetch, push: one nonce sequence.
    assert [s.nonce for s in server.seen[:3]] == ["1.1", "1.2", "1.3"]
    # On the flash: the server's config, with the kiosk's own identity and network.
    assert end["problems"] == []
    saved = end["file"]
    assert saved["version"] == 7 and saved["sync"]["push_interval_s"] == 60
    assert saved["device_id"] == DEVICE
    assert saved["sync"]["server_url"] == server.url and saved["sync"]["wifi_ssid"] == "store"
    assert saved["sync"]["device_key"] == KEY.hex()
    assert end["status"]["config_version"] == 7
    assert not (tmp_path / "state" / "config.json.new").exists()


@pytest.mark.parametrize("behaviour", [FORGE, UNSIGNED, TAMPER])
def test_an_answer_that_does_not_verify_changes_nothing(
        tmp_path: Path, server: PushServer, behaviour: str) -> None:
    server.configs[DEVICE] = served(7, "Were we quick enough?")
    from pushserver import OK
    server.queue.extend([OK, behaviour])  # the push, then the fetch
    steps, end = drive(tmp_path, kiosk_config(server.url), pushes=2)
    assert steps[0]["version"] == 3 and steps[0]["question"] == "How was your visit?"
    assert "signature" in steps[0]["ota"]["last_error"]
    assert steps[0]["ota"]["rejected"] is None
    # The next push names the version again: fetched again, this time whole.
    assert steps[1]["version"] == 7 and steps[1]["ota"]["fetches"] == 2
    assert end["file"]["version"] == 7


def test_a_config_the_kiosk_refuses_is_reported_and_not_fetched_again(
        tmp_path: Path, server: PushServer) -> None:
    bad = served(8, "x" * 200)
    server.configs[DEVICE] = bad
    steps, end = drive(tmp_path, kiosk_config(server.url), pushes=3)
    assert [s["version"] for s in steps] == [3, 3, 3]
    assert steps[0]["ota"]["rejected"][0] == 8
    assert "question" in steps[0]["ota"]["rejected"][1]
    assert [s["ota"]["fetches"] for s in steps] == [1, 1, 1]  # no loop
    fetches = [s for s in server.seen if s.code == 200 and not s.seqs]
    assert len(fetches) == 1
    assert end["file"]["version"] == 3 and end["problems"] == []
    assert end["status"]["push"]["config"]["rejected"][0] == 8


def test_a_config_too_big_with_the_kiosks_own_settings_is_refused_whole(
        tmp_path: Path, server: PushServer) -> None:
    """The answer fits 8 KB, but not once the kiosk's own network settings are put in:
    written anyway, the next boot would refuse the file and run on the defaults."""
    texts = {f"l{i:02d}": {key: "x" * 102 for key in ("question", "follow_up", "yes", "no",
                                                     "thanks", "sorry", "closed")}
             for i in range(10)}
    served_config = {"version": 9, "texts": texts}
    assert len(json.dumps(served_config, separators=(",", ":"))) < 8192
    kiosk = kiosk_config(server.url)
    kiosk["sync"]["wifi_password"] = "p" * 60
    server.configs[DEVICE] = served_config
    steps, end = drive(tmp_path, kiosk, pushes=1)
    rejected = steps[0]["ota"]["rejected"]
    assert rejected is not None, steps
    assert rejected[0] == 9 and "over the 8192 limit" in rejected[1]
    assert end["file"]["version"] == 3 and end["problems"] == []
    assert not (tmp_path / "state" / "config.json.new").exists()
