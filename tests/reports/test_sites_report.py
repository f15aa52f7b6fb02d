"""`report --site` and `alerts --site`: any node of the tree, with the level below it
ranked; a site's figures are those of its kiosks summed, in the zone each kiosk inherits."""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_report import STATUS, resp, utc

from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.reports import alerts as alerts_module
from deskpulse.reports import figures as report
from deskpulse.store import open_store
from deskpulse.store.base import Store

# acme (Europe/Paris)
#   north (region): lyon-1 (k1, k2; k2's own zone America/New_York), paris-1 (k3)
#   south (region, Europe/Berlin): nice-1 (k4)
#   outlet (a store of the organisation itself): no kiosk
# k5 is in no store. Each kiosk has random answers over three days of June 2026.
PLACES = {"k1": "acme/north/lyon-1", "k2": "acme/north/lyon-1", "k3": "acme/north/paris-1",
          "k4": "acme/south/nice-1", "k5": None}
FIGURES = ("responses", "csat", "mean_rating", "told_next_rate", "csat_told",
           "csat_not_told", "time_unknown")
"""The figures of a ranked row, as report.build_report gives them for the whole."""


@pytest.fixture(autouse=True)
def host_in_utc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "UTC")


@pytest.fixture
def path(db_target: str) -> str:
    """The chain above, on each engine in turn."""
    rng = random.Random(16)
    with open_store(db_target) as store:
        store.add_site("acme", time_zone="Europe/Paris")
        store.add_site("acme/north")
        store.add_site("acme/south", time_zone="Europe/Berlin")
        for path in ("acme/north/lyon-1", "acme/north/paris-1", "acme/south/nice-1"):
            store.add_site(path)
        store.add_site("acme/outlet", "store")
        for device_id, place in PLACES.items():
            start = utc("2026-06-01T06:00")
            answers = [resp(seq, start + rng.randrange(3 * 86400), rng.randint(1, 5), 5,
                            rng.choice(("yes", "no", "no_answer")))
                       for seq in range(1, 41)]
            answers.append(resp(41, None, 3, 5, "no", boot=2))  # its time unknown
            store.store_batch(device_id, answers, [], STATUS, "serial")
            store.assign_kiosk(device_id, place)
        store.describe_device("k2", time_zone="America/New_York")
    return db_target


@pytest.fixture
def store(path: str) -> Iterator[Store]:
    with open_store(path) as opened:
        yield opened


def _kiosk_sum(rep: dict[str, Any], node: str) -> dict[str, int]:
    """responses, top-half answers and yes/no answers of the kiosks under `node`, from the
    per-kiosk rows of the same report."""
    rows = [d for d in rep["devices"] if d["site"] and (d["site"] + "/").startswith(node + "/")]
    return {"responses": sum(d["responses"] for d in rows),
            "top": sum(round((d["csat"] or 0) * d["responses"]) for d in rows),
            "time_unknown": sum(d["time_unknown"] for d in rows)}


@pytest.mark.parametrize("since", [None, "2026-06-02T10:30"])
def test_an_organisation_ranks_the_sites_below_it_as_the_sums_of_their_kiosks(
        store: Store, since: str | None) -> None:
    rep = report.build_report(store, site="acme", since=since)
    assert rep["filters"]["site"] == "acme"
    assert {row["site"]: row["kind"] for row in rep["sites"]} == {
        "acme/north": "region", "acme/south": "region", "acme/outlet": "store"}
    assert {d["device_id"] for d in rep["devices"]} == {"k1", "k2", "k3", "k4"}  # not k5
    csats = [row["csat"] for row in rep["sites"] if row["csat"] is not None]
    assert csats == sorted(csats, reverse=True)  # ranked
    for row in rep["sites"]:
        summed = _kiosk_sum(rep, row["site"])
        assert row["responses"] == summed["responses"]
        assert row["time_unknown"] == summed["time_unknown"]
        if row["responses"]:
            assert round(row["csat"] * row["responses"]) == summed["top"]
        # The same as that site's own report.
        alone = report.build_report(store, site=row["site"], since=since)
        assert {k: row[k] for k in FIGURES} == {
            "responses": alone["responses"], "csat": alone["csat"],
            "mean_rating": alone["mean_rating"]["normalised"],
            "told_next_rate": alone["told_next_rate"],
            "csat_told": alone["csat_told"]["csat"],
            "csat_not_told": alone["csat_not_told"]["csat"],
            "time_unknown": alone["time_unknown"]}
    assert sum(row["responses"] for row in rep["sites"]) == rep["responses"] > 0
    outlet = next(row for row in rep["sites"] if row["site"] == "acme/outlet")
    assert outlet["responses"] == 0 and outlet["csat"] is None
    # The plain scan of the responses agrees, site by site.
    raw = report.build_report_raw(store, site="acme", since=since)
    assert raw["sites"] == rep["sites"] and raw["heatmap"] == rep["heatmap"]


def test_a_region_ranks_its_stores_and_a_store_its_kiosks(store: Store) -> None:
    region = report.build_report(store, site="acme/north")
    assert {row["site"] for row in region["sites"]} == {"acme/north/lyon-1",
                                                        "acme/north/paris-1"}
    shop = report.build_report(store, site="acme/north/lyon-1")
    assert shop["sites"] == []
    assert sorted(d["device_id"] for d in shop["devices"]) == ["k1", "k2"]
    csats = [d["csat"] for d in shop["devices"]]
    assert csats == sorted(csats, reverse=True)  # ranked
    lyon = next(row for row in region["sites"] if row["site"] == "acme/north/lyon-1")
    assert lyon["responses"] == shop["responses"] == sum(
        d["responses"] for d in shop["devices"])


