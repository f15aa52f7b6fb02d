"""A kiosk's time zone as a POSIX TZ rule: derived from the host's tzdata, checked against
zoneinfo, and put in every config the host writes or checks that names a zone."""

from __future__ import annotations

import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.device import zone_rule
from deskpulse.device.config_check import Runtime, check_config
from deskpulse.errors import DeskPulseError

NOW = datetime(2026, 12, 1, tzinfo=UTC).timestamp()
PARIS = "CET-1CEST,M3.5.0,M10.5.0/3"


@pytest.mark.parametrize(("name", "rule"), [
    ("Europe/Paris", PARIS),
    ("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3"),
    ("America/New_York", "EST5EDT,M3.2.0,M11.1.0"),
    ("Asia/Kolkata", "IST-5:30"),
    ("UTC", "UTC0"),
])
def test_the_rule_is_the_footer_of_the_zones_tzif_file(name: str, rule: str) -> None:
    assert zone_rule.posix_rule(name, NOW) == rule


def test_a_footer_is_found_after_both_data_blocks() -> None:
    # A file of one zone type and one transition, written field by field (RFC 8536).
    def block(time_size: int) -> bytes:
        counts = struct.pack(">6l", 0, 0, 0, 1, 1, 4)  # isut, isstd, leap, time, type, char
        return (b"TZif2" + bytes(15) + counts + (1).to_bytes(time_size, "big", signed=True)
                + b"\x00" + struct.pack(">lBB", 3600, 0, 0) + b"CET\x00")
    assert zone_rule.footer(block(4) + block(8) + b"\n<+01>-1\n") == "<+01>-1"
    version_1 = b"TZif\x00" + bytes(15) + struct.pack(">6l", 0, 0, 0, 0, 1, 4) + bytes(10)
    assert zone_rule.footer(version_1) == ""
    with pytest.raises(ValueError, match="not a TZif file"):
        zone_rule.footer(b"#!/bin/sh\n" * 10)
    with pytest.raises(ValueError, match="no footer"):
        zone_rule.footer(block(4) + block(8))


@pytest.mark.parametrize("name", ["Mars/Olympus", "Europe/paris ", "../../etc/passwd",
                                  "/etc/localtime", ""])
def test_a_name_the_host_cannot_resolve_is_a_one_line_error(name: str) -> None:
    with pytest.raises(DeskPulseError, match="unknown time zone") as caught:
        zone_rule.posix_rule(name, NOW)
    assert "\n" not in str(caught.value)


def test_a_zone_whose_coming_changes_no_rule_expresses_is_refused() -> None:
    # Morocco's clocks go back an hour for Ramadan: listed dates, not a yearly rule.
    with pytest.raises(DeskPulseError, match="no POSIX rule can express") as caught:
        zone_rule.posix_rule("Africa/Casablanca", NOW)
    assert "2027-02" in str(caught.value) and "\n" not in str(caught.value)


def test_a_config_naming_a_zone_gets_its_rule() -> None:
    raw = {"device_id": "a", "time_zone": "Europe/Paris", "tz_rule": "UTC0"}
    assert zone_rule.with_zone_rule(raw, NOW) == {**raw, "tz_rule": PARIS}  # the name wins
    for unchanged in ({"device_id": "a"}, {"tz_rule": "<+0530>-5:30"}, {"time_zone": ""},
                      {"time_zone": 5}, [1, 2]):
        assert zone_rule.with_zone_rule(unchanged, NOW) == unchanged


@pytest.mark.parametrize("runtime", ["micropython", "cpython"])
def test_sync_config_sends_the_zones_rule(tmp_path: Path, runtime: Runtime) -> None:
    path = tmp_path / "config.json"
    written = {"device_id": "a", "time_zone": "Australia/Sydney",
               "opening_hours": {"fri": ["17:00-02:00"]}}
    path.write_text(json.dumps(written))
    checked = check_config(path, runtime)
    sent = json.loads(checked.data)
    assert sent == {**written, "tz_rule": "AEST-10AEDT,M10.1.0,M4.1.0/3"}
    assert json.loads(path.read_text()) == written  # the file is left as it was
    path.write_text(json.dumps({"device_id": "a", "time_zone": "Europe/Atlantis"}))
    with pytest.raises(DeskPulseError, match="unknown time zone 'Europe/Atlantis'"):
        check_config(path, runtime)


def test_devices_add_writes_the_rule_and_refuses_what_it_cannot_follow(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = str(tmp_path / "d.db")
    out = tmp_path / "k.json"
    code = cli.main(["devices", "add", "k", "--server", "http://10.0.0.2:8080", "--db", db,
                     "--time-zone", "America/New_York", "-o", str(out)])
    assert code == 0
    config = json.loads(out.read_text())
    assert (config["time_zone"], config["tz_rule"]) == ("America/New_York",
                                                        "EST5EDT,M3.2.0,M11.1.0")
    check_config(out, "cpython")  # what devices add writes, the firmware takes
    capsys.readouterr()
    refused = tmp_path / "m.json"
    code = cli.main(["devices", "add", "m", "--server", "http://10.0.0.2:8080", "--db", db,
                     "--time-zone", "Africa/Casablanca", "-o", str(refused)])
    err = capsys.readouterr().err
    assert code != 0 and not refused.exists()
    assert err.startswith("deskpulse: time zone 'Africa/Casablanca' changes its clocks")
    assert err.count("\n") == 1
