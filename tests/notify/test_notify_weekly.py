"""The weekly digest sent by itself and once (deskpulse.notify.weekly): due from Monday 07:00
in the manager's site's time zone, recorded in the store so that passes, two at once, a
restart and a second `notify digest` never send it twice; a refused delivery is retried.
Delivered to the real local SMTP server of receivers.py; the clock is given, never waited."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from receivers import (
    SmtpSink,
    at_once,
    smtp_fixture,  # noqa: F401 -- fixtures
)
from test_notify_digest import chain_db  # noqa: F401 -- a module fixture: the chain's data

from deskpulse import cli
from deskpulse.notify.background import NotifyRunner
from deskpulse.notify.delivery import Deliver
from deskpulse.notify.digest import Week
from deskpulse.notify.weekly import DigestResult, due_week, run_digest_pass
from deskpulse.store import open_store
from deskpulse.store.base import Store

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
MONDAY_0730 = datetime(2026, 11, 30, 7, 30, tzinfo=PARIS).timestamp()  # after 2026-W48
W48 = "DeskPulse weekly digest: {}, week 2026-W48"


@pytest.fixture
def db_path(chain_db: Path, tmp_path: Path) -> str:  # noqa: F811 -- the imported fixture
    """The chain with two managers: ana at a Paris store, bo at acme/south, in New York's
    zone (which its stores inherit), and a viewer who gets nothing."""
    path = tmp_path / "deskpulse.db"
    path.write_bytes(chain_db.read_bytes())
    with open_store(path) as store:
        store.set_site("acme/south", time_zone="America/New_York")
        for name, role, site, email in (
                ("ana", "manager", "acme/north/lyon-1", "ana@example.com"),
                ("bo", "manager", "acme/south", "bo@example.com"),
                ("di", "viewer", "acme/north", "di@example.com")):
            store.add_user(name, role, site=site, email=email, password_hash="$argon2id$x")
    return str(path)


@pytest.fixture
def db(db_path: str) -> Iterator[Store]:
    with open_store(db_path) as store:
        yield store


def sender(smtp: SmtpSink) -> str:
    return f"mailto://127.0.0.1:{smtp.port}?from=deskpulse@example.com"


def subjects(smtp: SmtpSink) -> list[str]:
    return [str(message["Subject"]) for message in smtp.messages]


def test_the_week_due_starts_on_monday_at_seven_local() -> None:
    def at(*wall: int, zone: ZoneInfo = PARIS) -> float:
        return datetime(*wall, tzinfo=zone).timestamp()

    assert due_week(at(2026, 11, 30, 6, 59), "Europe/Paris") is None
    assert due_week(at(2026, 11, 30, 7, 0), "Europe/Paris") == Week(2026, 48)
    assert due_week(at(2026, 12, 6, 23, 59), "Europe/Paris") == Week(2026, 48)  # Sunday
    assert due_week(at(2026, 12, 5, 12, 0), "Europe/Paris") == Week(2026, 48)
    # The same instant, Monday 07:30 in Paris, is 01:30 in New York: not yet there.
    assert due_week(MONDAY_0730, "America/New_York") is None
    assert due_week(at(2026, 11, 30, 7, 0, zone=NEW_YORK), "America/New_York") == Week(2026, 48)
    assert due_week(at(2027, 1, 4, 7, 0), "Europe/Paris") == Week(2026, 53)


def test_sent_once_over_two_passes_and_a_restart(db: Store, smtp: SmtpSink) -> None:
    first = run_digest_pass(db, now=MONDAY_0730, sender=sender(smtp), owner="a")
    assert [(d.email, d.week.label) for d in first.sent] == [("ana@example.com", "2026-W48")]
    again = run_digest_pass(db, now=MONDAY_0730 + 300, sender=sender(smtp), owner="a")
    restarted = run_digest_pass(db, now=MONDAY_0730 + 600, sender=sender(smtp), owner="b")
    assert again.sent == restarted.sent == []
    assert smtp.envelopes == [["ana@example.com"]]
    assert subjects(smtp) == [W48.format("acme/north/lyon-1")]
    [record] = db.sent_digests()
    assert (record.week, record.recipient, record.site, record.sent) == (
        "2026-W48", "ana@example.com", "acme/north/lyon-1", int(MONDAY_0730))


def test_not_before_monday_seven_in_the_sites_zone_and_sent_after(db: Store,
                                                                  smtp: SmtpSink) -> None:
    before = datetime(2026, 11, 30, 6, 59, tzinfo=PARIS).timestamp()
    assert run_digest_pass(db, now=before, sender=sender(smtp), owner="a").sent == []
    assert smtp.messages == [] and db.sent_digests() == []
    run_digest_pass(db, now=MONDAY_0730, sender=sender(smtp), owner="a")
    assert smtp.envelopes == [["ana@example.com"]]  # bo's site is still at 01:30
    new_york_seven = datetime(2026, 11, 30, 7, 0, tzinfo=NEW_YORK).timestamp()
    assert run_digest_pass(db, now=new_york_seven - 60, sender=sender(smtp),
                           owner="a").sent == []
    run_digest_pass(db, now=new_york_seven, sender=sender(smtp), owner="a")
    assert smtp.envelopes == [["ana@example.com"], ["bo@example.com"]]
    assert subjects(smtp)[1] == W48.format("acme/south")
    # The week after, the next week's digest.
    run_digest_pass(db, now=MONDAY_0730 + 7 * 86400, sender=sender(smtp), owner="a")
    assert subjects(smtp)[2] == "DeskPulse weekly digest: acme/north/lyon-1, week 2026-W49"


def test_two_passes_at_once_send_once(db_path: str, smtp: SmtpSink) -> None:
    def first(deliver_to: Deliver) -> DigestResult:
        with open_store(db_path) as store:
            return run_digest_pass(store, now=MONDAY_0730, sender=sender(smtp), owner="a",
                                   deliver_to=deliver_to)

    def second() -> DigestResult:
        with open_store(db_path) as store:
            return run_digest_pass(store, now=MONDAY_0730, sender=sender(smtp), owner="b")

    results = dict(zip(("first", "second"), at_once(first, second), strict=True))
    assert results["second"].held is False and results["first"].held is True
    assert smtp.envelopes == [["ana@example.com"]]
    # The lease was given up: a later pass runs, and finds it sent.
    with open_store(db_path) as store:
        later = run_digest_pass(store, now=MONDAY_0730, sender=sender(smtp), owner="b")
    assert later.held and later.sent == [] and len(smtp.messages) == 1


def test_a_refused_delivery_is_retried_and_holds_up_no_other(db: Store, smtp: SmtpSink
                                                             ) -> None:
    tuesday = MONDAY_0730 + 86400  # both sites are past Monday 07:00
    smtp.refused.add("ana@example.com")
    result = run_digest_pass(db, now=tuesday, sender=sender(smtp), owner="a")
    assert [d.email for d in result.sent] == ["bo@example.com"]
    assert [d.email for d, _ in result.failed] == ["ana@example.com"]
    assert [r.recipient for r in db.sent_digests()] == ["bo@example.com"]
    smtp.refused.clear()
    retried = run_digest_pass(db, now=tuesday + 300, sender=sender(smtp), owner="a")
    assert [d.email for d in retried.sent] == ["ana@example.com"] and retried.failed == []
    assert smtp.envelopes == [["bo@example.com"], ["ana@example.com"]]


def test_the_serve_runner_sends_the_digest_beside_the_alert_pass(db_path: str,
                                                                 smtp: SmtpSink) -> None:
    runner = NotifyRunner(db_path, 60, clock=lambda: MONDAY_0730, digest_sender=sender(smtp))
    assert [d.email for d in runner.digest_once().sent] == ["ana@example.com"]
    assert runner.digest_once().sent == []
    restarted = NotifyRunner(db_path, 60, clock=lambda: MONDAY_0730 + 60,
                             digest_sender=sender(smtp))
    assert restarted.digest_once().sent == []
    assert NotifyRunner(db_path, 60).digest_once().sent == []  # without a sender: nothing
    assert smtp.envelopes == [["ana@example.com"]]


def test_the_command_skips_a_sent_digest_unless_again(db_path: str, smtp: SmtpSink,
                                                      capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    base = ["notify", "digest", "--db", db_path, "--week", "2026-W48", "--smtp", sender(smtp)]
    assert cli.main(base) == 0
    assert capsys.readouterr().out.splitlines() == [
        "sent to ana@example.com (acme/north/lyon-1) for 2026-W48",
        "sent to bo@example.com (acme/south) for 2026-W48"]
    assert cli.main(base) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith(
        "already sent to ana@example.com (acme/north/lyon-1) for 2026-W48 on ")
    assert out[0].endswith(" UTC; --again sends it again")
    assert len(smtp.messages) == 2
    # The serve pass finds them sent too.
    with open_store(db_path) as store:
        assert run_digest_pass(store, now=MONDAY_0730 + 86400, sender=sender(smtp),
                               owner="a").sent == []
    assert cli.main([*base, "--again", "--to", "ana@example.com=acme/north/lyon-1"]) == 0
    assert capsys.readouterr().out == "sent to ana@example.com (acme/north/lyon-1) for 2026-W48\n"
    assert smtp.envelopes[-1] == ["ana@example.com"] and len(smtp.messages) == 3
    assert cli.main([*base, "--dry-run"]) == 0  # nothing left to send: the lines say so
    assert capsys.readouterr().out.count("already sent to") == 2
    assert len(smtp.messages) == 3


def test_serve_refuses_a_sender_that_is_no_email_at_start(
        db_path: str, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("DESKPULSE_SMTP", "json://user:s3cr3t@127.0.0.1:9/hook")
    assert cli.main(["serve", "--db", db_path, "--notify-every", "5m"]) != 0
    err = capsys.readouterr().err
    assert "the weekly digest goes by email" in err and "s3cr3t" not in err
