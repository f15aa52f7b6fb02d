"""Device health in the store's contract (issue 17): refused pushes counted per (claimed
id, reason, hour), unknown ids bounded, old rows removed, copied exactly; and each kiosk's
contacts (last push and last serial sync apart, flash trend, clock, config). Runs on every
engine of test_store.ENGINES."""
# ruff: noqa: F811 -- each test takes the `store` fixture imported below

from __future__ import annotations

import time
from pathlib import Path

from test_desired_config import store  # noqa: F401 -- the fixture: k1 and k2 registered
from test_store import T0, answer

from deskpulse.store import health, open_store
from deskpulse.store.base import EARLIEST, Store
from deskpulse.store.copy import copy_store
from deskpulse.store.health import RefusalCount

HOUR = T0 // 3600 * 3600


def refusal(device_id: str, count: int = 1, *, reason: str = "signature", hour: int = HOUR,
            last: int | None = None, message: str = "the signature does not match"
            ) -> RefusalCount:
    return RefusalCount(device_id, reason, hour, count,
                        last if last is not None else hour + 60, message)


def test_refusals_add_up_per_id_reason_and_hour(store: Store) -> None:
    store.record_refusals([refusal("k1", 3, last=HOUR + 10, message="first"),
                           refusal("k1", 2, last=HOUR + 20, message="second"),
                           refusal("k1", 1, reason="replayed"),
                           refusal("k1", 4, hour=HOUR + 3600, last=HOUR + 3700)], now=HOUR)
    store.record_refusals([refusal("k1", 5, last=HOUR + 15, message="older")], now=HOUR)
    rows = store.push_refusals(HOUR)
    assert rows == [
        RefusalCount("k1", "replayed", HOUR, 1, HOUR + 60, "the signature does not match"),
        # 3 + 2 + 5, the latest sentence and time kept whichever write brought them.
        RefusalCount("k1", "signature", HOUR, 10, HOUR + 20, "second"),
        RefusalCount("k1", "signature", HOUR + 3600, 4, HOUR + 3700,
                     "the signature does not match"),
    ]
    assert store.push_refusals(HOUR + 3599) == rows  # from the hour holding `since` on
    assert store.push_refusals(HOUR + 3600) == rows[2:]
    assert store.push_refusals(HOUR + 7200) == []


def test_unknown_ids_are_bounded_per_hour_and_kiosks_never_are(store: Store) -> None:
    made_up = [refusal(f"x{n:03d}", reason="unknown_device") for n in range(50)]
    store.record_refusals([*made_up, refusal("k2", 7)], now=HOUR)
    rows = store.push_refusals(HOUR)
    own = {r.device_id for r in rows if r.device_id.startswith("x")}
    assert len(own) == health.MAX_UNKNOWN_IDS
    (others,) = [r for r in rows if r.device_id == health.UNKNOWN_OTHERS]
    assert others.count == 50 - health.MAX_UNKNOWN_IDS
    assert [r.count for r in rows if r.device_id == "k2"] == [7]
    # Later in the hour: an id that has its row keeps it, a new one joins the others, a
    # kiosk is counted as itself however many unknown ids came before.
    kept = sorted(own)[0]
    store.record_refusals([refusal(kept, reason="unknown_device"),
                           refusal("y999", reason="unknown_device"),
                           refusal("k1", 2, reason="replayed")], now=HOUR)
    counts = {r.device_id: r.count for r in store.push_refusals(HOUR)
              if r.reason != "signature"}
    assert counts[kept] == 2 and "y999" not in counts
    assert counts[health.UNKNOWN_OTHERS] == 50 - health.MAX_UNKNOWN_IDS + 1
    assert counts["k1"] == 2
    # Another hour has room again.
    store.record_refusals([refusal("y999", reason="unknown_device", hour=HOUR + 3600)],
                          now=HOUR + 3600)
    assert "y999" in {r.device_id for r in store.push_refusals(HOUR + 3600)}


def test_refusals_older_than_the_retention_go_when_new_ones_are_written(store: Store) -> None:
    old = HOUR - health.RETENTION_S - 3600
    store.record_refusals([refusal("k1", hour=old), refusal("k1", hour=HOUR)], now=old)
    assert len(store.push_refusals(EARLIEST)) == 2
    store.record_refusals([refusal("k2")], now=HOUR)
    assert [(r.device_id, r.hour) for r in store.push_refusals(EARLIEST)] == [
        ("k1", HOUR), ("k2", HOUR)]


