"""Benchmark `deskpulse serve`: signed 50-response batches from many kiosks at once.

Run from the repository root:  .venv/bin/python tools/bench_serve.py [--seconds 10] [--json]

- **deskpulse serve**: the real server in its own process on 127.0.0.1, on a fresh
  database with --devices kiosks registered by `registration.add_device`. This process is the
  load generator: --connections concurrent HTTP/1.1 clients (asyncio), each owning a
  share of the kiosks and pushing their batches one after another (a kiosk never has two
  pushes in flight), every request signed with the kiosk's key and a fresh nonce, every
  answer's signature checked. It runs for --seconds, then lets the requests in flight
  finish. Afterwards the database must hold exactly the responses acknowledged.
- **store_batch (ceiling)**: the same batches that the server acknowledged, in the same
  order, stored directly into a fresh SQLite database by `db.store_batch`, one commit
  per batch, in one thread: the cost of the storage alone, which the server approaches.

With --new-connections every push opens its own TCP connection, as a kiosk that wakes,
pushes and sleeps does; by default the clients keep their connections alive.

--db picks the engine: `sqlite` (a file in a temporary folder, the default), `postgresql`
(a throwaway PostgreSQL 15 cluster, durable as a real one: tools/bench_pg.py), or the URL
of an empty PostgreSQL database of yours. The ceiling runs on the same engine (with a
URL: on --ceiling-db, or not at all). --instances N starts N `deskpulse serve` processes
on that one database, the clients spread over them as a load balancer would; --writers N
gives each N writer processes.

Besides the rates and the CPU per batch of each process, it prints what each writer did
with the load's wall time (the line each logs when it stops, server/writer.py
WriterTimes): its own CPU, waiting for the database server's answers, committing,
answering, and waiting for jobs. A writer that is seldom waiting for jobs is what the
server waits on.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deskpulse.device import registration
from deskpulse.protocol.batch import RECEIPT_SOURCE, Anchor, Response, encode_batch
from deskpulse.sim.push_client import build_request, read_answer
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store

WALL_BASE = 1_790_000_000
STATUS = {"boot": 3, "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0", "crashes": 0,
          "reset_cause": "power_on", "clock": {"known": True, "source": "ntp"},
          "log": {"stored": 120, "unacked": 50, "dropped": 0, "corrupt": 0,
                  "fs_fill": 0.02}}


class BenchError(Exception):
    pass


@dataclass
class Kiosk:
    device_id: str
    key: bytes
    rng: random.Random
    boot: int = 3
    count: int = 0
    next_seq: int = 1
    uptime: int = 600
    prebuilt: collections.deque[tuple[list[Response], bytes]] = field(
        default_factory=collections.deque)

    def prebuild(self, batches: int, size: int) -> None:
        """Encode batches before the clock starts, so that the load generator spends its
        share of the two cores on HTTP, not on making up responses."""
        for _ in range(batches):
            self.prebuilt.append(self.next_batch(size))

    def take_batch(self, size: int) -> tuple[list[Response], bytes]:
        return self.prebuilt.popleft() if self.prebuilt else self.next_batch(size)

    def next_batch(self, size: int) -> tuple[list[Response], bytes]:
        """The kiosk's next `size` responses (customers 20 s to 10 min apart, the clock
        set by NTP) and the push body carrying them."""
        responses = []
        for _ in range(size):
            self.uptime += self.rng.randint(20, 600)
            responses.append(Response(
                seq=self.next_seq, rating=self.rng.choice((1, 2, 3, 3, 4, 4, 4)), scale=4,
                told_next=self.rng.choice(("yes", "yes", "no", "no_answer")),
                latency_s=self.rng.randint(15, 94) / 10, rapid=self.rng.random() < 0.05,
                closed=False, boot=self.boot, uptime_s=self.uptime,
                wall=WALL_BASE + self.uptime, config_version=1))
            self.next_seq += 1
        head = {"status": STATUS, "anchors": [[self.boot, 12, WALL_BASE + 12, 2]],
                "boot": self.boot, "uptime_s": self.uptime + 1}
        body = json.dumps(head, separators=(",", ":")).encode() + b"\n" + encode_batch(
            responses)
        return responses, body


@dataclass
class Accepted:
    device_id: str
    responses: list[Response]


@dataclass
class LoadResult:
    accepted: list[Accepted] = field(default_factory=list)
    new: int = 0
    duplicates: int = 0
    refused: dict[int, int] = field(default_factory=dict)
    unverified: int = 0
    network_errors: int = 0
    elapsed: float = 0.0
    server_cpu: dict[str, float] = field(default_factory=dict)  # seconds, by process name
    load_cpu: float = 0.0
    machine_busy: float = 0.0  # share of all cores busy during the run, anyone's work


# -- the load generator ---------------------------------------------------------------------


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def _client(host: str, port: int, kiosks: list[Kiosk], size: int, deadline: float,
                  new_connections: bool, result: LoadResult) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    turn = 0
    pending: dict[str, tuple[list[Response], bytes]] = {}
    while time.monotonic() < deadline:
        kiosk = kiosks[turn % len(kiosks)]
        turn += 1
        # A batch that got no verified answer is sent again (new nonce), as a kiosk would.
        responses, body = pending.pop(kiosk.device_id, None) or kiosk.take_batch(size)
        kiosk.count += 1
        nonce = f"{kiosk.boot}.{kiosk.count}"
        request = build_request(kiosk.device_id, kiosk.key, nonce, body)
        wire = (f"POST {request.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
                + ("Connection: close\r\n" if new_connections else "")
                + "\r\n").encode() + body
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            assert reader is not None
            writer.write(wire)
            status, headers, answer_body = await _read_answer(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            result.network_errors += 1
            pending[kiosk.device_id] = (responses, body)
            writer = _drop(writer)
            await asyncio.sleep(0.05)
            continue
        if new_connections or headers.get("connection") == "close":
            writer = _drop(writer)
        answer = read_answer(kiosk.key, nonce, status, headers.get("x-deskpulse-signature"),
                             answer_body)
        if answer.ok and answer.acked == responses[-1].seq:
            result.accepted.append(Accepted(kiosk.device_id, responses))
            result.new += answer.new
            result.duplicates += answer.duplicates
        else:
            if answer.status == 200:
                result.unverified += 1
            else:
                result.refused[answer.status] = result.refused.get(answer.status, 0) + 1
            pending[kiosk.device_id] = (responses, body)
    _drop(writer)


def _drop(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.close()
    return None


async def _load(urls: list[str], kiosks: list[Kiosk], size: int, seconds: float,
                connections: int, new_connections: bool) -> LoadResult:
    """Client i talks to server i mod len(urls), as a round-robin load balancer would."""
    addresses = [url.removeprefix("http://").rsplit(":", 1) for url in urls]
    result = LoadResult()
    shares = [kiosks[i::connections] for i in range(connections)]
    start = time.monotonic()
    await asyncio.gather(*(
        _client(addresses[i % len(urls)][0], int(addresses[i % len(urls)][1]), share, size,
                start + seconds, new_connections, result)
        for i, share in enumerate(shares) if share))
    result.elapsed = time.monotonic() - start
    return result


# -- CPU accounting (Linux /proc) -----------------------------------------------------------


def _process_tree(root: int) -> list[int]:
    """root and its descendants (the server, its forkserver and its writer)."""
    parents: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents[parent].append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += parents.get(pid, [])
    return tree


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> tuple[int, int]:
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return sum(ticks), ticks[3] + ticks[4]  # all, idle + iowait


# -- what the writers waited on --------------------------------------------------------------

_WRITER_TIMES = re.compile(
    r"writer (\d+) stopped after (\d+) jobs in (\d+) groups: ([\d.]+) s running jobs "
    r"\(([\d.]+) s of it its own CPU\), ([\d.]+) s committing, ([\d.]+) s answering")


def writer_times(log: list[str], elapsed: float) -> list[dict[str, float]]:
    """Each writer's time as shares of the load's wall time, from the line it logs when it
    stops (server/writer.py WriterTimes): what it did, and what it waited on. Its life is
    longer than the load, so 'waiting for jobs' is the load's time it did nothing else."""
    shares = []
    for line in log:
        match = _WRITER_TIMES.search(line)
        if match is None:
            continue
        jobs, groups = int(match[2]), int(match[3])
        working, cpu, committing, answering = (float(v) for v in match.group(4, 5, 6, 7))
        shares.append({
            "jobs_per_group": round(jobs / groups, 1),
            "own_cpu": round(cpu / elapsed, 3),
            "database_answers": round((working - cpu) / elapsed, 3),
            "committing": round(committing / elapsed, 3),
            "answering": round(answering / elapsed, 3),
            "waiting_for_jobs": round(max(0.0, 1 - (working + committing + answering)
                                          / elapsed), 3)})
    return shares


