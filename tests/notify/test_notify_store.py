"""The notification methods of the Store (store/notify.py NotifyMethods) on every engine:
rules, the log, the lease, and what `deskpulse db copy` carries over."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest

from deskpulse.errors import DeskPulseError
from deskpulse.notify.rules import make_rule
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.copy import copy_store
from deskpulse.store.notify import LogEntry, SentDigest, destination_id

HOOK = "json://127.0.0.1:9/hook"
MAIL = "mailtos://deskpulse:pw@smtp.example.com?to=m@example.com"


@pytest.fixture
def store(db_target: str) -> Iterator[Store]:
    with open_store(db_target) as opened:
        for path in ("acme", "acme/north", "acme/north/lyon-1"):
            opened.add_site(path)
        yield opened


def test_rules_are_kept_listed_and_removed(store: Store) -> None:
    lyon = make_rule("lyon", "acme/north/lyon-1", "negative", [HOOK, MAIL], window_s=600,
                     negative=0.6, minimum=5, remind_s=86400)
    north = make_rule("north-silent", "acme/north", "silent", [HOOK])
    store.add_alert_rule(north)
    store.add_alert_rule(lyon)
    assert store.alert_rules() == [lyon, north]
    assert store.alert_rules()[0].thresholds == {"window_s": 600, "negative": 0.6,
                                                 "minimum": 5}
    with pytest.raises(DeskPulseError, match="named lyon exists already"):
        store.add_alert_rule(make_rule("lyon", "acme", "flash", [HOOK]))
    with pytest.raises(DeskPulseError, match="no site 'acme/south'"):
        store.add_alert_rule(make_rule("south", "acme/south", "flash", [HOOK]))
    store.remove_alert_rule("lyon")
    assert store.alert_rules() == [north]
    with pytest.raises(DeskPulseError, match="no alert rule named lyon"):
        store.remove_alert_rule("lyon")


def test_a_rule_follows_its_site_and_goes_with_it(store: Store) -> None:
    store.add_alert_rule(make_rule("lyon", "acme/north/lyon-1", "negative", [HOOK]))
    store.save_notify_log([LogEntry("lyon", destination_id(HOOK), "negative:k1", 1, 2, None,
                                    "kiosk k1")])
    store.rename_site("acme/north", "nord")
    assert [rule.site for rule in store.alert_rules()] == ["acme/nord/lyon-1"]
    store.remove_site("acme/nord", force=True)
    assert store.alert_rules() == [] and store.notify_log() == []


def test_the_log_is_written_replaced_and_forgotten(store: Store) -> None:
    store.add_alert_rule(make_rule("lyon", "acme/north/lyon-1", "negative", [HOOK]))
    first = LogEntry("lyon", destination_id(HOOK), "negative:k1", 100, None, None, "k1 bad")
    other = LogEntry("lyon", destination_id(HOOK), "negative:k2", 100, 100, None, "k2 bad")
    store.save_notify_log([first, other])
    delivered = replace(first, notified=160, summary="k1 worse")
    store.save_notify_log([delivered], forget=[other])
    assert store.notify_log() == [delivered]
    # A row of a rule that is gone (removed during a pass) is not written.
    store.save_notify_log([LogEntry("gone", "d", "k", 1, None, None, "x")])
    assert store.notify_log() == [delivered]
    store.remove_alert_rule("lyon")
    assert store.notify_log() == []


def test_one_owner_holds_the_lease_until_it_expires_or_is_released(store: Store) -> None:
    assert store.take_lease("notify", "a", now=1000, seconds=60)
    assert not store.take_lease("notify", "b", now=1030, seconds=60)
    assert store.take_lease("notify", "a", now=1050, seconds=60)  # renewed to 1110
    assert not store.take_lease("notify", "b", now=1100, seconds=60)
    assert store.take_lease("notify", "b", now=1110, seconds=60)  # expired: b takes it
    store.release_lease("notify", "a")  # not a's any more: nothing happens
    assert not store.take_lease("notify", "a", now=1120, seconds=60)
    store.release_lease("notify", "b")
    assert store.take_lease("notify", "a", now=1121, seconds=60)
    assert store.take_lease("digest", "b", now=1121, seconds=60)  # another lease


def test_a_copy_carries_the_rules_and_their_log(store: Store, tmp_path: object) -> None:
    rule = make_rule("lyon", "acme/north/lyon-1", "negative", [HOOK])
    store.add_alert_rule(rule)
    entry = LogEntry("lyon", destination_id(HOOK), "negative:k1", 100, 100, None, "k1 bad")
    store.save_notify_log([entry])
    with open_store(f"{tmp_path}/copy.db") as copy:
        copy_store(store, copy)
        copy_store(store, copy)  # again: nothing changes
        assert copy.alert_rules() == [rule] and copy.notify_log() == [entry]
        copy.remove_alert_rule("lyon")
        copy.add_alert_rule(make_rule("lyon", "acme/north/lyon-1", "negative", [MAIL]))
        with pytest.raises(DeskPulseError, match="alert rule lyon differs"):
            copy_store(store, copy)


def test_sent_digests_are_recorded_follow_their_site_and_are_copied(store: Store,
                                                                   tmp_path: object) -> None:
    lyon = "acme/north/lyon-1"
    first = SentDigest("2026-W48", "ana@example.com", lyon, 1000)
    other = SentDigest("2026-W49", "ana@example.com", lyon, 2000)
    store.record_digests([first, other])
    store.record_digests([replace(first, sent=1500)])  # sent again: its new time
    assert store.sent_digests(["2026-W48"]) == [replace(first, sent=1500)]
    assert store.sent_digests() == [replace(first, sent=1500), other]
    assert store.sent_digests([]) == []
    with open_store(f"{tmp_path}/copy.db") as copy:
        copy_store(store, copy)
        copy_store(store, copy)  # again: nothing changes
        assert copy.sent_digests() == store.sent_digests()
    store.rename_site(lyon, "lyon-centre")
    assert {d.site for d in store.sent_digests()} == {"acme/north/lyon-centre"}
    store.remove_site("acme/north/lyon-centre")
    assert store.sent_digests() == []
