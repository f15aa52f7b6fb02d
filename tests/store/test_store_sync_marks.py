"""What the dashboard watches in the store, on both engines: the syncs recorded after a
given one (the poll of every `serve` process for other processes' pushes) and each
kiosk's last sync."""

from __future__ import annotations

from deskpulse.protocol.batch import Anchor, Response
from deskpulse.store import open_store

T0 = 1_780_000_000
STATUS = {"board": "esp32-devkitc-ssd1680", "firmware": "test"}


def _one(seq: int) -> list[Response]:
    return [Response(seq=seq, rating=4, scale=4, told_next="yes", latency_s=1.0,
                     rapid=False, closed=False, boot=1, uptime_s=10 * seq,
                     wall=T0 + 10 * seq, config_version=1)]


def test_sync_marks_and_last_syncs(db_target: str) -> None:
    with open_store(db_target) as store:
        assert store.sync_marks(None, 1) == [] and store.last_syncs() == {}
        for n, (device, at) in enumerate([("a", T0), ("b", T0 + 5), ("a", T0 + 9)], 1):
            store.store_batch(device, _one(n), [Anchor(1, 0, T0, 2)], STATUS, "wifi",
                              now=at)
        marks = store.sync_marks(0, 100)
        assert [device for _, device in marks] == ["a", "b", "a"]
        ids = [sync_id for sync_id, _ in marks]
        assert ids == sorted(ids) and len(set(ids)) == 3
        assert store.sync_marks(None, 1) == [marks[-1]]  # the newest alone
        assert store.sync_marks(ids[0], 100) == marks[1:]
        assert store.sync_marks(ids[0], 1) == marks[1:2]
        assert store.sync_marks(ids[-1], 100) == []
        assert store.last_syncs() == {"a": T0 + 9, "b": T0 + 5}


def test_sync_marks_also_finds_the_skipped_ids_asked_for(db_target: str) -> None:
    with open_store(db_target) as store:
        for n, device in enumerate(["a", "b", "c"], 1):
            store.store_batch(device, _one(n), [Anchor(1, 0, T0, 2)], STATUS, "wifi",
                              now=T0 + n)
        (first, _), (second, _), (third, _) = store.sync_marks(0, 100)
        assert store.sync_marks(third, 100, [second, third + 7]) == [(second, "b")]
        assert store.sync_marks(second, 100, [first]) == [(first, "a"), (third, "c")]