# -- the two contenders ---------------------------------------------------------------------


def register_kiosks(db_path: str | Path, count: int, folder: Path) -> list[Kiosk]:
    conn = open_store(db_path)
    try:
        kiosks = []
        for n in range(count):
            device_id = f"store{n // 4:02d}-desk{n % 4}"
            out = folder / f"{device_id}.json"
            registration.add_device(conn, device_id, "http://127.0.0.1:8080", out)
            key = conn.device_key(device_id)
            assert key is not None
            kiosks.append(Kiosk(device_id, key, random.Random(n)))
        return kiosks
    finally:
        conn.close()


def _server_processes(servers: list[ServeProcess], database_pid: int | None
                      ) -> dict[int, str]:
    """The server side's processes by pid: each server, its writers (and forkserver and
    reader), the database server's processes."""
    names: dict[int, str] = {}
    for n, server in enumerate(servers):
        tree = _process_tree(server.proc.pid)
        suffix = f" {n + 1}" if len(servers) > 1 else ""
        names.update({pid: f"writer{suffix}" for pid in tree[1:]})
        names[tree[0]] = f"server{suffix}"
    if database_pid is not None:  # the PostgreSQL server's processes do the SQL
        names.update({pid: "postgres" for pid in _process_tree(database_pid)})
    return names