def test_kiosks_are_placed_in_the_zone_they_inherit(store: Store) -> None:
    zones = {d["device_id"]: d["time_zone"] for d in report.build_report(store)["devices"]}
    assert zones == {"k1": "Europe/Paris", "k2": "America/New_York", "k3": "Europe/Paris",
                     "k4": "Europe/Berlin", "k5": "UTC"}
    # k3's local hours are Paris hours (CEST, +2): its heat map is the UTC one moved by 2.
    local = report.build_report(store, device="k3")["heatmap"]["responses"]
    utc_hours = [0] * 24
    for answer in store.responses_of("k3"):
        if answer["wall"] is not None:
            utc_hours[answer["wall"] % 86400 // 3600] += 1
    by_hour = [sum(row[h] for row in local) for h in range(24)]
    assert by_hour == [utc_hours[(h - 2) % 24] for h in range(24)]
    # Clearing acme's zone is seen at the next report: k3's rollups are recounted in the
    # host's zone.
    store.set_site("acme", time_zone="")
    assert {d["device_id"]: d["time_zone"] for d in report.build_report(store)["devices"]}[
        "k3"] == "UTC"
    after = report.build_report(store, device="k3")["heatmap"]["responses"]
    assert [sum(row[h] for row in after) for h in range(24)] == utc_hours
    assert report.build_report(store, device="k3")["time_unknown"] == 1


def test_an_unknown_site_is_a_one_line_refusal(store: Store) -> None:
    for build in (report.build_report, alerts_module.find_alerts):
        with pytest.raises(DeskPulseError, match="no site 'acme/west'") as refused:
            build(store, site="acme/west")
        assert "\n" not in str(refused.value)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_site_in_every_format(path: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    db = ("--db", path)
    code, out, _ = _run(capsys, "report", *db, "--site", "acme")
    assert code == 0 and "Sites of acme" in out and "Kiosks in acme" in out
    assert "k4 in nice-1" in out
    assert "acme/outlet" in out and "site acme" in out
    code, out, _ = _run(capsys, "report", *db, "--site", "acme/north")
    assert "Stores of acme/north" in out and "acme/north/paris-1" in out
    code, out, _ = _run(capsys, "report", *db, "--site", "acme/north", "--format", "json")
    rep = json.loads(out)
    with open_store(path) as store:
        expected = report.build_report(store, site="acme/north")["sites"]
    assert [row["site"] for row in rep["sites"]] == [row["site"] for row in expected]
    code, out, _ = _run(capsys, "report", *db, "--site", "acme/south", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {(r["device_id"], r["site"]) for r in rows} == {("k4", "acme/south/nice-1")}
    assert len(rows) == 41  # its time-unknown answer too, without --since
    page = tmp_path / "acme.html"
    code, _, _ = _run(capsys, "report", *db, "--site", "acme", "--format", "html",
                      "-o", str(page))
    html = page.read_text()
    assert code == 0 and 'id="sites-table"' in html and "Sites of acme" in html
    assert "<th>Store</th>" in html and "<td>acme/south/nice-1</td>" in html
    code, _, err = _run(capsys, "report", *db, "--site", "nowhere")
    assert code == 2 and err.startswith("deskpulse: no site 'nowhere'") and err.count("\n") == 1


def test_alerts_site_ranks_the_level_below_by_alerts(path: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    with open_store(path) as store:
        burst = utc("2026-06-05T09:00")
        store.store_batch("k3", [resp(100 + i, burst + 60 * i, 1, 5, "no") for i in range(6)],
                          [], STATUS, "serial")
        found = alerts_module.find_alerts(store, site="acme", since="2026-06-05")
        assert {a["device_id"] for a in found} == {"k3"}
        assert found[0]["site"] == "acme/north/paris-1"
        ranking = alerts_module.rank_below(store, found, "acme")
        assert ranking[0] == {"site": "acme/north", "kind": "region", "alerts": 1,
                              "responses": found[0]["responses"],
                              "negative": found[0]["negative"]}
        assert {r["site"] for r in ranking[1:]} == {"acme/south", "acme/outlet"}
        assert all(r["alerts"] == 0 for r in ranking[1:])
        in_store = alerts_module.rank_below(store, found, "acme/north/paris-1")
        assert in_store == [{"device_id": "k3", "alerts": 1,
                             "responses": found[0]["responses"],
                             "negative": found[0]["negative"]}]
        assert alerts_module.find_alerts(store, site="acme/south", since="2026-06-05") == []
    code, out, _ = _run(capsys, "alerts", "--db", path, "--site", "acme", "--since",
                        "2026-06-05", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["filters"]["site"] == "acme"
    assert doc["ranking"] == ranking and [a["device_id"] for a in doc["alerts"]] == ["k3"]
    code, out, _ = _run(capsys, "alerts", "--db", path, "--site", "acme", "--since",
                        "2026-06-05")
    assert out.startswith("below acme, most alerts first:\nacme/north: 1 alert, 6 negative "
                          "of 6 responses in them\nacme/")
    assert "acme/south: no alerts" in out and "acme/outlet: no alerts" in out
