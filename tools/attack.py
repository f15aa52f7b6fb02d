"""Attack the stores of responses and count what survives: the figures of docs/reliability.md.

Run from the repository root:  .venv/bin/python tools/attack.py [--quick] [--json]

Three attacks, each on the real programs, each ending with an exact account:

- **sync kills**: a simulated kiosk holds prefilled responses while customers keep tapping;
  `deskpulse sync` runs in its own process and is SIGKILLed at a random moment, again and
  again; a config with another device_id is offered on the way (it must never split the
  kiosk's history). A last clean sync must leave the database holding every response
  exactly once under the kiosk's one id.
- **console fuzz**: random and mutated command lines (damaged checksums, flipped bytes,
  overlong and binary lines, out-of-range TIME, broken JSON and identity changes in CONFIG
  uploads with correct CRCs) on the kiosk's console. The kiosk must answer every line that
  deserves an answer, keep its id, clock bounds and records, and sync all of them after.
- **serve kills**: kiosks push signed batches to `deskpulse serve`, which is SIGKILLed at
  random moments and restarted on the same port. Every batch is retried until acknowledged;
  the database must then hold exactly the acknowledged responses, none twice.

Durations here are seeds for randomness, never expectations; the figures are counts.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_serve import Kiosk, _read_answer, register_kiosks  # noqa: E402
from bench_sync import BOARD, PtyRelay, prefill, synthetic_responses  # noqa: E402

from deskpulse.device.inspect import read_state  # noqa: E402
from deskpulse.device.link import Link  # noqa: E402
from deskpulse.device.ports import open_port  # noqa: E402
from deskpulse.device.session import Session  # noqa: E402
from deskpulse.device.sync import sync  # noqa: E402
from deskpulse.protocol.frames import FrameParser, command_line  # noqa: E402
from deskpulse.sim.push_client import build_request, read_answer  # noqa: E402
from deskpulse.sim.serve_process import ServeProcess  # noqa: E402
from deskpulse.sim.simulator import Simulator  # noqa: E402
from deskpulse.store import open_store

DEVICE_ID = "attacked-1"
PATIENCE = 300.0  # a bound for a slow machine, never an expectation


class AttackFailed(Exception):
    pass


def _customers(count: int) -> str:
    """A script of `count` customers a few simulated seconds apart, then idle."""
    lines = []
    for n in range(count):
        lines += [f"rate {1 + n % 4}", ("yes", "no")[n % 2], "wait 7"]
    return "\n".join(lines) + "\n"


def _sync_process(port: str, dbfile: Path, config: Path | None) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "deskpulse.cli", "sync", "--port", port, "--db", str(dbfile)]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _exactly_once(dbfile: Path) -> dict[str, int]:
    """Stored rows per device; raises when a (device, seq) or a customer appears twice."""
    with open_store(dbfile) as conn:
        devices = dict(conn.connection.execute(
            "SELECT device_id, count(*) FROM responses GROUP BY device_id").fetchall())
        twice = conn.connection.execute(
            """SELECT count(*) FROM (SELECT boot, uptime_s, latency_ds FROM responses
               GROUP BY boot, uptime_s, latency_ds, rating HAVING count(*) > 1)""").fetchone()
    if twice[0]:
        raise AttackFailed(f"{twice[0]} customers stored twice: {devices}")
    return devices


# -- sync kills ----------------------------------------------------------------------------


def _pending(port_path: str) -> int:
    """How many responses the kiosk holds unacknowledged (a HELLO of its own)."""
    with contextlib.closing(open_port(port_path)) as port:
        hello = Session(Link(port, name=port_path)).hello()
    return hello.next_seq - hello.first_seq


def attack_sync(folder: Path, kills: int, prefilled: int, customers: int,
                rng: random.Random) -> dict[str, Any]:
    state, dbfile = folder / "sync-state", folder / "sync.db"
    responses, anchors = synthetic_responses(prefilled, per_boot=prefilled)
    prefill(state, responses, anchors, DEVICE_ID)
    script = folder / "customers.txt"
    script.write_text(_customers(customers))
    renamed = folder / "renamed.json"
    renamed.write_text(json.dumps({"device_id": "someone-else", "version": 2}))
    killed = finished = refused = 0
    flaky = {"on": False}
    victim: dict[str, Any] = {"proc": None, "bytes": 0, "kill_after": None}

    def tamper(direction: str, data: bytes) -> bytes:
        proc = victim["proc"]
        if direction == "to_host" and proc is not None and victim["kill_after"] is not None:
            victim["bytes"] += len(data)
            if victim["bytes"] >= victim["kill_after"] and proc.poll() is None:
                proc.kill()  # mid-exchange, at a byte the dice chose
                return b""
        # A flaky cable that loses every ACK line, or every answer to one: either way the
        # host cannot know whether the kiosk freed its records.
        if flaky["on"] and (b" ACK " in data if direction == "to_device"
                            else b"\xd5\xaaA" in data):
            return b""
        return data

    with Simulator(BOARD, state, script=script) as sim, \
            PtyRelay(sim.console_path, tamper=tamper) as relay:
        for n in range(kills):
            # One sync in three offers a config with another id, and one in two loses the
            # ACK's answers: the rename must never apply while the kiosk may hold records
            # the database has not confirmed. A sync that offers a rename runs to its end
            # (the rename is what is tried); the others die after a random number of
            # bytes from the kiosk, up to about what the sync would move.
            flaky["on"] = n % 2 == 0
            rename = n % 3 == 0
            pending = _pending(relay.path)
            victim.update(proc=None, bytes=0, kill_after=None if rename else rng.randint(
                1, 400 + 4 * pending))
            proc = _sync_process(relay.path, dbfile, renamed if rename else None)
            victim["proc"] = proc
            proc.wait(PATIENCE)
            victim["proc"] = None
            if proc.returncode == -signal.SIGKILL:
                killed += 1
            else:
                finished += 1
                refused += proc.returncode != 0
            proc.communicate()
        flaky["on"] = False
        deadline = time.monotonic() + PATIENCE
        while True:  # until the script has played: every customer tapped
            with contextlib.closing(open_port(relay.path)) as port:
                sync(port, dbfile)
            # Every customer is stored, under whichever id the kiosk had at the time.
            if sum(_exactly_once(dbfile).values()) >= prefilled + customers \
                    or time.monotonic() > deadline:
                break
            time.sleep(1)
    final_id = read_state(BOARD, state).status.get("device_id")
    stored = _exactly_once(dbfile)
    expected = prefilled + customers
    # A rename is allowed once the database holds everything the kiosk recorded; the
    # customers then continue under the new id, none of them twice.
    if sum(stored.values()) != expected:
        raise AttackFailed(f"sync kills: stored {stored}, expected {expected} in all")
    return {"kills": killed, "syncs_finished": finished, "refused_or_failed": refused,
            "renames_offered": (kills + 2) // 3, "acks_lost_in": (kills + 1) // 2,
            "kiosk_id_at_end": final_id, "ids_stored": sorted(stored), "responses": expected,
            "stored": sum(stored.values()), "lost": 0, "doubled": 0}


# -- console fuzz --------------------------------------------------------------------------


def _valid_lines(rng: random.Random) -> list[str]:
    """Commands a host could send (with checksums), except an ACK, which would free."""
    bad_config = rng.choice([b'{"scale": 3,,}', b'{"device_id": "x" "scale": 3}',
                             b'{"version": 01}', b'[' * 40 + b']' * 40,
                             b'{"device_id": "stolen-id"}', b'{"scale": NaN}'])
    chunk = base64.b64encode(bad_config[:96]).decode()
    return [f"HELLO {rng.randint(0, 3)}", f"PULL {rng.randint(0, 10**6)} {rng.randint(0, 9999)}",
            f"TIME {rng.choice([0, 946684799, 4102444801, 4294967295, 10**11])}",
            f"CONFIG BEGIN {len(bad_config)} {binascii.crc32(bad_config):08x}",
            f"CONFIG DATA {chunk}", "CONFIG END", "CONFIG BEGIN 99999999 0",
            "NOPE 1 2 3"]


def _mutated(line: bytes, rng: random.Random) -> bytes:
    data = bytearray(line)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data)) if data else 0
        action = rng.randrange(4)
        byte = rng.choice([rng.randrange(1, 256), 10, 13, 32, 42])
        if byte in (3, 4):  # Ctrl-C / Ctrl-D go to the REPL, never to the sync
            byte = 0x41
        if action == 0 and data:
            data[at] = byte
        elif action == 1:
            data.insert(at, byte)
        elif action == 2 and data:
            del data[at]
        else:
            data += bytes(rng.randrange(32, 127) for _ in range(rng.randint(1, 300)))
    return bytes(data)


def attack_console(folder: Path, lines: int, prefilled: int,
                   rng: random.Random) -> dict[str, Any]:
    state, dbfile = folder / "fuzz-state", folder / "fuzz.db"
    responses, anchors = synthetic_responses(prefilled, per_boot=prefilled)
    prefill(state, responses, anchors, DEVICE_ID)
    parser = FrameParser()
    frames: dict[str, int] = {}
    sent = 0
    with Simulator(BOARD, state) as sim, contextlib.closing(open_port(sim.console_path)) as port:
        for n in range(lines):
            tag = n % 0xFFFF + 1
            wire = command_line(tag, rng.choice(_valid_lines(rng)))
            if rng.random() < 0.6:
                wire = _mutated(wire, rng)
            if not wire.endswith(b"\n"):
                wire += b"\n"
            port.write(wire)
            sent += 1
            # Paced like a host that waits for answers: the console buffer is small.
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                data = port.read(max(1, port.in_waiting))
                for frame in parser.feed(data):
                    frames[frame.type] = frames.get(frame.type, 0) + 1
                if not port.in_waiting and frames:
                    break
        port.reset_input_buffer()
        summary = sync(port, dbfile)
    stored = _exactly_once(dbfile)
    device = read_state(BOARD, state)
    if stored != {DEVICE_ID: prefilled} or summary.new != prefilled:
        raise AttackFailed(f"console fuzz: stored {stored}, expected {prefilled}")
    if device.status.get("device_id") != DEVICE_ID:
        raise AttackFailed(f"console fuzz changed the id to {device.status.get('device_id')}")
    return {"lines": sent, "frames": frames, "responses": prefilled, "stored": prefilled,
            "lost": 0, "id_kept": True}


# -- serve kills ---------------------------------------------------------------------------


async def _push_all(url_box: list[str], kiosk: Kiosk, batches: int, size: int,
                    acked: list[tuple[str, int]], stats: dict[str, int]) -> None:
    for _ in range(batches):
        responses, body = kiosk.next_batch(size)
        while True:
            kiosk.count += 1
            nonce = f"{kiosk.boot}.{kiosk.count}"
            request = build_request(kiosk.device_id, kiosk.key, nonce, body)
            host, port = url_box[0].removeprefix("http://").rsplit(":", 1)
            wire = (f"POST {request.path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
                    + "\r\n").encode() + body
            try:
                reader, writer = await asyncio.open_connection(host, int(port))
                try:
                    writer.write(wire)
                    status, headers, answer_body = await asyncio.wait_for(
                        _read_answer(reader), 30)
                finally:
                    writer.close()
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                stats["network_errors"] += 1
                await asyncio.sleep(0.1)
                continue
            answer = read_answer(kiosk.key, nonce, status, headers.get("x-deskpulse-signature"),
                                 answer_body)
            if answer.ok and answer.acked == responses[-1].seq:
                acked += [(kiosk.device_id, r.seq) for r in responses]
                break
            stats[f"answer_{status}"] = stats.get(f"answer_{status}", 0) + 1
            await asyncio.sleep(0.2)


def attack_serve(folder: Path, kills: int, devices: int, batches: int, size: int,
                 rng: random.Random) -> dict[str, Any]:
    dbfile = folder / "served.db"
    kiosks = register_kiosks(dbfile, devices, folder)
    server = ServeProcess(dbfile)
    url_box, port = [server.url], server.port
    acked: list[tuple[str, int]] = []
    stats = {"network_errors": 0}

    async def load() -> None:
        await asyncio.gather(*(_push_all(url_box, k, batches, size, acked, stats)
                               for k in kiosks))

    pushers = threading.Thread(target=asyncio.run, args=(load(),))
    pushers.start()
    done_kills = 0
    tracebacks: list[str] = []

    def keep_tracebacks(log: list[str]) -> None:
        tracebacks.extend(" | ".join(log[i:i + 40])[-600:] for i, line in enumerate(log)
                          if "Traceback" in line)

    try:
        for _ in range(kills):
            pushers.join(rng.uniform(0.1, 0.6))
            if not pushers.is_alive():
                break
            server.kill()
            done_kills += 1
            keep_tracebacks(server.log)
            server = ServeProcess(dbfile, port=port)
        pushers.join(PATIENCE)
    finally:
        server.stop()
    if pushers.is_alive():
        raise AttackFailed("serve kills: the pushers did not finish")
    keep_tracebacks(server.log)
    with open_store(dbfile) as conn:
        rows = set(conn.connection.execute("SELECT device_id, seq FROM responses").fetchall())
    expected = devices * batches * size
    if rows != set(acked) or len(acked) != expected:
        raise AttackFailed(f"serve kills: {len(rows)} stored, {len(acked)} acknowledged, "
                           f"{expected} pushed")
    return {"kills": done_kills, "kiosks": devices, "acknowledged": len(acked),
            "stored": len(rows), "lost": 0, "doubled": 0, **stats,
            "tracebacks_logged": len(tracebacks), "tracebacks": tracebacks[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few of each, for a smoke run")
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    scale = 0.2 if args.quick else 1.0
    results: dict[str, Any] = {"seed": args.seed}
    with tempfile.TemporaryDirectory(prefix="deskpulse-attack-") as tmp:
        folder = Path(tmp)
        attacks = {
            "sync_kills": lambda: attack_sync(folder, int(40 * scale) or 2, 3000, 200, rng),
            "console_fuzz": lambda: attack_console(folder, int(1500 * scale), 500, rng),
            "serve_kills": lambda: attack_serve(folder, int(20 * scale) or 2, 16, 200, 50,
                                                rng),
        }
        try:
            for name, attack in attacks.items():
                start = time.monotonic()
                results[name] = attack()
                results[name]["seconds"] = round(time.monotonic() - start, 1)
        except AttackFailed as exc:
            print(f"attack: FAILED: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        for name, figures in results.items():
            print(f"{name}: {figures}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    signal.signal(signal.SIGINT, signal.default_int_handler)
    sys.exit(main())