def run_server(db: str | Path, folder: Path, devices: int, size: int, seconds: float,
               connections: int, new_connections: bool, prebuild_rate: float,
               instances: int = 1, database_pid: int | None = None,
               writers: int | None = None) -> tuple[LoadResult, int, list[str]]:
    kiosks = register_kiosks(db, devices, folder)
    for kiosk in kiosks:
        kiosk.prebuild(int(prebuild_rate * seconds / devices) + 1, size)
    servers: list[ServeProcess] = []
    try:
        for _ in range(instances):
            servers.append(ServeProcess(
                db, extra_args=() if writers is None else ("--writers", str(writers))))
        before = {pid: _cpu_seconds(pid) for pid in _server_processes(servers, database_pid)}
        load_before, machine_before = time.process_time(), _machine_busy()
        result = asyncio.run(_load([server.url for server in servers], kiosks, size, seconds,
                                   connections, new_connections))
        load_after, machine_after = time.process_time(), _machine_busy()
        # Named after the load: a process started during it (a writer, its database
        # connection) counts from zero.
        for pid, name in _server_processes(servers, database_pid).items():
            result.server_cpu[name] = (result.server_cpu.get(name, 0.0)
                                       + _cpu_seconds(pid) - before.get(pid, 0.0))
        result.load_cpu = load_after - load_before
        total = machine_after[0] - machine_before[0]
        idle = machine_after[1] - machine_before[1]
        result.machine_busy = 1 - idle / total if total else 0.0
    finally:
        for server in servers:
            server.stop()
    with open_store(db) as store:
        stored = sum(store.response_counts().values())
    return result, stored, [line for server in servers for line in server.log]


def run_ceiling(db: str | Path, accepted: list[Accepted], database_pid: int | None = None
                ) -> tuple[float, float]:
    """(seconds, CPU seconds) to store the accepted batches one commit each, as the
    server did (the same device status, the kiosk's anchor and the server's receipt anchor
    each). The CPU seconds include the PostgreSQL server's, given its pid."""
    conn = open_store(db)
    try:
        database = _process_tree(database_pid) if database_pid is not None else []
        cpu_start = time.process_time() + sum(_cpu_seconds(pid) for pid in database)
        start = time.perf_counter()
        for batch in accepted:
            last = batch.responses[-1]
            anchors = [Anchor(last.boot, 12, WALL_BASE + 12, 2),
                       Anchor(last.boot, last.uptime_s + 1, int(time.time()), RECEIPT_SOURCE)]
            conn.store_batch(batch.device_id, batch.responses, anchors, STATUS, "wifi")
        elapsed = time.perf_counter() - start
        return elapsed, time.process_time() + sum(_cpu_seconds(pid) for pid in database) \
            - cpu_start
    finally:
        conn.close()


