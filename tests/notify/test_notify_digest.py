"""The weekly digest (deskpulse.notify.digest): its figures are the report's for the site and
the week, the chain's median is the median of the report's told rates of the sites at the
same level, and it arrives by email (text and HTML) at a real local SMTP server."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from statistics import median

import pytest
from receivers import (
    SmtpSink,
    parts,
    smtp_fixture,  # noqa: F401 -- fixtures
)

from deskpulse import cli
from deskpulse.errors import DeskPulseError
from deskpulse.notify.digest import Week, build_digests, parse_week, send_digests, week_bounds
from deskpulse.protocol.batch import Response
from deskpulse.reports.figures import build_report
from deskpulse.store import open_store
from deskpulse.store.base import Store

WEEK = Week(2026, 48)  # Monday 23 November to Sunday 29 November 2026
STORES = {"acme/north/lyon-1": "Europe/Paris", "acme/north/paris-2": "Europe/Paris",
          "acme/south/nice-3": "Europe/Paris", "acme/south/nice-4": "Europe/Paris"}


def fill(store: Store, device_id: str, count: int, told_share: float, seed: int) -> None:
    """`count` responses spread over the week before, the week and the week after (so the
    week's bounds matter), told next with about `told_share`."""
    rng = random.Random(seed)
    start = int(datetime(2026, 11, 16, tzinfo=UTC).timestamp())
    responses = []
    for seq in range(1, count + 1):
        told = rng.random() < told_share
        rating = rng.choice((4, 5, 5) if told else (1, 2, 3, 4, 5))
        responses.append(Response(
            seq=seq, rating=rating, scale=5, told_next="yes" if told else rng.choice(
                ("no", "no_answer")), latency_s=2.0, rapid=False, closed=False, boot=1,
            uptime_s=seq, wall=start + rng.randrange(21 * 86400), config_version=1))
    store.store_batch(device_id, responses, [], {}, "serial")


@pytest.fixture(scope="module")
def chain_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("digest") / "deskpulse.db"
    with open_store(path) as store:
        store.add_site("acme", time_zone="Europe/Paris")
        for site in ("acme/north", "acme/south", *STORES):
            store.add_site(site)
        for number, site in enumerate(STORES):
            device_id = f"k{number}"
            fill(store, device_id, 3600 + 500 * number, 0.3 + 0.15 * number, number)
            store.assign_kiosk(device_id, site)
    return path


@pytest.fixture
def db(chain_db: Path) -> Iterator[Store]:
    with open_store(chain_db) as store:
        yield store


def test_the_digest_figures_are_the_reports_for_the_site_and_week(db: Store) -> None:
    [digest] = build_digests(db, [("lyon@example.com", "acme/north/lyon-1")], WEEK)
    since, until = week_bounds(WEEK, "Europe/Paris")
    assert since.isoformat() == "2026-11-23T00:00:00+01:00"
    assert until - since == timedelta(days=7)
    report = build_report(db, since=since, until=until, site="acme/north/lyon-1")
    f = digest.figures
    assert 0 < f["responses"] == report["responses"] < 3600  # the week only
    assert f["csat"] == report["csat"]
    assert f["told_next_rate"] == report["told_next_rate"]
    assert f["csat_told"] == report["csat_told"]["csat"]
    assert f["csat_not_told"] == report["csat_not_told"]["csat"]
    # The chain's median: every store's own report over the same week.
    rates = [build_report(db, since=since, until=until, site=s)["told_next_rate"]
             for s in STORES]
    assert f["chain_told_median"] == median(rates) and f["chain_sites"] == 4
    # A region is compared with the regions.
    [region] = build_digests(db, [("north@example.com", "acme/north")], WEEK)
    assert region.figures["chain_told_median"] == median(
        build_report(db, since=since, until=until, site=r)["told_next_rate"]
        for r in ("acme/north", "acme/south"))


def test_the_digest_arrives_by_email_with_text_and_html(db: Store, smtp: SmtpSink) -> None:
    digests = build_digests(db, [("lyon@example.com", "acme/north/lyon-1"),
                                 ("nice@example.com", "acme/south/nice-4")], WEEK)
    sender = f"mailto://127.0.0.1:{smtp.port}?from=deskpulse@example.com&to=x@example.com"
    assert send_digests(digests, sender) == {"lyon@example.com": None,
                                             "nice@example.com": None}
    assert smtp.envelopes == [["lyon@example.com"], ["nice@example.com"]]
    mail = smtp.messages[0]
    assert mail["Subject"] == "DeskPulse weekly digest: acme/north/lyon-1, week 2026-W48"
    text, html = parts(mail)["text/plain"], parts(mail)["text/html"]
    responses = f"{digests[0].figures['responses']:,}"
    assert "," in responses  # over a thousand: thousands separators
    for body in (text, html):
        assert "Week 2026-W48: Monday 23 November to Sunday 29 November 2026" in body
        assert responses in body
        assert f"{100 * digests[0].figures['told_next_rate']:.1f}%" in body
        assert "chain median" in body
    assert f"<p><b>Responses:</b> {responses}</p>" in html
    assert f"Responses: {responses}" in text  # the plain part apprise derives from it
    assert digests[0].message().text.splitlines()[3].startswith("Responses: ")


def test_weeks_read_and_refused() -> None:
    assert parse_week(None, date(2026, 12, 5)) == Week(2026, 48)
    assert parse_week(None, date(2026, 1, 2)) == Week(2025, 52)  # last week of last year
    assert parse_week("2026-W01", date(2026, 12, 5)).first == date(2025, 12, 29)
    assert Week(2026, 53).covered() == "Monday 28 December 2026 to Sunday 3 January 2027"
    for text in ("2026-48", "2026-W54", "2025-W53"):  # 2025 has 52 weeks
        with pytest.raises(DeskPulseError, match="is not an ISO week"):
            parse_week(text, date(2026, 12, 5))


def test_digest_command(chain_db: Path, smtp: SmtpSink, capsys: pytest.CaptureFixture[str],
                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["notify", "digest", "--db", str(chain_db), "--week", "2026-W48",
            "--to", "lyon@example.com=acme/north/lyon-1"]
    assert cli.main([*base, "--dry-run"]) == 0
    assert "to lyon@example.com: DeskPulse weekly digest" in capsys.readouterr().out
    assert smtp.messages == []
    monkeypatch.setenv("DESKPULSE_SMTP", f"mailto://127.0.0.1:{smtp.port}?from=dp@example.com")
    assert cli.main(base) == 0
    assert capsys.readouterr().out == "sent to lyon@example.com (acme/north/lyon-1) for 2026-W48\n"
    assert len(smtp.messages) == 1
    assert cli.main([*base[:-1], "lyon@example.com"]) == 2
    assert "give EMAIL=SITE" in capsys.readouterr().err


def test_without_recipients_the_digest_goes_to_each_manager_with_an_email(
        chain_db: Path, tmp_path: Path, smtp: SmtpSink,
        capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "with-users.db"
    copy.write_bytes(chain_db.read_bytes())
    with open_store(copy) as store:
        for name, role, site, email in (
                ("ana", "manager", "acme/north/lyon-1", "ana@example.com"),
                ("bo", "manager", "acme/south", "bo@example.com"),
                ("cy", "manager", "acme/south/nice-3", None),  # no address: no digest
                ("di", "viewer", "acme/north", "di@example.com")):  # not a manager
            store.add_user(name, role, site=site, email=email, password_hash="$argon2id$x")
    base = ["notify", "digest", "--db", str(copy), "--week", "2026-W48"]
    sender = f"mailto://127.0.0.1:{smtp.port}?from=dp@example.com"
    assert cli.main([*base, "--smtp", sender]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "sent to ana@example.com (acme/north/lyon-1) for 2026-W48",
        "sent to bo@example.com (acme/south) for 2026-W48"]
    assert [m["Subject"] for m in smtp.messages] == [
        "DeskPulse weekly digest: acme/north/lyon-1, week 2026-W48",
        "DeskPulse weekly digest: acme/south, week 2026-W48"]
    assert cli.main(["notify", "digest", "--db", str(chain_db), "--dry-run"]) == 2
    assert "no store manager has an email address" in capsys.readouterr().err
