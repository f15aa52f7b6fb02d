"""Refused pushes recorded in the store (device health, issue 17): real refused pushes
(wrong key, replay, unknown id, clash, malformed) end up counted once per (id, reason,
hour), and a flood of bad pushes makes a bounded number of writes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from test_server import Kiosk, make_responses, register

from deskpulse.server.app import create_app
from deskpulse.server.refusals import RefusalRecorder
from deskpulse.server.writer import WriterProcess
from deskpulse.store import health, open_store
from deskpulse.store.base import EARLIEST, Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(tmp_path / "deskpulse.db") as opened:
        yield opened


def counts(store: Store) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = {}
    for row in store.push_refusals(EARLIEST):
        out[row.device_id, row.reason] = out.get((row.device_id, row.reason), 0) + row.count
    return out


def test_real_refused_pushes_are_recorded_aggregated(store: Store, tmp_path: Path) -> None:
    front = register(store, tmp_path, "front-1")
    thief = Kiosk("front-1", bytes(32))  # the right id, a wrong key (a re-provisioned kiosk)
    stranger = Kiosk("nobody-9", bytes(32))
    app = create_app(store.location)
    with TestClient(app) as client:
        def send(kiosk: Kiosk, first_seq: int, *, nonce: str | None = None,
                 rating: int = 3) -> int:
            request, _ = kiosk.request(make_responses(first_seq, 2, rating=rating),
                                       nonce=nonce)
            return client.post(request.path, content=request.body,
                               headers=dict(request.headers)).status_code

        assert send(front, 1) == 200
        assert [send(thief, 10) for _ in range(5)] == [401] * 5
        assert send(front, 3, nonce="1.1") == 409  # a replayed nonce
        assert [send(stranger, 1) for _ in range(3)] == [404] * 3
        assert client.post("/v1/devices/front-1/batches", content=b"x",
                           headers={"content-type": "text/plain"}).status_code == 415
        assert send(front, 1, rating=4) == 422  # records that clash with the stored ones
        # Counted in memory: nothing is written per refusal.
        assert app.state.deskpulse.refusals.writes == 0
    # The server stopping writes what it counted: one write.
    assert app.state.deskpulse.refusals.writes == 1
    assert counts(store) == {("front-1", "signature"): 5, ("front-1", "replayed"): 1,
                             ("nobody-9", "unknown_device"): 3, ("front-1", "malformed"): 1,
                             ("front-1", "clash"): 1}
    (signature,) = [r for r in store.push_refusals(EARLIEST) if r.reason == "signature"]
    assert "signature does not match" in signature.message
    assert len(store.responses_of("front-1")) == 2  # and nothing of them was stored


def test_refusals_are_written_while_the_server_runs(store: Store, tmp_path: Path) -> None:
    register(store, tmp_path, "front-1")
    thief = Kiosk("front-1", bytes(32))
    app = create_app(store.location, refusal_interval_s=0.05)
    with TestClient(app) as client:
        request, _ = thief.request(make_responses(1, 1))
        assert client.post(request.path, content=request.body,
                           headers=dict(request.headers)).status_code == 401
        deadline = time.monotonic() + 60  # an upper bound, never asserted as a duration
        while not store.push_refusals(EARLIEST) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert counts(store) == {("front-1", "signature"): 1}


def test_a_flood_of_bad_pushes_makes_a_bounded_number_of_writes(
        store: Store, tmp_path: Path) -> None:
    """10,000 refusals, under one id and under 10,000 made-up ids: one write each time,
    memory bounded by max_pending, the table by the store's bound on unknown ids."""
    register(store, tmp_path, "front-1")
    database = WriterProcess(store.location)

    async def flood() -> RefusalRecorder:
        recorder = RefusalRecorder(database, interval_s=3600, max_pending=100,
                                   registered=lambda device_id: device_id == "front-1")
        for n in range(10_000):
            recorder.note("front-1", 401, "the signature does not match")
            recorder.note(f"made-up-{n}", 404, f"no device made-up-{n} is registered")
        assert recorder.pending <= 100 + 1  # its own ids, then the others' one key
        recorder.note("front-1", 409, "replayed")  # a kiosk is never folded in
        await recorder.flush()
        return recorder

    try:
        recorder = asyncio.run(flood())
    finally:
        database.close()
    assert recorder.writes == 1
    got = counts(store)
    assert got[("front-1", "signature")] == 10_000 and got[("front-1", "replayed")] == 1
    made_up = {device for device, reason in got if device.startswith("made-up-")}
    assert len(made_up) == health.MAX_UNKNOWN_IDS
    assert sum(n for (device, _), n in got.items() if device != "front-1") == 10_000
    assert len(store.push_refusals(EARLIEST)) == health.MAX_UNKNOWN_IDS + 3


def test_a_503_and_a_malformed_id_are_not_recorded(store: Store) -> None:
    database = WriterProcess(store.location)

    async def note() -> RefusalRecorder:
        recorder = RefusalRecorder(database, interval_s=3600)
        recorder.note("front-1", 503, "the database is not available")
        recorder.note("bad id!", 400, "bad device id")
        assert recorder.pending == 0
        await recorder.flush()
        return recorder

    try:
        assert asyncio.run(note()).writes == 0
    finally:
        database.close()