@contextlib.contextmanager
def databases(engine: str, folder: Path, ceiling: str | None
              ) -> Iterator[tuple[str | Path, str | Path | None, str, int | None]]:
    """(the served database, the ceiling's, what they are, the pid of the database server
    whose CPU time counts, if known) for --db."""
    if engine == "sqlite":
        yield (folder / "served.db", folder / "ceiling.db", f"SQLite {sqlite3.sqlite_version}",
               None)
        return
    if engine != "postgresql":
        yield engine, ceiling, "PostgreSQL (given)", None
        return
    from bench_pg import durable_cluster  # beside this script

    with durable_cluster() as cluster:
        postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
        yield (cluster.new_database(), cluster.new_database(), "PostgreSQL 15 (durable)",
               postmaster)


def bench(seconds: float, devices: int, size: int, connections: int,
          new_connections: bool, prebuild_rate: float = 800, engine: str = "sqlite",
          instances: int = 1, ceiling_db: str | None = None,
          writers: int | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-serve-") as tmp, \
            databases(engine, Path(tmp), ceiling_db) as (served, ceiling, engine_name,
                                                         database_pid):
        folder = Path(tmp)
        result, stored, log = run_server(served, folder, devices, size, seconds, connections,
                                         new_connections, prebuild_rate, instances,
                                         database_pid, writers)
        acknowledged = sum(len(a.responses) for a in result.accepted)
        if stored != result.new or acknowledged != result.new + result.duplicates:
            raise BenchError(f"lost or doubled: the database holds {stored} responses, "
                             f"the server acknowledged {result.new} new")
        if any("database is locked" in line for line in log):
            raise BenchError("the server logged 'database is locked'")
        ceiling_s, ceiling_cpu = (run_ceiling(ceiling, result.accepted, database_pid)
                                  if ceiling is not None else (float("nan"), float("nan")))
    batches = len(result.accepted)
    if not batches:
        raise BenchError(f"the server accepted no batch (refused: {result.refused})")
    server_rate = batches / result.elapsed
    ceiling_rate = batches / ceiling_s if ceiling_s == ceiling_s else float("nan")
    per_batch_ms = {name: round(1000 * cpu / batches, 2)
                    for name, cpu in result.server_cpu.items()}
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, {engine_name}",
        "instances": instances, "writer_processes": len(writer_times(log, result.elapsed)),
        "seconds": round(result.elapsed, 2), "devices": devices, "batch_size": size,
        "connections": connections, "new_connections": new_connections,
        "batches_accepted": batches, "responses_acknowledged": result.new,
        "responses_in_db": stored, "lost": result.new - stored,
        "duplicates": result.duplicates, "refused": result.refused,
        "unverified_answers": result.unverified, "network_errors": result.network_errors,
        "server_batches_per_s": round(server_rate, 1),
        "server_responses_per_s": round(server_rate * size, 1),
        "ceiling_seconds": round(ceiling_s, 2),
        "ceiling_batches_per_s": round(ceiling_rate, 1),
        "ceiling_responses_per_s": round(ceiling_rate * size, 1),
        "server_over_ceiling": round(server_rate / ceiling_rate, 3),
        "cpu_ms_per_batch": {**per_batch_ms,
                             "load_generator": round(1000 * result.load_cpu / batches, 2),
                             "ceiling": round(1000 * ceiling_cpu / batches, 2)},
        "server_side_cpu_ms_per_batch": round(sum(per_batch_ms.values()), 2),
        # What the machine's cores could take if the server side had them to itself: an
        # estimate from CPU time, for a shared machine where the wall-clock rate is not.
        "idle_cores_batches_per_s": round(
            (os.cpu_count() or 1) * 1000 / sum(per_batch_ms.values()), 1),
        "machine_busy": round(result.machine_busy, 3),
        # Each process's CPU as a share of the load's wall time (1.0: a core all along).
        "cpu_share": {name: round(cpu / result.elapsed, 3)
                      for name, cpu in {**result.server_cpu,
                                        "load_generator": result.load_cpu}.items()},
        "writers": writer_times(log, result.elapsed),
        "server_warnings": [line for line in log if line.startswith("WARNING")],
    }


