"""A notification pass (deskpulse.notify.passes) delivering to real local receivers: an SMTP
server and a webhook endpoint on 127.0.0.1 (receivers.py). The alerts come from responses
stored through store_batch (the negative kind) or, for the device-health kinds, from
health-shaped alerts given to the pass."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from receivers import (  # noqa: F401 -- smtp_fixture and webhook_fixture: fixtures
    SmtpSink,
    Webhook,
    at_once,
    parts,
    smtp_fixture,
    webhook_fixture,
)

from deskpulse.notify.delivery import Deliver
from deskpulse.notify.passes import PassResult, plan_notices, run_pass
from deskpulse.notify.rules import make_rule
from deskpulse.protocol.batch import Response
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.notify import NOTIFY_LEASE, LogEntry, destination_id

T0 = int(datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp())
WINDOW = 900
LYON, PARIS = "acme/north/lyon-1", "acme/north/paris-2"


def answer(store: Store, device_id: str, answers: Sequence[tuple[int, int]]) -> None:
    """(seconds after T0, rating on a 5-face scale) for each response."""
    first = (store.last_seq(device_id) or 0) + 1
    store.store_batch(device_id, [
        Response(seq=first + i, rating=rating, scale=5, told_next="yes", latency_s=2.0,
                 rapid=False, closed=False, boot=1, uptime_s=100 + first + i,
                 wall=T0 + at, config_version=1)
        for i, (at, rating) in enumerate(answers)], [], {}, "serial")


def chain(store: Store) -> None:
    for path in ("acme", "acme/north", LYON, PARIS):
        store.add_site(path)
    for device_id, site in (("k1", LYON), ("k2", PARIS)):
        answer(store, device_id, [(-3600, 5)])
        store.describe_device(device_id, name=f"Desk {device_id}", time_zone="UTC")
        store.assign_kiosk(device_id, site)


def burst(store: Store, device_id: str, at: int = 0) -> None:
    """Five responses in four minutes, four of them unhappy: one alert period."""
    answer(store, device_id, [(at + 60 * i, 1 if i != 2 else 5) for i in range(5)])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "deskpulse.db") as store:
        chain(store)
        yield store


def test_an_alert_reaches_the_webhook_and_the_smtp_server(db: Store, smtp: SmtpSink,
                                                          webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("north", "acme/north", "negative",
                                [webhook.url(), smtp.url("manager@example.com")]))
    burst(db, "k1")
    result = run_pass(db, now=T0 + 300)
    assert result.failed == {} and len(result.sent) == 2
    [post] = webhook.posts
    assert post["title"] == "DeskPulse: 1 new alert"
    assert "New (1):" in post["message"]
    assert f"[north, acme/north] kiosk k1 (Desk k1) at {LYON}: 4 of 5 responses unhappy " \
           "(80%), 2026-11-23 09:00-09:04" in post["message"]
    [mail] = smtp.messages
    assert mail["Subject"] == "DeskPulse: 1 new alert"
    assert smtp.envelopes == [["manager@example.com"]]
    assert "4 of 5 responses unhappy" in next(iter(parts(mail).values()))


def test_an_ongoing_alert_is_sent_once_and_its_resolution_once(db: Store,
                                                               webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
    burst(db, "k1")
    for minutes in (5, 10, 14):  # three passes while it goes on (and grows)
        if minutes == 10:
            answer(db, "k1", [(9 * 60, 1)])
        run_pass(db, now=T0 + 60 * minutes)
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert"]
    # The last window that qualified ended at 09:09; one window later it is over.
    run_pass(db, now=T0 + 9 * 60 + WINDOW + 1)
    run_pass(db, now=T0 + 9 * 60 + WINDOW + 60)
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert",
                                                   "DeskPulse: 1 resolved"]
    assert "Resolved (1):" in webhook.posts[1]["message"]
    assert "5 of 6 responses unhappy" in webhook.posts[1]["message"]
    assert db.notify_log() == []  # resolved and told: forgotten
    # A new burst later is a new problem.
    burst(db, "k1", at=7200)
    run_pass(db, now=T0 + 7200 + 300)
    assert webhook.posts[-1]["title"] == "DeskPulse: 1 new alert"


def test_a_reminder_after_the_rules_interval(db: Store, webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()], remind_s=600))
    burst(db, "k1")
    answer(db, "k1", [(60 * m, 1) for m in range(5, 30, 2)])  # it goes on for half an hour
    for minutes in (5, 10, 15, 20, 25):  # reminded at 15 and 25, ten minutes apart
        run_pass(db, now=T0 + 60 * minutes)
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert",
                                                   "DeskPulse: 1 ongoing alert",
                                                   "DeskPulse: 1 ongoing alert"]
    assert "Still going on (1):" in webhook.posts[1]["message"]


def test_alerts_of_one_pass_to_one_destination_are_one_message(db: Store,
                                                               webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
    db.add_alert_rule(make_rule("north", "acme/north", "negative", [webhook.url()]))
    burst(db, "k1")
    burst(db, "k2")
    run_pass(db, now=T0 + 300)
    [post] = webhook.posts
    assert post["title"] == "DeskPulse: 3 new alerts"
    lines = [line for line in post["message"].splitlines() if line.startswith("- ")]
    assert sorted(line.split(" at ")[0] for line in lines) == [
        "- [lyon, acme/north/lyon-1] kiosk k1 (Desk k1)",
        "- [north, acme/north] kiosk k1 (Desk k1)",
        "- [north, acme/north] kiosk k2 (Desk k2)"]


def test_a_failing_destination_is_retried_and_blocks_no_other(db: Store, smtp: SmtpSink,
                                                              webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("lyon", LYON, "negative",
                                [webhook.url(), smtp.url("manager@example.com")]))
    burst(db, "k1")
    webhook.failing = True
    first = run_pass(db, now=T0 + 300)
    assert list(first.failed) == [f"json://127.0.0.1:{webhook.port}/hook"]
    assert len(smtp.messages) == 1 and webhook.posts == []
    webhook.failing = False
    second = run_pass(db, now=T0 + 360)
    assert list(second.sent) == [f"json://127.0.0.1:{webhook.port}/hook"]
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert"]
    assert len(smtp.messages) == 1  # the email was not sent again
    # While the webhook is down again the problem resolves: its resolution waits for it.
    webhook.failing = True
    run_pass(db, now=T0 + 4 * 60 + WINDOW + 1)
    assert [m["Subject"] for m in smtp.messages] == ["DeskPulse: 1 new alert",
                                                     "DeskPulse: 1 resolved"]
    webhook.failing = False
    run_pass(db, now=T0 + 4 * 60 + WINDOW + 120)
    run_pass(db, now=T0 + 4 * 60 + WINDOW + 180)
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert",
                                                   "DeskPulse: 1 resolved"]
    assert len(smtp.messages) == 2 and db.notify_log() == []


def test_a_refused_smtp_login_never_shows_the_password(db: Store, webhook: Webhook) -> None:
    # A port where nothing listens: the delivery fails, its report must not carry secrets.
    with socket_nobody_listens() as port:
        url = f"mailto://deskpulse:s3cr3t-pw@127.0.0.1:{port}?to=m@example.com" \
              "&from=deskpulse@example.com"
        db.add_alert_rule(make_rule("lyon", LYON, "negative", [url, webhook.url()]))
        burst(db, "k1")
        result = run_pass(db, now=T0 + 300)
    [(shown, why)] = result.failed.items()
    assert "s3cr3t-pw" not in shown + why and shown.startswith("mailto://deskpulse:")
    assert len(webhook.posts) == 1


def test_dry_run_sends_and_records_nothing(db: Store, webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
    burst(db, "k1")
    result = run_pass(db, now=T0 + 300, dry_run=True)
    assert [m.title for m in result.sent.values()] == ["DeskPulse: 1 new alert"]
    assert webhook.posts == [] and db.notify_log() == []


def health_shaped(found: list[dict[str, Any]]) -> Any:
    """A stand-in for deskpulse.reports.health.health_alerts with its signature, reading
    the alerts the test sets in `found`; it honours the site filter."""
    def health_alerts(store: Store, *, now: float, site: str | None = None
                      ) -> list[dict[str, Any]]:
        return [a for a in found if site is None or a["site"].startswith(site)]
    return health_alerts


def test_health_alerts_go_through_the_same_path(db: Store, webhook: Webhook) -> None:
    db.add_alert_rule(make_rule("quiet", "acme/north", "silent", [webhook.url()]))
    db.add_alert_rule(make_rule("full", PARIS, "flash", [webhook.url("flash")]))
    found = [
        {"kind": "silent", "device_id": "k1", "site": LYON, "since": T0,
         "message": "kiosk k1 has sent nothing since 09:00", "key": "silent:k1"},
        {"kind": "flash", "device_id": "k1", "site": LYON, "since": T0,
         "message": "kiosk k1 flash 93% full", "key": "flash:k1"},  # not under PARIS
    ]
    health = health_shaped(found)
    run_pass(db, now=T0, health_alerts=health)
    run_pass(db, now=T0 + 300, health_alerts=health)
    assert [(p["path"], p["title"]) for p in webhook.posts] == [
        ("/hook", "DeskPulse: 1 new alert")]
    assert "kiosk k1 has sent nothing since 09:00" in webhook.posts[0]["message"]
    found.clear()
    run_pass(db, now=T0 + 600, health_alerts=health)
    assert webhook.posts[-1]["title"] == "DeskPulse: 1 resolved"


def test_two_passes_at_once_send_once(db_target: str, webhook: Webhook) -> None:
    """On each engine: the lease is the database's, whichever it is."""
    with open_store(db_target) as store:
        chain(store)
        store.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
        burst(store, "k1")
    def first(deliver_to: Deliver) -> PassResult:
        with open_store(db_target) as store:
            return run_pass(store, now=T0 + 300, deliver_to=deliver_to)

    def second() -> PassResult:
        with open_store(db_target) as store:
            return run_pass(store, now=T0 + 300)

    results = dict(zip(("first", "second"), at_once(first, second), strict=True))
    assert results["second"].held is False and results["first"].held is True
    assert len(webhook.posts) == 1
    # Released after the pass: the next one takes it.
    with open_store(db_target) as store:
        assert store.take_lease(NOTIFY_LEASE, "someone", now=time.time(), seconds=60)


