"""`deskpulse serve` against clients that hold connections without finishing a request
(docs/wifi.md, "Server limits"), on the real server in its own process, on 127.0.0.1.

A server with 256 file descriptors meets a flood of a few hundred connections that send
nothing or trickle a request head a byte at a time, renewed as the server drops them:
signed pushes still get through and are stored exactly once, the log holds no traceback
and reports the flood in a few lines; once the flood stops renewing, every slow
connection is cut at the request deadline. And a client that goes away in the middle of
its body is its own business: one line in the log, nothing stored, no 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import http.client
import logging
import re
import select
import selectors
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_server import PATIENCE, STATUS, make_responses, register, snapshot

from deskpulse import cli
from deskpulse.server.guard import ConnectionGuard, connection_cap, limits_for
from deskpulse.sim.push_client import PushClient, batch_path, push_batch
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store

OPEN_FILES = 256
FLOOD = 300  # connections kept open at once: more than the server's cap under 256 files
MOST_OPENED = 20_000  # a bound on the whole flood, whatever the machine's speed
RENEW_PER_ROUND = 100  # connections opened again per 50 ms round, at most
REQUEST_TIMEOUT = "2"  # seconds; short so that the test is quick (never asserted)


class Flood:
    """FLOOD connections to the server, kept open (each one the server drops is opened
    again while `renew` is set); every other one trickles a never-ending request head."""

    def __init__(self, port: int, size: int) -> None:
        self.port = port
        self.size = size
        self.renew = threading.Event()
        self.renew.set()
        self.done = threading.Event()
        self.selector = selectors.DefaultSelector()
        self.opened = 0
        self.dropped = 0  # closed or reset by the server
        self.errors: list[str] = []
        self._trickling: set[socket.socket] = set()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def open(self) -> int:
        return len(self.selector.get_map())

    def start(self) -> Flood:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.done.set()
        self._thread.join(PATIENCE)
        for key in list(self.selector.get_map().values()):
            self._forget(key.fileobj)  # type: ignore[arg-type]
        self.selector.close()

    def _run(self) -> None:
        try:
            while not self.done.is_set():
                for _ in range(RENEW_PER_ROUND):
                    if (not self.renew.is_set() or self.open >= self.size
                            or self.opened >= MOST_OPENED):
                        break
                    self._connect()
                for sock in list(self._trickling):
                    with contextlib.suppress(OSError):  # a reset shows as readable
                        sock.send(b"a")
                for key, _ in self.selector.select(timeout=0.05):
                    sock = key.fileobj
                    try:
                        gone = sock.recv(4096) == b""  # type: ignore[union-attr]
                    except ConnectionError:
                        gone = True
                    if gone:
                        self.dropped += 1
                        self._forget(sock)  # type: ignore[arg-type]
        except Exception as exc:  # reported by the test
            self.errors.append(repr(exc))

    def _connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        sock.setblocking(False)
        self.opened += 1
        if self.opened % 2:
            with contextlib.suppress(OSError):
                sock.send(b"POST /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            self._trickling.add(sock)
        self.selector.register(sock, selectors.EVENT_READ)

    def _forget(self, sock: socket.socket) -> None:
        self._trickling.discard(sock)
        self.selector.unregister(sock)
        sock.close()


def wait_until(condition: object, what: str) -> None:
    """Wait for something the server or the flood does, bounded by PATIENCE."""
    deadline = time.monotonic() + PATIENCE
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.05)


def flood_lines(log: list[str]) -> list[str]:
    return [line for line in log if re.search(
        r"connections open|connections (dropped|refused|cut)|cut off|accept", line)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ServeProcess, sqlite3.Connection]]:
    conn = open_store(tmp_path / "served.db")
    server = ServeProcess(tmp_path / "served.db")
    try:
        yield server, conn
    finally:
        server.stop()
        conn.close()


@pytest.mark.slow
def test_a_flood_of_idle_and_slow_connections_leaves_room_for_the_kiosks(
        tmp_path: Path) -> None:
    dbfile = tmp_path / "served.db"
    conn = open_store(dbfile)
    kiosks = [register(conn, tmp_path, f"k{n}") for n in range(3)]
    server = ServeProcess(dbfile, open_files=OPEN_FILES,
                          extra_args=("--request-timeout", REQUEST_TIMEOUT))
    flood = Flood(server.port, FLOOD)
    network_errors = 0
    try:
        assert any(f"at most {connection_cap(OPEN_FILES)} connections" in line
                   for line in server.log), server.log
        assert connection_cap(OPEN_FILES) < FLOOD
        flood.start()
        wait_until(lambda: any("connections open" in line for line in server.log),
                   "the server reaching its connection cap")
        # Meanwhile each kiosk pushes three batches, each on a new connection as the
        # firmware does, retrying after a network error as the firmware would.
        for batch in range(3):
            for kiosk in kiosks:
                responses = make_responses(1 + 10 * batch, 10)
                for _attempt in range(20):
                    request, nonce = kiosk.request(responses)
                    try:
                        with PushClient(server.url, timeout=30) as client:
                            answer = client.send(request, kiosk.key, nonce)
                    except (OSError, http.client.HTTPException):
                        network_errors += 1
                        continue
                    assert answer.ok and answer.acked == responses[-1].seq, answer
                    break
                else:
                    raise AssertionError(f"{kiosk.device_id} never got through")
        assert flood.renew.is_set() and flood.open > 0 and flood.errors == []
        during = flood.opened
        # The flood stops renewing but keeps trickling: the server must cut every
        # connection left, idle or slow, at the request deadline.
        flood.renew.clear()
        wait_until(lambda: flood.open == 0, "every slow connection cut")
        assert flood.errors == []
        assert server.healthy()
    finally:
        flood.stop()
        server.stop()
    for kiosk in kiosks:
        assert [r["seq"] for r in conn.responses_of(kiosk.device_id)] == list(
            range(1, 31))
    conn.close()
    assert during > FLOOD  # the server dropped connections to make room, and they came back
    assert network_errors <= 3, network_errors
    assert not any("Traceback" in line or "ERROR" in line for line in server.log), (
        server.log[-20:])
    # Thousands of connections dropped or cut, and a handful of lines saying so: the
    # first at once, then counts (one a minute, and one at shutdown).
    lines = flood_lines(server.log)
    assert 2 <= len(lines) <= 4, lines
    counts = " ".join(lines[1:])
    assert re.search(r"\d+ connections cut at the request deadline", counts), lines
    assert re.search(r"\d+ connections dropped to make room", counts), lines


@pytest.mark.slow
def test_a_client_gone_mid_body_is_one_line_and_stores_nothing(
        served: tuple[ServeProcess, sqlite3.Connection], tmp_path: Path) -> None:
    server, conn = served
    kiosk = register(conn, tmp_path, "front-1")
    before = snapshot(conn)
    request, _ = kiosk.request(make_responses(1, 20))
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(f"POST {batch_path('front-1')} HTTP/1.1\r\nHost: x\r\n{head}\r\n"
                     .encode() + request.body[:len(request.body) // 2])
    wait_until(lambda: any("in the middle of a push" in line for line in server.log),
               "the server noticing the client went away")
    assert not any("Traceback" in line or "ERROR" in line or " 500" in line
                   for line in server.log), server.log
    assert snapshot(conn) == before
    answer = push_batch(server.url, "front-1", kiosk.key, kiosk.nonce(), STATUS, [],
                        make_responses(1, 20))
    assert answer.ok and answer.new == 20


@pytest.mark.slow
def test_an_endless_request_head_is_cut(served: tuple[ServeProcess, sqlite3.Connection]) -> None:
    server, _ = served
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"POST /v1/health HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        with contextlib.suppress(ConnectionError):
            for _ in range(100):  # 100 KiB of headers, never ending the head
                sock.sendall(b"X-Padding: " + b"p" * 1000 + b"\r\n")
            answer = sock.recv(100)
    assert not answer.startswith(b"HTTP/1.1 200")
    wait_until(lambda: any("request head over" in line for line in server.log),
               "the server cutting the head")
    assert server.healthy()


@pytest.mark.parametrize(("option", "message"), [
    (["--max-connections", "100000"], "--max-connections 100000: use 1-"),
    (["--max-connections", "0"], "--max-connections 0: use 1-"),
    (["--request-timeout", "0"], "--request-timeout must be a positive number"),
    (["--writers", "0"], "--writers 0: use 1-16"),
    (["--writers", "17"], "--writers 17: use 1-16"),
])
def test_limits_beyond_reason_are_one_sentence(tmp_path: Path, option: list[str],
                                               message: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "--db", str(tmp_path / "d.db"), "--port", "0", *option]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"deskpulse: {message}") and "Traceback" not in err


def test_failed_accepts_are_counted_not_logged_one_by_one(
        caplog: pytest.LogCaptureFixture) -> None:
    """What asyncio reports for each failed accept() once descriptors run out (hundreds
    a second): one line, then one line with the count; anything else still goes to
    asyncio's own handler."""
    guard = ConnectionGuard(limits_for())
    seen: list[str] = []

    async def flood() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda loop, context: seen.append(context["message"]))
        guard.attach(loop)
        for _ in range(1000):
            loop.call_exception_handler({
                "message": "socket.accept() out of system resource",
                "exception": OSError(errno.EMFILE, "Too many open files")})
        loop.call_exception_handler({"message": "something else"})
        guard.flood.flush()

    caplog.set_level(logging.WARNING, logger="deskpulse.serve")
    asyncio.run(flood())
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert "cannot accept a connection: Too many open files" in lines[0]
    assert "999 failed accepts" in lines[1]
    assert seen == ["something else"]