def report(r: dict[str, Any]) -> str:
    mode = "a new connection per push" if r["new_connections"] else "keep-alive connections"
    lines = [
        f"machine: {r['machine']}",
        f"load: {r['devices']} kiosks, {r['batch_size']}-response batches, "
        f"{r['connections']} concurrent clients ({mode}), {r['seconds']} s, "
        f"{r['instances']} deskpulse serve on one database ({r['writer_processes']} "
        "writers in all)",
        "",
        "| contender | batches/s | responses/s |",
        "|---|---:|---:|",
        f"| deskpulse serve (HTTP, signed, checked) | {r['server_batches_per_s']:,.0f} | "
        f"{r['server_responses_per_s']:,.0f} |",
        f"| store_batch, one commit per batch (ceiling) | {r['ceiling_batches_per_s']:,.0f} "
        f"| {r['ceiling_responses_per_s']:,.0f} |",
        "",
        f"server / ceiling: {r['server_over_ceiling']:.2f}",
        "CPU per batch (ms): " + ", ".join(f"{k} {v}" for k, v in
                                           r["cpu_ms_per_batch"].items()),
        f"server side (serve, writers, database server) {r['server_side_cpu_ms_per_batch']} "
        f"ms of CPU per batch: {os.cpu_count()} idle cores would take about "
        f"{r['idle_cores_batches_per_s']:,.0f} batches/s",
        f"machine busy during the load: {100 * r['machine_busy']:.0f}% of "
        f"{os.cpu_count()} cores (anyone's work)",
        "CPU as a share of the load's wall time: " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in r["cpu_share"].items()),
        *(f"writer {n + 1} ({w['jobs_per_group']} jobs a group), share of the load's wall "
          f"time: own CPU {100 * w['own_cpu']:.0f}%, waiting for the database's answers "
          f"{100 * w['database_answers']:.0f}%, committing {100 * w['committing']:.0f}%, "
          f"answering {100 * w['answering']:.0f}%, waiting for jobs "
          f"{100 * w['waiting_for_jobs']:.0f}%" for n, w in enumerate(r["writers"])),
        f"batches accepted: {r['batches_accepted']:,}; responses acknowledged "
        f"{r['responses_acknowledged']:,}, in the database {r['responses_in_db']:,}, lost "
        f"{r['lost']}; duplicates {r['duplicates']}; refused {r['refused'] or 0}; "
        f"unverified answers {r['unverified_answers']}; network errors "
        f"{r['network_errors']}",
        *(f"server: {line}" for line in r["server_warnings"][:3]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--batch", type=int, default=50, help="responses per push")
    parser.add_argument("--connections", type=int, default=50,
                        help="concurrent clients (each owns devices/connections kiosks)")
    parser.add_argument("--new-connections", action="store_true",
                        help="open a TCP connection per push instead of keeping it alive")
    parser.add_argument("--prebuild-rate", type=float, default=800,
                        help="batches/s to encode in advance (more are made on the fly)")
    parser.add_argument("--db", default="sqlite", metavar="ENGINE_OR_URL",
                        help="sqlite (default), postgresql (a throwaway durable cluster) or "
                             "the URL of an empty PostgreSQL database")
    parser.add_argument("--ceiling-db", metavar="URL",
                        help="with --db URL: an empty database for the ceiling")
    parser.add_argument("--instances", type=int, default=1,
                        help="deskpulse serve processes on the one database")
    parser.add_argument("--writers", type=int, metavar="N",
                        help="writer processes of each server (deskpulse serve --writers; "
                             "default: the server's own)")
    parser.add_argument("--json", action="store_true", help="print the raw figures")
    args = parser.parse_args(argv)
    try:
        figures = bench(args.seconds, args.devices, args.batch, args.connections,
                        args.new_connections, args.prebuild_rate, args.db, args.instances,
                        args.ceiling_db, args.writers)
    except BenchError as exc:
        print(f"bench_serve: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(figures, indent=2) if args.json else report(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