class socket_nobody_listens:  # noqa: N801 -- used as a context manager
    """A port bound but not listening: connections to it are refused."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_the_plan_for_problems_whose_messages_did_not_all_go_out() -> None:
    rule = make_rule("lyon", LYON, "negative", ["json://127.0.0.1:9/hook"])
    dest = destination_id("json://127.0.0.1:9/hook")
    back = LogEntry("lyon", dest, "negative:k1", 10, 20, 50, "k1: 4 of 5")  # resolved at 50
    untold = LogEntry("lyon", dest, "negative:k2", 10, None, None, "k2: 4 of 4")
    seen, forget, notices = plan_notices([rule], [back, untold],
                                         {"lyon": {"negative:k1": "k1: 6 of 7"}}, 60)
    # k1 came back before its resolution was delivered: for the reader it never stopped,
    # so neither a resolution nor a new opening; k2 went before its opening was delivered:
    # forgotten, nobody hears of it.
    assert notices == {}
    assert seen == [LogEntry("lyon", dest, "negative:k1", 10, 20, None, "k1: 6 of 7")]
    assert forget == [untold]


def test_a_filling_flash_from_the_health_module_is_sent_and_resolved(db: Store,
                                                                      webhook: Webhook) -> None:
    """The device-health kinds through deskpulse.reports.health itself (the default of a
    pass): a kiosk reporting its flash 90% full, then nearly empty after a clean-up."""
    db.add_alert_rule(make_rule("full", "acme/north", "flash", [webhook.url()]))
    at = int(time.time()) + 60  # after the chain's serial syncs, stamped by the host clock
    push_with_fill(db, "k1", 0.9, at)
    run_pass(db, now=at + 60)
    run_pass(db, now=at + 120)
    [post] = webhook.posts
    assert post["title"] == "DeskPulse: 1 new alert"
    assert "- [full, acme/north] Desk k1 (k1): flash 90% full" in post["message"]
    push_with_fill(db, "k1", 0.2, at + 180)
    run_pass(db, now=at + 240)
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert",
                                                   "DeskPulse: 1 resolved"]


def push_with_fill(store: Store, device_id: str, fill: float, at: int) -> None:
    """A push of one response at `at` whose status says the kiosk's flash fill."""
    seq = (store.last_seq(device_id) or 0) + 1
    store.store_batch(device_id, [
        Response(seq=seq, rating=5, scale=5, told_next="yes", latency_s=2.0, rapid=False,
                 closed=False, boot=1, uptime_s=1000 + seq, wall=at, config_version=1)],
        [], {"log": {"fs_fill": fill}}, "wifi", now=at)
