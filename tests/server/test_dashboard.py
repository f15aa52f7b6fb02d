"""The dashboard (docs/dashboard.md, "Dashboard"): its figures are `deskpulse report`'s
for the same selection (JSON and CSV compared with the command's own output), the
overview's are build_report's over today and this week, the pages escape what people
typed, and a push through the real push route reaches an open /events stream.

The pages run in-process (TestClient); the live stream against `deskpulse serve` itself,
since an event stream never ends and needs a real connection.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import re
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import dashboard_chain as chain
from deskpulse import cli
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports import alerts, figures
from deskpulse.reports.health import health_alerts
from deskpulse.server import dashboard_data, live, pages
from deskpulse.server.app import create_app
from deskpulse.sim.push_client import push_batch
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store
from deskpulse.store.health import kiosk_health
from deskpulse.timezones import host_time_zone, zone_of

PATIENCE = 60.0  # a bound for the event to arrive; never asserted as a duration


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    folder = tmp_path_factory.mktemp("chain")
    db = folder / "chain.db"
    keys = chain.build(db, folder)
    return db, keys


@pytest.fixture(scope="module")
def client(chain_db: tuple[Path, dict[str, bytes]]) -> Iterator[TestClient]:
    with TestClient(create_app(chain_db[0], clock=lambda: chain.NOW)) as test_client:
        test_client.cookies.set(*chain.session_of(chain_db[0], "root"))  # an admin
        yield test_client


def cli_report(db: Path, tmp_path: Path, fmt: str, *options: str) -> bytes:
    """What `deskpulse report` writes, made at NOW (the server's clock of these tests)."""
    out = tmp_path / f"report.{fmt}"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SOURCE_DATE_EPOCH", str(chain.NOW))
        assert cli.main(["report", "--db", str(db), "--format", fmt, "-o", str(out),
                         *options]) == 0
    return out.read_bytes()


SELECTIONS = [
    ({}, []),
    ({"site": "acme/north"}, ["--site", "acme/north"]),
    ({"site": "acme/north/lyon", "since": "2026-10-20", "until": "2026-10-27T12:00"},
     ["--site", "acme/north/lyon", "--since", "2026-10-20", "--until", "2026-10-27T12:00"]),
    ({"device": "nice-1", "include_flagged": "true"},
     ["--device", "nice-1", "--include-flagged"]),
]


@pytest.mark.parametrize(("query", "options"), SELECTIONS)
def test_the_report_api_and_csv_are_what_deskpulse_report_prints(
        client: TestClient, chain_db: tuple[Path, dict[str, bytes]], tmp_path: Path,
        query: dict[str, str], options: list[str]) -> None:
    db = chain_db[0]
    api = client.get("/api/report", params=query)
    assert api.status_code == 200
    expected = json.loads(cli_report(db, tmp_path, "json", *options))
    assert expected["responses"] > 0 and expected["generated_at"] is not None
    assert json.loads(api.content) == expected
    csv = client.get("/report.csv", params=query)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert csv.content == cli_report(db, tmp_path, "csv", *options)
    assert csv.content.count(b"\n") > 1


def test_the_report_page_shows_build_reports_figures(
        client: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    page = client.get("/report", params={"site": "acme/north"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    with open_store(chain_db[0]) as store:
        rep = figures.build_report(store, site="acme/north")
    assert rep["responses"] >= 1000  # so that the separator shows
    text = page.text
    assert f'data-testid="report-responses">{rep["responses"]:,}<' in text
    assert f'data-testid="report-csat">{100 * rep["csat"]:.1f}%<' in text
    assert f'data-testid="report-told-next">{100 * rep["told_next_rate"]:.1f}%<' in text
    for entry in rep["devices"]:
        assert f">{entry['device_id']}</td>" in text
    assert "nice-1" not in text.split('data-testid="report-figures"')[1]  # not in the north
    covered = rep["covered"]
    assert f"Covers {covered['first_day']} to {covered['last_day']}" in text
    assert text.count('data-testid="report-trend"') == 1
    # The filters keep what was chosen.
    assert '<option value="acme/north" selected>' in text


def test_what_people_typed_is_escaped(client: TestClient) -> None:
    for path in ("/devices", "/report", "/", "/alerts"):
        text = client.get(path).text
        assert "<front>" not in text, path
    assert "Lyon &lt;front&gt; &amp; co" in client.get("/report").text
    store_view = client.get("/report", params={"site": "acme/north/lyon"}).text
    assert "Lyon &lt;front&gt; &amp; co" in store_view


def test_bad_filters_are_a_400_and_unknown_things_a_404(client: TestClient) -> None:
    bad = client.get("/api/report", params={"since": "yesterday"})
    assert bad.status_code == 400 and "not an ISO date" in bad.json()["error"]
    order = client.get("/api/report", params={"since": "2026-10-20", "until": "2026-10-01"})
    assert order.status_code == 400
    for query in ({"device": "no-such-kiosk"}, {"site": "acme/west"}):
        missing = client.get("/api/report", params=query)
        assert missing.status_code in (400, 404), query
    assert client.get("/api/report", params={"device": "no-such-kiosk"}).status_code == 404
    page = client.get("/report", params={"since": "yesterday"})
    assert page.status_code == 400 and 'data-testid="error"' in page.text


def _local_days(store: Any, zone: str, days_back: int, **selection: Any) -> dict[str, Any]:
    """build_report from local midnight `days_back` days before NOW's day to the end of
    that day, in `zone`."""
    today = datetime.fromtimestamp(chain.NOW, zone_of(zone)).date()
    since, until = (int(datetime.combine(day, time(), zone_of(zone)).timestamp())
                    for day in (today - timedelta(days=days_back), today + timedelta(days=1)))
    return figures.build_report(store, since=since, until=until, **selection)


def _figures(rep: dict[str, Any]) -> dict[str, Any]:
    return {k: rep[k] for k in ("responses", "csat", "told_next_rate")}


# NOW is a Wednesday in Paris and New York: the week so far is two days back.
PARIS, NEW_YORK, WEEK = "Europe/Paris", "America/New_York", 2


def test_the_overview_gives_each_site_below_today_and_this_week_in_its_own_zone(
        client: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    data = client.get("/api/overview").json()
    assert [row["key"] for row in data["rows"]] == ["acme"]  # an admin: the organisations
    with open_store(chain_db[0]) as store:
        last = store.last_syncs()
        # The north follows Paris, the south New York: each kiosk's day is its own.
        north = [_local_days(store, PARIS, back, site="acme/north") for back in (0, WEEK)]
        south = [_local_days(store, NEW_YORK, back, site="acme/south") for back in (0, WEEK)]
        loose = [_local_days(store, host_time_zone(), back, device=chain.LOOSE)
                 for back in (0, WEEK)]
        region = dashboard_data.overview(store, "acme", chain.NOW)
    (acme,) = data["rows"]
    for n, period in enumerate(("today", "week")):
        assert acme[period]["responses"] == north[n]["responses"] + south[n]["responses"]
        assert data["total"][period]["responses"] == (
            acme[period]["responses"] + loose[n]["responses"])
        rows = {row["key"]: row for row in region["rows"]}
        assert rows["acme/north"][period] == _figures(north[n])
        assert rows["acme/south"][period] == _figures(south[n])
    assert 0 < north[0]["responses"] < north[1]["responses"]
    assert acme["last_push"] == max(v for d, v in last.items() if d != chain.LOOSE)
    page = client.get("/").text
    week = data["total"]["week"]["responses"]
    assert f'data-testid="responses-week">{week:,}<' in page
    assert page.count('data-testid="overview-row"') == 1
    assert 'data-live="overview"' in page and "/static/dashboard.js" in page


def test_the_overview_of_a_store_lists_its_kiosks(
        chain_db: tuple[Path, dict[str, bytes]]) -> None:
    with open_store(chain_db[0]) as store:
        data = dashboard_data.overview(store, "acme/north/lyon", chain.NOW)
        today = _local_days(store, PARIS, 0, site="acme/north/lyon")
    assert data["level"] == "kiosks" and [r["key"] for r in data["rows"]] == ["lyon-1", "lyon-2"]
    by_device = {e["device_id"]: e for e in today["devices"]}
    for row in data["rows"]:
        assert row["today"] == _figures(by_device[row["key"]])
    assert data["total"]["today"] == _figures(today)
    assert data["rows"][0]["name"] == chain.NAMES["lyon-1"]


def test_devices_show_each_kiosks_health_with_those_in_alert_first(
        client: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    data = client.get("/api/devices").json()
    with open_store(chain_db[0]) as store:
        health = {k.device_id: k for k in kiosk_health(store, now=chain.NOW)}
        expected = health_alerts(store, now=chain.NOW)
    rows = data["kiosks"]
    assert {r["device_id"] for r in rows} == set(health) == set(chain.KIOSKS)
    for row in rows:  # every field of kiosk_health, as it is
        assert {k: row[k] for k in dataclasses.asdict(health[row["device_id"]])} == (
            dataclasses.asdict(health[row["device_id"]]))
    lyon = next(r for r in rows if r["device_id"] == "lyon-1")
    assert lyon["fill"] == 0.25 and lyon["site"] == "acme/north/lyon"
    assert lyon["clock_offset_s"] == 4 and lyon["last_push"] == chain.NOW - 1200
    # Those with a health alert (here the refused ones) first, each marked.
    in_alert = {a["device_id"] for a in expected}
    assert in_alert == set(chain.REFUSED)
    assert [bool(r["alerts"]) for r in rows] == sorted((bool(r["alerts"]) for r in rows),
                                                       reverse=True)
    assert {r["device_id"] for r in rows if r["alerts"]} == in_alert
    page = client.get("/devices").text
    assert page.count('data-testid="device-row"') == len(rows)
    marked = re.findall(r'data-testid="device-row" data-device="([^"]+)" class="attention"',
                        page)
    assert set(marked) == in_alert
    assert 'data-testid="device-flash"><div>25.0% full' in page


def test_the_devices_page_shows_a_refused_push_and_a_config_behind(
        client: TestClient) -> None:
    page = client.get("/devices").text
    row = page.split(f'data-device="{chain.BEHIND}"')[1].split("</tr>")[0]
    assert ">3 wrong key<" in row  # refused in the last 24 h, by reason
    assert 'data-testid="device-config"><div>1 <span class="flag">wanted 2</span>' in row
    assert 'data-testid="device-alert">refused<' in row
    (behind,) = [r for r in client.get("/api/devices").json()["kiosks"]
                 if r["device_id"] == chain.BEHIND]
    assert (behind["config_running"], behind["config_desired"], behind["config_behind"]) == (
        1, 2, True)
    assert behind["refused"] == {"signature": 3} and behind["notes"] == ["config 1, wanted 2"]
    # Pushes refused under ids of no kiosk: an admin of everything sees them apart.
    unknown = page.split('data-testid="unknown-refused"')[1]
    assert unknown.count('data-testid="unknown-refused-row"') == len(chain.GHOSTS)
    for message in chain.GHOSTS.values():
        assert message in unknown


def test_the_devices_page_reads_no_whole_table_count(
        chain_db: tuple[Path, dict[str, bytes]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Store.devices() counts every kiosk's responses (seconds over 10M): not read here."""
    with open_store(chain_db[0]) as store:
        def refused() -> None:
            raise AssertionError("the devices page read Store.devices()")

        monkeypatch.setattr(store, "devices", refused)
        rows = dashboard_data.devices(store, "acme/north", chain.NOW)["kiosks"]
        with pytest.raises(AssertionError):
            store.devices()
        week = figures.build_period_report(store, chain.NOW, "week", site="acme/north")
    assert {r["device_id"]: r["responses_week"] for r in rows} == {
        e["device_id"]: e["responses"] for e in week["devices"]}
    assert sum(r["responses_week"] for r in rows) > 0


@pytest.fixture(scope="module")
def later(chain_db: tuple[Path, dict[str, bytes]]) -> Iterator[TestClient]:
    """The chain's server at LATER, when lyon-1 and nice-1 have been silent for hours."""
    with TestClient(create_app(chain_db[0], clock=lambda: chain.LATER)) as test_client:
        yield test_client


def _as(client: TestClient, db: Path, name: str) -> TestClient:
    client.cookies.set(*chain.session_of(db, name))
    return client


def test_a_silent_kiosks_alert_shows_for_its_manager_and_not_another_stores(
        later: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    db = chain_db[0]
    for viewer, own, other in (("lyon", "lyon-1", "nice-1"), ("nice", "nice-1", "lyon-1")):
        page = _as(later, db, viewer).get("/alerts").text
        health = page.split('data-testid="health-alerts"')[1].split("</table>")[0]
        silent = [row for row in health.split("<tr")[1:] if 'data-kind="silent"' in row]
        assert len(silent) == 1 and f"<div>{own}<small>" in silent[0], viewer
        assert "no response since" in silent[0]
        assert other not in page, viewer
        found = later.get("/api/alerts").json()
        assert [a["device_id"] for a in found["health"] if a["kind"] == "silent"] == [own]
    # Before the silence (NOW), nobody's kiosk is silent.
    with open_store(db) as store:
        assert not [a for a in health_alerts(store, now=chain.NOW) if a["kind"] == "silent"]


def test_the_overview_counts_the_kiosks_with_a_health_alert_per_site(
        later: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    data = _as(later, chain_db[0], "north").get("/api/overview").json()
    rows = {row["key"]: row for row in data["rows"]}
    # lyon: lyon-1 silent and lyon-2 refused; lille: lille-1 refused.
    assert (rows["acme/north/lyon"]["health_alerts"], rows["acme/north/lyon"]["health_kinds"]
            ) == (2, ["silent", "refused"])
    assert (rows["acme/north/lille"]["health_alerts"], rows["acme/north/lille"]["health_kinds"]
            ) == (1, ["refused"])
    assert data["total"]["health_alerts"] == 3
    page = later.get("/").text
    assert 'data-testid="health-alerts">3<' in page
    lyon = page.split('data-row="acme/north/lyon"')[1].split("</tr>")[0]
    assert 'class="attention"' in lyon and 'data-testid="overview-health">2<' in lyon
    assert "silent, refused" in lyon


def test_alerts_are_find_alerts_of_the_selection(
        client: TestClient, chain_db: tuple[Path, dict[str, bytes]]) -> None:
    answer = client.get("/api/alerts").json()  # the last week by default
    found = answer["alerts"]
    with open_store(chain_db[0]) as store:
        expected = alerts.find_alerts(store, since=chain.NOW - 7 * 86400)
        health = health_alerts(store, now=chain.NOW)
    assert found == expected and any(a["device_id"] == "nice-1" for a in found)
    assert answer["health"] == health and health
    page = client.get("/alerts").text
    assert page.count('data-testid="alert-row"') == len(expected)
    assert page.count('data-testid="health-alert-row"') == len(health)
    assert 'data-testid="alerts-table"' in page and "alerts-earlier" not in page
    # Seen 8 days later, the same alerts are history: listed apart, none current.
    later = pages.alerts(*alerts.current_and_earlier(expected, chain.NOW + 8 * 86400), "")
    assert 'data-testid="alerts-none-current"' in later
    assert later.split('data-testid="alerts-earlier"')[1].count("nice-1") == len(expected)
    north = client.get("/api/alerts", params={"site": "acme/north"}).json()
    assert north["alerts"] == [
        a for a in expected if a["site"] and a["site"].startswith("acme/north/")]
    assert north["health"] == [a for a in health if a["site"].startswith("acme/north/")]
    one = client.get("/api/alerts", params={"device": "lille-1"}).json()["health"]
    assert [a["key"] for a in one] == ["refused:lille-1:signature"]


def test_the_static_files_are_served_from_the_package(client: TestClient) -> None:
    script = client.get("/static/dashboard.js")
    assert script.status_code == 200 and "EventSource" in script.text
    style = client.get("/static/dashboard.css")
    assert style.status_code == 200 and "max-width: 600px" in style.text
    assert client.get("/static/../app.py").status_code == 404


# -- the broadcaster ---------------------------------------------------------------------------


def test_a_burst_of_pushes_is_one_event_per_subscriber_within_its_scope() -> None:
    async def scenario() -> tuple[list[Any], ...]:
        hub = live.Broadcaster(interval_s=0.05)
        hub.places = {"lyon-1": "acme/north/lyon", "nice-1": "acme/south/nice"}
        north, south, everything = (hub.subscribe(s) for s in ("acme/north", "acme/south",
                                                                None))
        for _ in range(100):
            hub.notify(["lyon-1"])
        hub.notify(["nice-1", "loose-1"])
        await asyncio.sleep(0.2)
        got = tuple([json.loads(q.queue.get_nowait() or "null")
                     for _ in range(q.queue.qsize())] for q in (north, south, everything))
        hub.close()
        return got

    north, south, everything = asyncio.run(scenario())
    assert north == [{"devices": ["lyon-1"], "sites": ["acme/north/lyon"]}]
    assert south == [{"devices": ["nice-1"], "sites": ["acme/south/nice"]}]
    assert everything == [{"devices": ["loose-1", "lyon-1", "nice-1"], "sites": ["acme"]}]


def test_a_subscriber_that_stops_reading_is_dropped_and_close_ends_the_rest() -> None:
    async def scenario() -> tuple[bool, bool, int, Any]:
        hub = live.Broadcaster(interval_s=0.01)
        stuck, reading = hub.subscribe(None), hub.subscribe(None)
        for n in range(live.QUEUE_EVENTS + 3):
            hub.notify([f"k{n}"])
            await asyncio.sleep(0.03)
            while not reading.queue.empty():
                reading.queue.get_nowait()
        dropped = stuck not in hub.subscribers
        kept = reading in hub.subscribers
        hub.close()
        return dropped, kept, hub.dropped, await reading.next_event(1)

    dropped, kept, count, last = asyncio.run(scenario())
    assert dropped and kept and count == 1
    assert last is None  # closed: the stream ends


def test_the_poll_announces_other_processes_syncs_once() -> None:
    async def scenario() -> list[Any]:
        marks = [(1, "lyon-1")]

        async def run(fn: Any, *args: Any) -> Any:
            if fn is live.kiosk_places:
                return {"lyon-1": "acme/north/lyon", "nice-1": "acme/south/nice"}
            if fn is live.newest_mark:
                return marks[-1][0]
            after, _, among = args
            return sorted(m for m in marks if m[0] > after or m[0] in among)

        hub = live.Broadcaster(interval_s=0.01)
        seen = hub.subscribe(None)
        async with live.watching(hub, run, poll_s=0.02):
            await asyncio.sleep(0.1)
            hub.notify(["lyon-1"])  # this process's own push...
            marks.append((3, "lyon-1"))  # ...which the poll then finds: not twice
            await asyncio.sleep(0.1)
            marks.append((2, "nice-1"))  # another server's push, committed after id 3
            await asyncio.sleep(0.2)
        hub.close()
        return [seen.queue.get_nowait() for _ in range(seen.queue.qsize())]

    events = [json.loads(e) for e in asyncio.run(scenario()) if e]
    devices = [d for e in events for d in e["devices"]]
    assert sorted(devices) == ["lyon-1", "nice-1"]


def test_a_push_that_commits_after_a_later_one_is_still_announced() -> None:
    # PostgreSQL hands out sync ids before commit: 5 can become visible after 6.
    cursor = live.SyncCursor(4)
    assert cursor.take([(6, "nice-1")], now=0.0) == ["nice-1"]
    assert cursor.take([(5, "lyon-1"), (7, "nice-1")], now=1.0) == ["lyon-1", "nice-1"]
    assert cursor.gaps == {} and cursor.last == 7
    assert cursor.take([(5, "lyon-1")], now=2.0) == []  # never twice


def test_a_skipped_id_is_given_up_after_a_while_and_the_gaps_stay_bounded() -> None:
    cursor = live.SyncCursor(0)
    cursor.take([(3, "a")], now=0.0)
    assert sorted(cursor.gaps) == [1, 2]
    cursor.take([(4, "a")], now=live.GAP_WAIT_S + 1)  # 1 and 2 were rolled back
    assert cursor.gaps == {}
    cursor.take([(10 * live.MAX_GAPS, "a")], now=live.GAP_WAIT_S + 2)
    assert len(cursor.gaps) == live.MAX_GAPS and max(cursor.gaps) == 10 * live.MAX_GAPS - 1


# -- live, against deskpulse serve -----------------------------------------------------------


class EventStream:
    """An open GET /events, read line by line in a thread."""

    def __init__(self, url: str, cookie: tuple[str, str]) -> None:
        host, port = url.split("://", 1)[1].rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
        self.conn.request("GET", "/events", headers={"Cookie": "=".join(cookie)})
        self.reply = self.conn.getresponse()
        self.events: list[dict[str, Any]] = []
        self.overviews: list[dict[str, Any]] = []  # each after its push event
        self.arrived = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        kind = None
        for raw in self.reply:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind in ("push", "overview"):
                with self.arrived:
                    (self.events if kind == "push" else self.overviews).append(
                        json.loads(line[6:]))
                    self.arrived.notify_all()

    def wait_for(self, device_id: str) -> dict[str, Any]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: any(
                device_id in e["devices"] for e in self.events), PATIENCE), self.events
            return next(e for e in self.events if device_id in e["devices"])

    def close(self) -> None:
        self.conn.close()


@pytest.mark.slow
def test_a_push_reaches_an_open_event_stream(tmp_path: Path) -> None:
    db = tmp_path / "chain.db"
    keys = chain.build(db, tmp_path)
    with ServeProcess(db) as server:
        stream = EventStream(server.url, chain.session_of(db, "root"))
        nice = EventStream(server.url, chain.session_of(db, "nice"))  # one store's viewer
        assert stream.reply.status == 200
        assert stream.reply.getheader("content-type", "").startswith("text/event-stream")
        batch = [Response(seq=5000, rating=4, scale=4, told_next="yes", latency_s=2.0,
                          rapid=False, closed=False, boot=3, uptime_s=50, wall=None,
                          config_version=1)]
        answer = push_batch(server.url, "lille-1", keys["lille-1"], "3.1", chain.STATUS,
                            [], batch)
        assert answer.ok
        event = stream.wait_for("lille-1")
        assert event == {"devices": ["lille-1"], "sites": ["acme"]}
        # The overview the page shows comes with the event, as /api/overview has it.
        with stream.arrived:
            assert stream.arrived.wait_for(lambda: stream.overviews, PATIENCE)
            carried = stream.overviews[0]
        host, port = server.url.split("://", 1)[1].rsplit(":", 1)
        api = http.client.HTTPConnection(host, int(port), timeout=PATIENCE)
        api.request("GET", "/api/overview",
                    headers={"Cookie": "=".join(chain.session_of(db, "root"))})
        asked = json.loads(api.getresponse().read())
        api.close()
        assert carried["total"] == asked["total"]
        assert [r["key"] for r in carried["rows"]] == [r["key"] for r in asked["rows"]]
        # A sync that another process stored (a serial sync, a second server) is found
        # by the poll of the newest sync id.
        with open_store(db) as store:
            store.store_batch("nice-1", batch, [Anchor(3, 60, chain.NOW, 2)], chain.STATUS,
                              "serial")
        assert stream.wait_for("nice-1")["sites"] == ["acme"]
        assert not any(e["devices"].count("lille-1") > 1 for e in stream.events)
        # The store's viewer heard its own kiosk, never the other store's.
        assert nice.wait_for("nice-1") == {"devices": ["nice-1"], "sites": []}
        assert all(e["devices"] == ["nice-1"] for e in nice.events)
        # The open stream does not hold the server up (SIGKILL after 30 s would be -9).
        assert server.stop() in (0, -signal.SIGTERM)
        stream.close()
        nice.close()
