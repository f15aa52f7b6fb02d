"""Device health on the command line: `deskpulse devices` shows each kiosk's contacts,
clock, config and refused pushes on one line; `deskpulse alerts --health` adds a section
of health alerts (and a "health" list in JSON), the default output staying as it was."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts
from deskpulse.store.health import RefusalCount, hour_of


@pytest.fixture
def db(tmp_path: Path) -> str:
    path = tmp_path / "deskpulse.db"
    now = int(time.time())
    with open_store(path) as store:
        store.add_site("acme")
        store.add_site("acme/lyon", "store")
        store.add_site("acme/paris", "store")
        store.set_key("k1", bytes(32), replace=False,
                      facts=DeviceFacts("k1", "Front desk", None, None))
        store.assign_kiosk("k1", "acme/lyon")
        status = {"boot": 1, "config_version": 2,
                  "log": {"fs_fill": 0.93, "dropped": 0, "unacked": 0},
                  "clock": {"known": True, "wall": now - 60 + 4}}
        store.store_batch("k1", [], [], status, "wifi", now=now - 60)
        store.record_refusals([RefusalCount("k1", "signature", hour_of(now), 3, now - 30,
                                            "the signature does not match")], now=now)
    return str(path)


def test_devices_shows_the_health_line(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["devices", "--db", db]) == 0
    out = capsys.readouterr().out
    (line,) = [text for text in out.splitlines() if "last push" in text]
    assert "last USB sync never" in line and "clock +4 s" in line
    assert "config 2" in line and "refused in 24 h: 3 wrong key" in line


def test_alerts_health_adds_a_section_and_the_default_stays(
        db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["alerts", "--db", db]) == 0
    assert capsys.readouterr().out.strip() == "no alerts in this selection"
    assert cli.main(["alerts", "--db", db, "--health"]) == 0
    section = capsys.readouterr().out.split("device health:\n")[1].splitlines()
    assert [line.split()[:2] for line in section] == [["acme/lyon", "flash"],
                                                      ["acme/lyon", "refused"]]
    assert "Front desk (k1): flash 93% full" in section[0]
    assert cli.main(["alerts", "--db", db, "--health", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [a["key"] for a in report["health"]] == ["flash:k1", "refused:k1:signature"]
    assert cli.main(["alerts", "--db", db, "--format", "json"]) == 0
    assert "health" not in json.loads(capsys.readouterr().out)
    assert cli.main(["alerts", "--db", db, "--health", "--site", "acme/paris"]) == 0
    assert "no kiosk needs attention" in capsys.readouterr().out
