"""The HTML report (deskpulse.reports.html): structure, escaping, no external reference, and
a real headless Chromium drawing it (skipped, with the reason, where none is installed;
`make test` installs Debian's)."""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.reports.alerts import find_alerts
from deskpulse.reports.figures import build_report
from deskpulse.reports.html import CHART_IDS, COLOURS, render
from deskpulse.store import open_store
from deskpulse.store.base import Store

HOSTILE_NAME = '<b>Desk & "Co"</b> $\\frac{1}{0}$'
HOSTILE_PLACE = "</table><script>alert('x')</script>"
PATIENCE_S = 180  # an upper bound for one browser run; never asserted as a duration
WIDTH = 1200  # browser window, CSS pixels


# -- hand-made reports that follow docs/report.md -----------------------------------------


def group(device_id: str | None, responses: int, csat: float | None, **extra: Any) -> dict:
    fields = {"responses": responses, "csat": csat, "mean_rating": csat,
              "told_next_rate": 0.5 if responses else None, "csat_told": csat,
              "csat_not_told": None, "time_unknown": 0}
    if device_id is not None:
        fields = {"device_id": device_id, "name": None, "location": None, "time_zone": None,
                  **fields}
    return {**fields, **extra}


def sample_report() -> dict[str, Any]:
    """Two kiosks; Monday 09:00 all happy, Monday 10:00 all unhappy."""
    counts = [[0] * 24 for _ in range(7)]
    csat: list[list[float | None]] = [[None] * 24 for _ in range(7)]
    counts[0][9], csat[0][9] = 6, 1.0
    counts[0][10], csat[0][10] = 4, 0.0
    counts[2][14], csat[2][14] = 2, 0.5
    return {
        "filters": {"since": "2026-11-01T00:00:00+00:00", "until": None, "device": None,
                    "location": None, "include_flagged": False},
        "responses": 12,
        "ratings": {"5": {"1": 3, "2": 1, "3": 1, "4": 2, "5": 5}},
        "mean_rating": {"normalised": 0.5625, "raw": {"5": 3.25}},
        "csat": 7 / 12,
        "told_next": {"yes": 8, "no": 3, "no_answer": 1},
        "told_next_rate": 8 / 11,
        "csat_told": {"responses": 8, "csat": 0.75, "ci95": [0.41, 0.93]},
        "csat_not_told": {"responses": 3, "csat": 1 / 3, "ci95": [0.06, 0.79]},
        "csat_difference": {"value": 0.75 - 1 / 3, "ci95": [-0.12, 0.7]},
        "devices": [
            group("k-front", 8, 0.75, name="Front desk", location="Lobby",
                  time_zone="Europe/Berlin"),
            group("k-evil", 4, 0.25, name=HOSTILE_NAME, location=HOSTILE_PLACE),
        ],
        "locations": [group(None, 8, 0.75, location="Lobby"),
                      group(None, 4, 0.25, location=HOSTILE_PLACE)],
        "heatmap": {"weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                    "hours": list(range(24)), "responses": counts, "csat": csat},
        "trend": [
            {"date": "2026-11-02", "responses": 10, "csat": 0.6, "told_next_rate": 0.7,
             "mean_rating": 0.55},
            {"date": "2026-11-04", "responses": 2, "csat": 0.5, "told_next_rate": 1.0,
             "mean_rating": 0.6},
        ],
        "flagged": {"rapid": 2, "closed": 1, "included": False},
        "time_unknown": 1,
    }


def sample_alerts() -> list[dict[str, Any]]:
    return [{"device_id": "k-evil", "name": HOSTILE_NAME, "location": HOSTILE_PLACE,
             "start": "2026-11-02T10:00:00+01:00", "end": "2026-11-02T10:12:00+01:00",
             "start_utc": 1793610000, "end_utc": 1793610720, "responses": 4, "negative": 4,
             "share": 1.0, "peak_share": 1.0}]


def empty_report() -> dict[str, Any]:
    return {
        "filters": {"since": None, "until": None, "device": "nobody", "location": None,
                    "include_flagged": False},
        "responses": 0, "ratings": {}, "mean_rating": {"normalised": None, "raw": {}},
        "csat": None, "told_next": {"yes": 0, "no": 0, "no_answer": 0},
        "told_next_rate": None,
        "csat_told": {"responses": 0, "csat": None, "ci95": None},
        "csat_not_told": {"responses": 0, "csat": None, "ci95": None},
        "csat_difference": {"value": None, "ci95": None},
        "devices": [], "locations": [],
        "heatmap": {"weekdays": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"],
                    "hours": list(range(24)), "responses": [[0] * 24 for _ in range(7)],
                    "csat": [[None] * 24 for _ in range(7)]},
        "trend": [], "flagged": {"rapid": 0, "closed": 0, "included": False},
        "time_unknown": 0,
    }


# -- reading the page back ----------------------------------------------------------------


class Page(HTMLParser):
    """Elements with their attributes and enclosing ids, plus the text, as a browser
    would read them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str], tuple[str, ...]]] = []
        self.texts: list[tuple[str, tuple[str, ...]]] = []
        self.style = ""
        self._open: list[tuple[str, str]] = []  # (tag, id)
        self.feed(text)
        self.close()

    VOID = {"meta", "br", "img", "link", "input", "hr"}

    def _ids(self) -> tuple[str, ...]:
        return tuple(i for _, i in self._open if i)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes, self._ids()))
        if tag not in self.VOID:
            self._open.append((tag, attributes.get("id", "")))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}, self._ids()))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._open and self._open[-1][0] == "style":
            self.style += data
        self.texts.append((data, self._ids()))

    def find(self, tag: str, *, inside: str | None = None, cls: str | None = None) -> list:
        return [attrs for t, attrs, ids in self.elements
                if t == tag and (inside is None or inside in ids)
                and (cls is None or cls in attrs.get("class", "").split())]

    def text(self, inside: str | None = None) -> str:
        return " ".join(t for t, ids in self.texts if inside is None or inside in ids)


def ids_of(page: Page) -> list[str]:
    return [attrs["id"] for _, attrs, _ in page.elements if "id" in attrs]


# -- structure ----------------------------------------------------------------------------


@pytest.mark.slow
def test_every_chart_is_an_inline_svg_with_its_id() -> None:
    page = Page(render(sample_report(), sample_alerts()))
    for chart_id in CHART_IDS:
        [figure] = [a for t, a, _ in page.elements if a.get("id") == chart_id]
        assert figure["class"].split() == ["chart"]
        assert len(page.find("svg", inside=chart_id)) == 1, chart_id
        # Drawn, not just a frame: paths and text.
        assert len(page.find("path", inside=chart_id)) > 5, chart_id
    svg = render(sample_report(), sample_alerts())
    heatmap = svg[svg.index('id="chart-heatmap"'):svg.index('id="chart-trend"')]
    for colour in ("csat_low", "csat_high", "no_data"):
        assert COLOURS[colour] in heatmap
    ranking = svg[svg.index('id="chart-ranking"'):svg.index('id="chart-told"')]
    assert COLOURS["ranking"] in ranking and COLOURS["ranking_alert"] in ranking


def test_key_figures_filters_and_tables() -> None:
    report = sample_report()
    page = Page(render(report, []))
    figures = {a["data-key"] for a in page.find("div", cls="figure")}
    assert figures == {"responses", "csat", "mean_rating", "told_next_rate", "flagged",
                       "time_unknown"}
    key_text = page.text("key-figures")
    for shown in ("12", "58%", "0.56", "73%", "2 · 1", "3.2 of 5", "yes 8, no 3"):
        assert shown in key_text
    assert "2026-11-01T00:00:00+00:00" in page.text("filters")
    rows = page.find("tr", inside="devices-table")
    assert [r.get("data-key") for r in rows[1:]] == ["k-front", "k-evil"]
    assert len(page.find("tr", inside="locations-table")) == 1 + len(report["locations"])
    assert "Europe/Berlin" in page.text("devices-table")
    assert "No alerts in this selection." in page.text("alerts")
    assert page.find("tr", cls="alerted") == []
    # The difference's interval includes 0: the caption says so.
    assert "+42 points" in page.text("chart-told")
    assert "includes 0" in page.text("chart-told")


def test_alerts_are_listed_and_their_devices_marked() -> None:
    page = Page(render(sample_report(), sample_alerts()))
    [row] = page.find("tr", inside="alerts-table", cls="alert")
    assert row["data-device"] == "k-evil"
    assert "Mon 2026-11-02 10:00 +01:00" in page.text("alerts-table")
    assert "100%" in page.text("alerts-table")
    alerted = page.find("tr", cls="alerted")
    assert [r["data-key"] for r in alerted] == ["k-evil", HOSTILE_PLACE]
    assert "ALERT" in page.text("chart-ranking")
    # The alert colour marks exactly the alerted device's bar.
    fills = [a.get("style", "") for a in page.find("path", inside="chart-ranking")]
    assert sum(f"fill: {COLOURS['ranking_alert']}" in f for f in fills) == 1
    assert sum(f"fill: {COLOURS['ranking']}" in f for f in fills) == 1


def test_database_text_is_escaped_everywhere() -> None:
    text = render(sample_report(), sample_alerts())
    page = Page(text)
    assert HOSTILE_NAME not in text and HOSTILE_PLACE not in text
    assert [t for t, _, _ in page.elements if t in ("b", "script")] == []
    # The browser shows them as written: in the tables, the alert list and the chart labels.
    assert f"{HOSTILE_NAME} (k-evil)" in page.text("devices-table")
    assert HOSTILE_PLACE in page.text("locations-table")
    assert HOSTILE_PLACE in page.text("alerts-table")
    labels = page.text("chart-ranking")
    assert "<b>Desk & \"Co\"</b>" in labels  # cut to fit, and $ not read as mathtext
    attributes = [a for _, a, _ in page.elements if a.get("data-key") == HOSTILE_PLACE]
    assert len(attributes) == 1


URL_ATTRIBUTES = {"href", "xlink:href", "src", "srcset", "action", "formaction", "data",
                  "poster", "background", "manifest", "ping", "cite"}


def test_no_external_reference() -> None:
    for report, alerts in ((sample_report(), sample_alerts()), (empty_report(), [])):
        text = render(report, alerts)
        page = Page(text)
        assert [t for t, _, _ in page.elements
                if t in ("script", "link", "img", "iframe", "object", "embed", "base")] == []
        for _, attributes, _ in page.elements:
            for name, value in attributes.items():
                assert "//" not in value, (name, value)
                if name in URL_ATTRIBUTES:
                    assert value.startswith("#"), (name, value)
        assert "@import" not in page.style and "@font-face" not in page.style
        assert re.findall(r"url\((?!#)", text) == []
        # Nothing reaches out: no scheme and no protocol-relative address anywhere.
        assert "http:" not in text and "https:" not in text and "//" not in text


def test_ids_are_unique_and_output_is_stable() -> None:
    text = render(sample_report(), sample_alerts())
    ids = ids_of(Page(text))
    assert len(ids) == len(set(ids)) > 100  # matplotlib's ids, prefixed per chart
    assert render(sample_report(), sample_alerts()) == text


def test_every_reference_inside_a_chart_points_into_it() -> None:
    page = Page(render(sample_report(), sample_alerts()))
    ids = set(ids_of(page))
    for tag, attributes, enclosing in page.elements:
        for value in attributes.values():
            for target in re.findall(r"url\(#([^)]+)\)", value) + (
                    [value[1:]] if value.startswith("#") and tag == "use" else []):
                assert target in ids
                chart = next(i for i in enclosing if i in CHART_IDS)
                assert target.startswith(chart.removeprefix("chart-") + "-")


def test_an_empty_report_says_so() -> None:
    text = render(empty_report(), [])
    page = Page(text)
    assert "No responses in this selection." in page.text()
    assert page.find("svg") == [] and page.find("figure") == []
    assert "nobody" in page.text("filters")
    assert "–" in page.text("key-figures")


def test_a_report_without_placed_times_draws_what_it_can() -> None:
    report = sample_report()
    report["heatmap"] = empty_report()["heatmap"]
    report["trend"] = []
    report["csat_told"] = {"responses": 0, "csat": None, "ci95": None}
    page = Page(render(report, []))
    for chart_id in ("chart-heatmap", "chart-trend"):
        assert page.find("svg", inside=chart_id) == []
        assert "empty" in [a for t, a, _ in page.elements
                           if a.get("id") == chart_id][0]["class"].split()
    assert "No responses with a known time" in page.text("chart-heatmap")
    assert len(page.find("svg", inside="chart-ranking")) == 1
    assert len(page.find("svg", inside="chart-told")) == 1
    assert "no answers" in page.text("chart-told")


def test_intervals_that_round_past_their_share() -> None:
    report = sample_report()
    report["csat_told"] = {"responses": 10, "csat": 1.0, "ci95": [0.72, 0.9999999999999999]}
    report["csat_not_told"] = {"responses": 7, "csat": 0.0, "ci95": [1e-17, 0.35]}
    page = Page(render(report, []))
    told = " ".join(page.text("chart-told").split())
    assert "100% n=10" in told and "0% n=7" in told


def test_a_single_day_and_many_devices() -> None:
    report = sample_report()
    report["trend"] = report["trend"][:1]
    report["devices"] = [group(f"k{i:03}", 10, 1 - i / 100) for i in range(100)]
    alerts = [{**sample_alerts()[0], "device_id": "k050", "name": None}]
    page = Page(render(report, alerts))
    labels = page.text("chart-ranking")
    assert "k000" in labels and "k019" in labels and "k020" not in labels
    assert "k050" in labels and "k080" in labels and "k079" not in labels
    assert "Showing 41 of 100 devices" in labels
    assert len(page.find("tr", inside="devices-table")) == 101
    assert len(page.find("svg", inside="chart-trend")) == 1


def test_rendering_leaves_matplotlib_settings_alone() -> None:
    before = (matplotlib.get_backend(), copy.deepcopy(dict(matplotlib.rcParams)))
    render(sample_report(), sample_alerts())
    assert (matplotlib.get_backend(), dict(matplotlib.rcParams)) == before


def test_title_is_escaped() -> None:
    page = Page(render(empty_report(), [], title="Q4 <Berlin>"))
    assert page.text().count("Q4 <Berlin>") == 2  # <title> and <h1>


# -- a real browser -----------------------------------------------------------------------


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_chromium()
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium found: `make test` installs Debian's chromium "
                             "(apt-get install chromium)")

# Run in the test's copy only: the report itself has no script. It writes where each chart
# landed, so the screenshot can be cut into the charts' areas.
PROBE = """<script>
const boxes = {};
for (const figure of document.querySelectorAll("figure.chart")) {
  const r = figure.getBoundingClientRect();
  boxes[figure.id] = [r.left + scrollX, r.top + scrollY, r.width, r.height];
}
document.body.dataset.boxes = JSON.stringify(
  {boxes, height: document.documentElement.scrollHeight});
</script>"""


def run_chromium(profile: Path, *args: str) -> str:
    assert CHROMIUM is not None
    proc = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--hide-scrollbars", "--force-device-scale-factor=1",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=PATIENCE_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def screenshot(html_file: Path, tmp_path: Path) -> tuple[Any, dict[str, list[float]]]:
    """The page as a browser draws it, and each chart's box on it (CSS pixels)."""
    from PIL import Image

    probe = html_file.with_name("probe.html")
    probe.write_text(html_file.read_text().replace("</body>", PROBE + "</body>"))
    # The same width as the screenshot, so the boxes are where the screenshot has them.
    dom = run_chromium(tmp_path / "profile", "--dump-dom", f"--window-size={WIDTH},2000",
                       probe.as_uri())
    found = re.search(r'data-boxes="([^"]*)"', dom)
    assert found, dom[-2000:]
    layout = json.loads(found.group(1).replace("&quot;", '"'))
    png = html_file.with_suffix(".png")
    run_chromium(tmp_path / "profile", f"--screenshot={png}",
                 f"--window-size={WIDTH},{int(layout['height']) + 20}", html_file.as_uri())
    return Image.open(png).convert("RGB"), layout["boxes"]


def colour_pixels(image: Any, colour: str, box: list[float] | None = None, *,
                  solid: bool = True) -> int:
    """Pixels of `colour` (give or take a little) in the box. `solid`: only inside areas
    of it (the pixel's 3x3 neighbourhood is all that colour), so that antialiased text
    passing through the colour does not count."""
    from PIL import ImageChops, ImageFilter

    target = [int(colour[i:i + 2], 16) for i in (1, 3, 5)]
    if box is not None:
        left, top, width, height = box
        image = image.crop((int(left), int(top), int(left + width), int(top + height)))
    bands = [band.point(lambda v, t=t: 255 if abs(v - t) <= 6 else 0)
             for band, t in zip(image.split(), target, strict=True)]
    mask = ImageChops.multiply(ImageChops.multiply(bands[0], bands[1]), bands[2])
    return (mask.filter(ImageFilter.MinFilter(3)) if solid else mask).histogram()[255]


# Per chart, its colours and the least the browser must draw of each: areas (cells, bars)
# in solid pixels, lines in any pixels. A legend's swatch alone stays below both.
AREA, LINE = 500, 300
CHART_COLOURS = {
    "chart-heatmap": {"csat_low": AREA, "csat_high": AREA, "csat_mid": AREA,
                      "no_data": AREA},
    "chart-trend": {"trend_responses": AREA, "trend_csat": LINE, "trend_told": LINE},
    "chart-ranking": {"ranking": AREA, "ranking_alert": AREA},
    "chart-told": {"told_yes": AREA, "told_no": AREA},
}


def assert_charts_drawn(image: Any, boxes: dict[str, list[float]],
                        expected: dict[str, dict[str, int]]) -> None:
    assert sorted(boxes) == sorted(CHART_IDS)
    colours = image.getcolors(maxcolors=1 << 24)
    assert len(colours) > 50  # text, charts and tables, not a blank page
    white = sum(n for n, rgb in colours if min(rgb) >= 245)
    assert white < 0.95 * image.width * image.height
    for chart_id, names in expected.items():
        left, top, width, height = boxes[chart_id]
        assert width > 600 and height > 100, (chart_id, boxes[chart_id])
        assert top + height <= image.height
        for name, least in names.items():
            colour = COLOURS[name]
            inside = colour_pixels(image, colour, boxes[chart_id], solid=least == AREA)
            assert inside >= least, (chart_id, name, inside)
            # Drawn in its chart and only there: the page has no other use of the colour.
            assert colour_pixels(image, colour) == colour_pixels(image, colour,
                                                                 boxes[chart_id])


@needs_chromium
@pytest.mark.slow
def test_chromium_draws_every_chart(tmp_path: Path) -> None:
    html_file = tmp_path / "report.html"
    html_file.write_text(render(sample_report(), sample_alerts()))
    image, boxes = screenshot(html_file, tmp_path)
    assert_charts_drawn(image, boxes, CHART_COLOURS)


@needs_chromium
@pytest.mark.slow
def test_chromium_shows_an_empty_report(tmp_path: Path) -> None:
    html_file = tmp_path / "report.html"
    html_file.write_text(render(empty_report(), []))
    image, boxes = screenshot(html_file, tmp_path)
    assert boxes == {}
    dom = run_chromium(tmp_path / "profile", "--dump-dom", html_file.as_uri())
    assert "No responses in this selection." in dom
    assert len(image.getcolors(maxcolors=1 << 24)) > 10  # the text was drawn


@pytest.mark.slow
def test_rendering_needs_neither_pyplot_nor_a_display() -> None:
    # A fresh interpreter: rendering must not load pyplot (which picks a GUI backend).
    probe = (
        "import sys, json\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_report_html import sample_report, sample_alerts\n"
        "from deskpulse.reports.html import render\n"
        "render(sample_report(), sample_alerts())\n"
        "print(json.dumps('matplotlib.pyplot' in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=PATIENCE_S, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) is False


def names_only_report() -> dict[str, Any]:
    """The sample report with only the charts that show names (no heatmap, no trend)."""
    report = sample_report()
    report["heatmap"] = empty_report()["heatmap"]
    report["trend"] = []
    return report


@functools.cache
def benign_names_page() -> Page:
    """names_only_report() with the sample's own names, drawn once for every example."""
    return Page(render(names_only_report(), sample_alerts()))


@settings(max_examples=40, deadline=None)
@given(name=st.text(max_size=60), place=st.text(max_size=40))
@pytest.mark.slow
def test_any_text_from_the_database_comes_out_as_text(name: str, place: str) -> None:
    report = names_only_report()
    report["devices"][1].update(name=name, location=place)
    alerts = [{**sample_alerts()[0], "name": name, "location": place}]
    page = Page(render(report, alerts))
    benign = benign_names_page()
    assert {t for t, _, _ in page.elements} == {t for t, _, _ in benign.elements}
    row = next(r for r in page.find("tr", inside="devices-table")
               if r.get("data-key") == "k-evil")
    assert row["data-key"] == "k-evil"
    shown = page.text("devices-table")
    assert (f"{name} (k-evil)" if name and name != "k-evil" else "k-evil") in shown
    assert len(page.find("svg", inside="chart-ranking")) == 1


# -- a real report from a small database --------------------------------------------------


def small_database(path: str | Path) -> Store:
    """k1 (UTC): a burst of 4 worst faces Monday 09:00-09:03 (an alert), 4 best faces from
    09:30, 2 second-worst Wednesday 14:00, 1 best Thursday 15:00 (not told). k2 (Berlin):
    6 best faces Tuesday, one an hour from 10:00 UTC, and a rapid worst face (left out)."""
    monday = int(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp())
    day, minute = 86400, 60
    k1 = ([(monday + i * minute, 1, "no", False) for i in range(4)]
          + [(monday + (30 + i) * minute, 5, "yes", False) for i in range(4)]
          + [(monday + 2 * day + 5 * 3600 + i, 2, "no", False) for i in range(2)]
          + [(monday + 3 * day + 6 * 3600, 5, "no", False)])
    k2 = ([(monday + day + 3600 + i * 3600, 5, "yes", False) for i in range(6)]
          + [(monday + day + 3600 + 5, 1, "yes", True)])
    conn = open_store(path)
    for device_id, answers, zone in (("k1", k1, "UTC"), ("k2", k2, "Europe/Berlin")):
        conn.store_batch(device_id, [
            Response(seq=i + 1, rating=rating, scale=5, told_next=told, latency_s=3.0,
                     rapid=rapid, closed=False, boot=1, uptime_s=i, wall=wall,
                     config_version=1)
            for i, (wall, rating, told, rapid) in enumerate(answers)], [], {}, "serial")
        conn.describe_device(device_id, name=f"Desk {device_id}", time_zone=zone)
    return conn


def test_a_real_report_from_a_small_database(db_target: str) -> None:
    conn = small_database(db_target)
    try:
        report, alerts = build_report(conn), find_alerts(conn)
    finally:
        conn.close()
    assert [(a["device_id"], a["responses"], a["negative"]) for a in alerts] == [("k1", 4, 4)]
    page = Page(render(report, alerts))
    for chart_id in CHART_IDS:
        assert len(page.find("svg", inside=chart_id)) == 1, chart_id
    assert "17" in page.text("key-figures")  # 11 + 6; the rapid one is left out
    rows = page.find("tr", inside="devices-table")[1:]
    assert [r["data-key"] for r in rows] == ["k2", "k1"]  # CSAT 100% before 5/11
    assert [r["data-key"] for r in page.find("tr", cls="alerted", inside="devices-table")] \
        == ["k1"]
    assert "Mon 2026-11-23 09:00 +00:00" in page.text("alerts-table")


@pytest.mark.slow
def test_a_corrected_device_clock_is_one_line(db_target: str) -> None:
    conn = small_database(db_target)
    try:
        assert 'id="clock-corrected"' not in render(build_report(conn), [])
        # k3 stamped 37 answers with a clock a year ahead; its boot's anchor says otherwise.
        start, year = int(datetime(2026, 11, 24, 9, 0, tzinfo=UTC).timestamp()), 365 * 86400
        conn.store_batch(HOSTILE_PLACE, [
            Response(seq=i, rating=4, scale=5, told_next="yes", latency_s=3.0, rapid=False,
                     closed=False, boot=1, uptime_s=i * 60, wall=start + year + i * 60,
                     config_version=1) for i in range(1, 38)],
            [Anchor(1, 0, start, 1)], {}, "serial")
        page = Page(render(build_report(conn), []))
    finally:
        conn.close()
    assert page.text("clock-corrected") == (
        f"clock corrected: 37 responses of {HOSTILE_PLACE} were stamped up to 365 days off "
        "by the device clock; placed by the host's time anchors")
    assert not page.find("script")


@needs_chromium
@pytest.mark.slow
def test_chromium_draws_a_real_report(tmp_path: Path) -> None:
    conn = small_database(tmp_path / "deskpulse.db")
    try:
        html_file = tmp_path / "report.html"
        html_file.write_text(render(build_report(conn), find_alerts(conn)))
    finally:
        conn.close()
    image, boxes = screenshot(html_file, tmp_path)
    # Monday 09:00 is half good, Tuesday's hours all good, Wednesday 14:00 all bad.
    assert_charts_drawn(image, boxes, CHART_COLOURS)
