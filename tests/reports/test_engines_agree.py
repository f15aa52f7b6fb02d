"""SQLite and PostgreSQL give the same reports and alerts on the same data: the figures of
`deskpulse report --format json` and `--format csv`, and `deskpulse alerts --format json`,
byte for byte, over a dataset with several devices and zones, anchors, clock corrections,
responses without a time, retried batches and a burst of unhappy customers."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from test_report import random_dataset, resp, store, utc

from deskpulse import cli
from deskpulse.store import open_store

MADE_AT = 1_796_000_000  # 2026-11-30T00:53:20Z


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")
    # Each report says when it was made: the same moment for both engines, so that their
    # outputs can be compared byte for byte (the reproducible-builds convention).
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(MADE_AT))


def fill(target: str) -> None:
    with open_store(target) as conn:
        random_dataset(conn, random.Random(16), devices=6, per_device=150)
        # An alert for sure: six worst faces within minutes, in Berlin.
        start = utc("2026-01-15T08:00")
        store(conn, "burst", [resp(seq, start + seq * 60, 1, 5, "no") for seq in range(1, 7)])
        conn.describe_device("burst", time_zone="Europe/Berlin", location="A")
        # A chain over some of them: a site's kiosks are read in one statement.
        for path in ("acme", "acme/north", "acme/north/lyon", "acme/north/nice"):
            conn.add_site(path)
        for device_id, path in (("burst", "acme/north/lyon"), ("d0", "acme/north/lyon"),
                                ("d2", "acme/north/nice"), ("d3", "acme/north/nice")):
            conn.assign_kiosk(device_id, path)


def outputs(target: str, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    commands = {
        "report": ["report", "--format", "json"],
        "report flagged": ["report", "--format", "json", "--include-flagged"],
        "report range": ["report", "--format", "json", "--since", "2025-10-03T05:30",
                         "--until", "2025-12-01"],
        "report location": ["report", "--format", "json", "--location", "A"],
        "report device": ["report", "--format", "json", "--device", "d2", "--since",
                          "2025-11-02T13:00Z", "--until", "2025-11-03T01:00Z"],
        "csv": ["report", "--format", "csv", "--include-flagged"],
        "alerts": ["alerts", "--format", "json", "--window", "1h", "--min", "3",
                   "--negative", "0.6"],
        "alerts site": ["alerts", "--format", "json", "--site", "acme", "--window", "1h",
                        "--min", "3", "--negative", "0.6"],
        "alerts store": ["alerts", "--format", "json", "--site", "acme/north/nice",
                         "--since", "2025-10-01", "--until", "2026-02-01",
                         "--include-flagged", "--window", "2h", "--min", "2"],
        "alerts range": ["alerts", "--format", "json", "--since", "2025-10-01",
                         "--until", "2026-02-01", "--include-flagged"],
    }
    out = {}
    for name, args in commands.items():
        assert cli.main([*args, "--db", target]) == 0, name
        out[name] = capsys.readouterr().out
    return out


def test_both_engines_give_the_same_reports_and_alerts(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    lite = str(tmp_path / "deskpulse.db")
    fill(lite)
    fill(pg_url)
    on_sqlite, on_postgres = outputs(lite, capsys), outputs(pg_url, capsys)
    assert on_postgres == on_sqlite
    # The data exercises what it should: unknown times, corrections, an alert.
    whole = json.loads(on_sqlite["report"])
    assert whole["responses"] > 500 and whole["time_unknown"] > 0
    assert whole["clock_corrected"]["responses"] > 0
    assert len({d["time_zone"] for d in whole["devices"]}) >= 3
    assert json.loads(on_sqlite["alerts"])["alerts"]
    for selection in ("alerts site", "alerts store"):  # several kiosks with alerts
        assert len({a["device_id"] for a in json.loads(on_sqlite[selection])["alerts"]}) >= 2
    assert whole["generated_at"] == "2026-11-30T00:53:20Z"
