"""Several `deskpulse serve` processes on one database (issue 16, a chain behind a load
balancer): exactly-once storage and replay protection hold across them because the
database enforces them, not one process's memory. On every engine (`db_target`): two
servers may share a SQLite file too, and PostgreSQL is what a chain runs them on."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_server import (
    PATIENCE,
    Kiosk,
    LoadResult,
    _push_until_acked,
    make_responses,
    register,
)

from deskpulse.sim.push_client import PushAnswer, PushClient
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store


def _at_once(urls: list[str], kiosk: Kiosk, responses: list, *, same_nonce: bool
             ) -> list[PushAnswer]:
    """The same batch to every server at the same moment: one request replayed (the same
    nonce), or a kiosk's retry that reached another server (a new nonce)."""
    shared = kiosk.request(responses)
    requests = [shared if same_nonce or n == 0 else kiosk.request(responses)
                for n in range(len(urls))]
    answers: list[PushAnswer | None] = [None] * len(urls)
    start = threading.Barrier(len(urls))

    def send(n: int) -> None:
        with PushClient(urls[n], timeout=30) as client:
            request, nonce = requests[n]
            start.wait(PATIENCE)
            answers[n] = client.send(request, kiosk.key, nonce)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(len(urls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(PATIENCE)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


@pytest.mark.slow
def test_two_servers_on_one_database_store_each_batch_once(db_target: str,
                                                           tmp_path: Path) -> None:
    conn = open_store(db_target)
    kiosks = [register(conn, tmp_path, f"k{n:02d}") for n in range(3)]  # type: ignore[arg-type]
    servers = [ServeProcess(db_target), ServeProcess(db_target)]
    urls = [server.url for server in servers]
    try:
        # The month's partition first (PostgreSQL): the race below is about the batch.
        with PushClient(urls[0]) as client:
            request, nonce = kiosks[0].request(make_responses(1, 1))
            assert client.send(request, kiosks[0].key, nonce).ok
        outcomes = []
        for round_ in range(12):
            kiosk = kiosks[round_ % len(kiosks)]
            first = 2 + 50 * (round_ // len(kiosks))
            same_nonce = round_ % 2 == 0
            answers = _at_once(urls, kiosk, make_responses(first, 50), same_nonce=same_nonce)
            assert all(a.verified for a in answers if a.status == 200)
            storing = [a for a in answers if a.ok and a.new == 50]
            other = next(a for a in answers if a not in storing)
            assert len(storing) == 1, answers
            # The other one was refused as a replay (the same nonce, or an older one than
            # the nonce of the winner), or found the batch stored (a retry's new nonce).
            outcomes.append("replay" if other.status == 409 else
                            "duplicate" if other.ok and other.duplicates == 50 else str(other))
            if same_nonce:
                assert outcomes[-1] == "replay"
        assert set(outcomes) <= {"replay", "duplicate"}, outcomes
        for n, kiosk in enumerate(kiosks):
            seqs = [r["seq"] for r in conn.responses_of(kiosk.device_id)]
            assert seqs == list(range(1 if n == 0 else 2, 2 + 200))
    finally:
        for server in servers:
            server.stop()
    conn.close()


@pytest.mark.slow
def test_two_servers_one_killed_mid_load_and_restarted_lose_and_double_nothing(
        db_target: str, tmp_path: Path) -> None:
    conn = open_store(db_target)
    devices, batches, size = 12, 8, 50
    kiosks = [register(conn, tmp_path, f"k{n:02d}") for n in range(devices)]  # type: ignore[arg-type]
    servers = [ServeProcess(db_target), ServeProcess(db_target)]
    urls = [server.url for server in servers]
    pushed, lock = LoadResult(), threading.Lock()
    some_acked = threading.Event()

    def progress() -> None:
        if len(pushed.answers) >= devices * batches // 4:
            some_acked.set()

    threads = [threading.Thread(target=_push_until_acked,
                                args=(urls, k, batches, size, pushed, lock, None, progress))
               for k in kiosks]
    for t in threads:
        t.start()
    restarted = None
    try:
        assert some_acked.wait(PATIENCE)
        servers[0].kill()  # mid-load: its requests in flight get no answer
        restarted = ServeProcess(db_target, port=servers[0].port)
        for t in threads:
            t.join(PATIENCE)
        assert not any(t.is_alive() for t in threads)
    finally:
        for server in (servers[1], restarted):
            if server is not None:
                server.stop()
        servers[0].kill()
    assert pushed.failures == []
    assert pushed.network_errors > 0  # the kill did cut requests off
    assert len(pushed.answers) == devices * batches  # every batch acknowledged
    for kiosk in kiosks:
        stored = conn.responses_of(kiosk.device_id)
        assert [r["seq"] for r in stored] == list(range(1, batches * size + 1))
        assert {r["rating"] for r in stored} == {3}
    # Every response was counted new once: in an answer, or in a commit whose answer the
    # kill swallowed (its retry then reported duplicates).
    assert sum(a.new for a in pushed.answers) <= devices * batches * size
    assert sum(a.new + a.duplicates for a in pushed.answers) == devices * batches * size
    logs = servers[0].log + servers[1].log + (restarted.log if restarted else [])
    assert not any("Traceback" in line for line in logs), logs
    conn.close()
