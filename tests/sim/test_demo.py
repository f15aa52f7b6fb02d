"""`make demo` end to end: the demo's main in a temporary folder, with the real firmware,
a real `deskpulse serve` and real SQLite. The database must hold exactly what the demo's
own scripts told the kiosks, the WiFi kiosks' answers at their scripted times, and the
report must show the alert the bad stretch asked for."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from deskpulse.reports import alerts
from deskpulse.reports import html as report_html
from deskpulse.sim import demo
from deskpulse.store import open_store


def scripted_ratings(*scripts: Path) -> list[int]:
    """The faces the scripts tap, in order: one stored response per `rate` line."""
    ratings = []
    for script in scripts:
        for line in script.read_text().splitlines():
            words = line.split("#", 1)[0].split()
            if words[:1] == ["rate"]:
                ratings.append(int(words[1]))
    return ratings


@pytest.mark.timeout(400)
@pytest.mark.slow
def test_demo_stores_every_scripted_answer_and_reports_the_bad_stretch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    state = tmp_path / "demo"
    assert demo.main(state) == 0
    out = capsys.readouterr().out

    scripts = {demo.USB_DEVICE: [state / name for name in demo.USB_SCRIPTS]}
    scripts.update({k.device_id: [state / k.script_name] for k in demo.WIFI_KIOSKS})
    with open_store(state / demo.DATABASE_NAME) as conn:
        stored = {device: conn.responses_of(device) for device in scripts}
        found = alerts.find_alerts(conn)
        last_push = {k.device_id: conn.latest_sync(k.device_id) for k in demo.WIFI_KIOSKS}
        known = {d.device_id for d in conn.devices()}

    assert known == set(scripts)
    for device, files in scripts.items():
        ratings = scripted_ratings(*files)
        assert ratings, f"{device}: no customers in its scripts"
        rows = stored[device]
        assert [r["seq"] for r in rows] == list(range(1, len(ratings) + 1)), device
        assert [r["rating"] for r in rows] == ratings, device

    # Pushed after closing, so each WiFi kiosk's answers keep their scripted day.
    for kiosk in demo.WIFI_KIOSKS:
        zone = ZoneInfo(kiosk.time_zone)
        days = {datetime.fromtimestamp(r["wall"], zone).date().isoformat()
                if r["wall"] is not None else None for r in stored[kiosk.device_id]}
        assert days == {demo.WIFI_DAY}, kiosk.device_id

    bad = {k.device_id for k in demo.WIFI_KIOSKS if k.bad_stretch_at is not None}
    assert bad and bad <= {a["device_id"] for a in found}
    assert all(a["responses"] >= alerts.DEFAULT_MINIMUM for a in found)

    # The kiosk whose WiFi went down failed at least once, then got through.
    for kiosk in demo.WIFI_KIOSKS:
        record = last_push[kiosk.device_id]
        assert record is not None and record.transport == "wifi"
        failures = record.status["push"]["failures_total"]
        assert (failures >= 1) if kiosk.outage else (failures == 0), kiosk.device_id

    html = (state / demo.REPORT_NAME).read_text(encoding="utf-8")
    for chart in report_html.CHART_IDS:  # drawn, not the "no data" placeholder
        assert f'<figure class="chart" id="{chart}"><h3>' in html
        drawn = html.split(f'id="{chart}"', 1)[1].split("</figure>", 1)[0]
        assert "<svg" in drawn, chart
    # The dashboard of the running server, as each account sees it over HTTP.
    paris = next(k.device_id for k in demo.WIFI_KIOSKS if k.location == "Paris")
    manager_line = next(line for line in out.splitlines() if "paris-manager sees" in line)
    assert manager_line.endswith(f"{len(stored[paris]):,} responses from {paris}")
    assert f"paris-manager asking for {demo.STORES['New York']}: 404" in out
    owner_line = next(line for line in out.splitlines() if "owner sees" in line)
    assert all(device in owner_line for device in scripts)
    assert str(state / demo.REPORT_NAME) in out
    assert "next, try:" in out