def test_copied_refusals_keep_the_larger_count_so_a_copy_again_changes_nothing(
        store: Store) -> None:
    store.record_refusals([refusal("k1", 4)], now=HOUR)
    store.record_refusals([refusal("k1", 3), refusal("k2", 2)], copied=True, now=HOUR)
    store.record_refusals([refusal("k1", 3), refusal("k2", 2)], copied=True, now=HOUR)
    assert [(r.device_id, r.count) for r in store.push_refusals(HOUR)] == [("k1", 4),
                                                                          ("k2", 2)]


def test_db_copy_brings_the_refusals_along(store: Store, tmp_path: Path) -> None:
    recent = health.hour_of(time.time())  # the copy removes rows past the retention
    store.record_refusals([refusal("k1", 4, hour=recent),
                           refusal("ghost", 9, reason="unknown_device", hour=recent - 3600)])
    with open_store(tmp_path / "copy.db") as copy:
        copy_store(store, copy)
        copy_store(store, copy)  # again: nothing changes
        assert copy.push_refusals(EARLIEST) == store.push_refusals(EARLIEST)


def status(fill: float, *, dropped: int = 0, clock: dict[str, object] | None = None,
           config_version: int = 3) -> dict[str, object]:
    return {"board": "b", "firmware": "f", "boot": 1, "config_version": config_version,
            "log": {"fs_fill": fill, "dropped": dropped, "unacked": 2},
            "clock": clock if clock is not None else {"known": False}}


def test_contacts_tell_the_last_push_and_the_last_serial_sync_apart(store: Store) -> None:
    store.store_batch("k1", [answer(1, wall=T0 - 86400)], [], status(0.2), "serial",
                      now=T0 - 86400)
    store.store_batch("k1", [answer(2, wall=T0 - 500)], [], status(0.3, dropped=1), "wifi",
                      now=T0 - 400)
    store.store_batch("k1", [answer(3, wall=T0 - 100)], [],
                      status(0.4, dropped=5, clock={"known": True, "wall": T0 + 7}), "wifi",
                      now=T0)
    contacts = {c.device_id: c for c in store.kiosk_contacts(T0 - 3600)}
    k1 = contacts["k1"]
    assert (k1.last_push, k1.last_serial, k1.last_sync) == (T0, T0 - 86400, T0)
    assert k1.last_response == T0 - 100
    assert (k1.fill, k1.dropped, k1.unacked, k1.clock_known) == (0.4, 5, 2, True)
    # The trend's first point: the first contact at or after `since`.
    assert (k1.earlier_at, k1.earlier_fill, k1.earlier_dropped) == (T0 - 400, 0.3, 1)
    k2 = contacts["k2"]  # registered, never heard of
    assert (k2.last_push, k2.last_serial, k2.last_response, k2.fill) == (None,) * 4
    assert k2.status == {}


def test_kiosk_health_joins_contacts_config_and_refusals(store: Store) -> None:
    store.add_site("acme")
    store.add_site("acme/lyon", "store")
    store.assign_kiosk("k1", "acme/lyon")
    store.store_batch("k1", [answer(1, wall=T0 - 100)], [],
                      status(0.5, clock={"known": True, "wall": T0 - 42}, config_version=3),
                      "wifi", now=T0)
    store.save_config({"k1": {"scale": 3}}, now=T0)
    store.record_refusals([refusal("k1", 2, reason="replayed", hour=HOUR,
                                   last=T0 - 50, message="nonce 1.1 is not higher"),
                           refusal("k1", 9, hour=HOUR - 3 * 86400,
                                   last=HOUR - 3 * 86400)], now=T0)
    (k1, k2) = health.kiosk_health(store, now=T0 + 60)
    assert k1.site == "acme/lyon" and k2.site is None
    assert k1.clock_offset_s == -42 and k2.clock_offset_s is None
    assert k1.config_running == 3 and k1.config_desired == 4 and k1.config_behind
    assert not k2.config_behind  # not managed over the air
    # Only the last day's refusals: the older signature ones are history.
    assert k1.refused == {"replayed": 2}
    assert (k1.first_refused, k1.last_refused) == (HOUR, T0 - 50)
    assert k1.refused_message == "nonce 1.1 is not higher"
    assert k1.last_contact == T0 and k2.last_contact is None