@pytest.mark.slow
def test_a_body_slower_than_the_minimum_rate_is_cut(tmp_path: Path) -> None:
    """A signed push whose body trickles in a byte at a time: cut at the body's deadline
    (request timeout + length at 1 KiB/s), nothing stored, and no 500."""
    dbfile = tmp_path / "served.db"
    conn = open_store(dbfile)
    kiosk = register(conn, tmp_path, "front-1")
    before = snapshot(conn)
    request, _ = kiosk.request(make_responses(1, 20))
    head = "".join(f"{name}: {value}\r\n" for name, value in request.headers.items())
    server = ServeProcess(dbfile, extra_args=("--request-timeout", "1"))
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(f"POST {batch_path('front-1')} HTTP/1.1\r\nHost: x\r\n{head}\r\n"
                         .encode())
            answer = b""
            deadline = time.monotonic() + PATIENCE
            with contextlib.suppress(ConnectionError):
                for byte in request.body:  # never all of it: the server cuts first
                    sock.sendall(bytes([byte]))
                    if select.select([sock], [], [], 0.1)[0]:
                        answer = sock.recv(100)
                        break
                    assert time.monotonic() < deadline
        assert not answer.startswith(b"HTTP/"), answer
        wait_until(lambda: any("cut off at the request deadline" in line
                               for line in server.log), "the body's deadline")
        assert snapshot(conn) == before
    finally:
        server.stop()
        conn.close()
    assert not any("Traceback" in line or "ERROR" in line for line in server.log), server.log
