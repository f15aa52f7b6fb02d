"""Benchmark the dashboard of `deskpulse serve` (docs/dashboard.md).

Run from the repository root:
    .venv/bin/python tools/bench_dashboard.py pages [--responses 10000000]
    .venv/bin/python tools/bench_dashboard.py beside [--responses 10000000]
    .venv/bin/python tools/bench_dashboard.py live [--seconds 10] [--dashboards 200]
    .venv/bin/python tools/bench_dashboard.py health [--responses 10000000] [--register]

- **pages**: the server time of the overview page, the report page, /api/overview and
  /api/report (as a chain admin, a region's manager and a store's; the report without
  filters, so over the whole range of the viewer's site) over a
  big database, beside `deskpulse report --format json` on the same database and
  selection (the command a manager would otherwise run). The database is the synthetic
  chain of tools/bench_report.py (500 kiosks over two years), placed in 50 stores of 5
  regions, built once and kept in .cache/ (building 10M responses takes minutes).
- **beside**: why the dashboard reads in a process of its own: the wait of a small
  writer job sent from the event loop (what a push waits for) while whole-range reports
  run in a thread of the server, and while they run in the reader process.
- **live**: kiosks push signed 50-response batches to a real `deskpulse serve` (the load
  generator of tools/bench_serve.py) for --seconds, first alone, then with --dashboards
  open /events streams (in a process of their own), in turns: the push throughput and
  the server's CPU per batch of each run, and the delay from sending a probe kiosk's push
  (one a second) to the event naming it on every stream. Each event is followed by the
  overview it changed (what dashboard.js shows without asking again).
- **health**: the devices page's read before device health joined it (Store.devices(),
  which counts every kiosk's responses) beside its read now (kiosk_health, the health
  alerts and this week's counts from the rollups), also when every kiosk has been silent
  for a day (`--register` first gives the cached kiosks push keys, or none is judged); and
  the devices, alerts and overview pages' server time.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bench_report
import bench_serve

from deskpulse import cli
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".cache"
REGIONS = 5
CHAIN = "chain"
NOW = 1_793_199_600  # 2026-10-28T14:20Z, a Wednesday near the end of the synthetic range


def store_of(location: str) -> str:
    """The store path of a synthetic kiosk's location ("store-17")."""
    number = int(location.rsplit("-", 1)[1])
    return f"{CHAIN}/region-{number % REGIONS}/{location}"


def build_database(path: Path, total: int, devices: int, seed: int) -> dict[str, Any]:
    """The synthetic chain at `path` (made beside it, then renamed: an interrupted build
    leaves no half database behind)."""
    partial = path.with_suffix(".partial")
    for leftover in (partial, Path(f"{partial}-wal"), Path(f"{partial}-shm")):
        leftover.unlink(missing_ok=True)
    start = time.perf_counter()
    with open_store(partial) as store:
        kiosks, syncs = bench_report.synthetic_syncs(total, devices, seed)
        store.add_site(CHAIN, "organisation")
        for region in range(REGIONS):
            store.add_site(f"{CHAIN}/region-{region}", "region")
        for k in kiosks:
            store.describe_device(k.device_id, location=k.location, time_zone=k.zone,
                                  create=True, now=bench_report.START)
            where = store_of(k.location)
            if where not in {s.path for s in store.sites()}:
                store.add_site(where, "store")
            store.assign_kiosk(k.device_id, where)
        status = {"board": "esp32-devkitc-ssd1680", "firmware": "bench",
                  "log": {"stored": 100, "unacked": 10, "dropped": 0, "corrupt": 0,
                          "fs_fill": 0.05}}
        stored = 0
        for kiosk, responses, anchors in syncs:
            new, _ = store.store_batch(kiosk.device_id, responses, anchors, status, "wifi",
                                       now=NOW - 3600)
            stored += new
        store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # type: ignore[attr-defined]
    os.replace(partial, path)
    return {"responses": stored, "build_s": time.perf_counter() - start}


def cached_database(total: int, devices: int, seed: int) -> Path:
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"bench-dashboard-{total}-{devices}-{seed}.db"
    if not path.exists():
        print(f"building {path} ({total:,} responses; minutes)...", file=sys.stderr)
        built = build_database(path, total, devices, seed)
        print(f"built: {built['responses']:,} responses in {built['build_s']:.0f} s",
              file=sys.stderr)
    return path


# -- (a) the pages' server time over a big database ------------------------------------------


def session_of(db: Path, name: str, role: str, site: str | None) -> tuple[str, str]:
    """A session cookie of the user `name` (added when missing): the login itself is not
    measured, the session's check on every request is."""
    from argon2 import PasswordHasher

    from deskpulse.server import accounts

    with open_store(db) as store:
        user = store.user(name)
        if user is None:
            cheap = PasswordHasher(time_cost=1, memory_cost=2048, parallelism=1)
            user = store.add_user(name, role, site=site, email=None,
                                  password_hash=cheap.hash("not used: the cookie is made here"))
        keys = accounts.Keys.from_secret(store.server_secret())
        value = accounts.session_cookie(keys, name, user.generation, time.time() + 86400)
    return accounts.SESSION_COOKIE, value


def _timed(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(first call, median of the next `repeats`) in seconds."""
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times[0], statistics.median(times[1:])


def bench_pages(db: Path, repeats: int) -> dict[str, Any]:
    from fastapi.testclient import TestClient

    from deskpulse.server.app import create_app

    viewers = {"chain admin": None, "region manager": f"{CHAIN}/region-1",
               "store manager": store_of("store-01")}
    out: dict[str, Any] = {}
    app = create_app(db, clock=lambda: NOW)
    with TestClient(app) as client:
        client.get("/v1/health")
        for who, site in viewers.items():
            client.cookies.set(*session_of(db, f"bench-{who.split()[0]}",
                                           "admin" if site is None else "manager", site))
            def get(path: str, fresh: bool = False) -> None:
                if fresh:  # the overview is kept per scope until a push: not here
                    app.state.deskpulse.live.memo.clear()
                reply = client.get(path)
                if reply.status_code != 200:
                    raise SystemExit(f"{path}: {reply.status_code} {reply.text[:200]}")

            rows = {
                "overview page": _timed(lambda: get("/", True), repeats),
                "/api/overview": _timed(lambda: get("/api/overview", True), repeats),
                "/api/overview, kept": _timed(lambda: get("/api/overview"), repeats),
                "report page": _timed(lambda: get("/report"), repeats),
                "/api/report": _timed(lambda: get("/api/report"), repeats),
            }
            options = [] if site is None else ["--site", site]
            with tempfile.TemporaryDirectory() as scratch:
                target = str(Path(scratch) / "r.json")
                argv = ["report", "--db", str(db), "--format", "json", "-o", target, *options]
                rows["deskpulse report --format json (in-process)"] = _timed(
                    functools.partial(cli.main, argv), repeats)
                rows["deskpulse report --format json (command)"] = _timed(
                    functools.partial(subprocess.run, [sys.executable, "-m", "deskpulse.cli",
                                                       *argv], check=True),
                    max(1, repeats // 2))
            out[who] = {name: {"first_s": first, "median_s": median}
                        for name, (first, median) in rows.items()}
    return out


# -- (d) device health on the devices, alerts and overview pages ------------------------------


def old_devices_read(store: Any, scope: str | None) -> list[Any]:
    """What the devices page read before issue 17's health joined it: Store.devices()
    (which counts every kiosk's responses), kept to the viewer's site."""
    from deskpulse.server.dashboard_data import in_scope

    placed = store.kiosk_sites()
    return [d for d in store.devices() if in_scope(scope, placed.get(d.device_id))]


def register_every_kiosk(db: Path) -> int:
    """Give every kiosk of the database a push key (no figure changes), so that each one
    that pushes over WiFi is judged for silence; returns how many got one."""
    with open_store(db) as store:
        missing = [f for f in store.device_facts() if f.device_id not in store.registered_ids()]
        for fact in missing:
            store.set_key(fact.device_id, bytes(32), replace=False, facts=fact)
    return len(missing)


def bench_health(db: Path, repeats: int) -> dict[str, Any]:
    """Per viewer: the devices page's read before (Store.devices()) beside its read now
    (dashboard_data.devices: kiosk_health, health_alerts, this week from the rollups), at
    NOW and when every kiosk has been silent for a day (each one's 8 weeks of day rollups
    read for its usual rate); and the pages' and API routes' server time at NOW."""
    from fastapi.testclient import TestClient

    from deskpulse.server import dashboard_data
    from deskpulse.server.app import create_app

    viewers = {"chain admin": None, "region manager": f"{CHAIN}/region-1",
               "store manager": store_of("store-01")}
    with open_store(db) as store:
        silent_at = max(k.last_response or 0 for k in _health(store)) + 86400
    out: dict[str, Any] = {}
    app = create_app(db, clock=lambda: NOW)
    with TestClient(app) as client, open_store(db, create=False) as store:
        client.get("/v1/health")
        for who, site in viewers.items():
            client.cookies.set(*session_of(db, f"bench-{who.split()[0]}",
                                           "admin" if site is None else "manager", site))

            def get(path: str) -> None:
                app.state.deskpulse.live.memo.clear()  # kept until a push: not here
                reply = client.get(path)
                if reply.status_code != 200:
                    raise SystemExit(f"{path}: {reply.status_code} {reply.text[:200]}")

            silent = dashboard_data.devices(store, site, silent_at)
            rows = {
                "Store.devices() (the read before)": _timed(
                    functools.partial(old_devices_read, store, site), repeats),
                "dashboard_data.devices": _timed(
                    functools.partial(dashboard_data.devices, store, site, NOW), repeats),
                f"dashboard_data.devices, {sum(1 for k in silent['kiosks'] if k['alerts'])} "
                "silent": _timed(functools.partial(dashboard_data.devices, store, site,
                                                  silent_at), repeats),
                "devices page": _timed(lambda: get("/devices"), repeats),
                "/api/devices": _timed(lambda: get("/api/devices"), repeats),
                "alerts page": _timed(lambda: get("/alerts"), repeats),
                "overview page": _timed(lambda: get("/"), repeats),
            }
            out[who] = {name: {"first_s": first, "median_s": median}
                        for name, (first, median) in rows.items()}
    return out


def _health(store: Any) -> list[Any]:
    from deskpulse.store.health import kiosk_health

    return kiosk_health(store, now=NOW)


# -- (c) why the reads have a process of their own ------------------------------------------


def bench_reads_beside_the_writer(db: Path, reports: int) -> dict[str, Any]:
    """What a push waits for (a small writer job, sent every 20 ms from the event loop)
    while `reports` whole-range reports run: in a thread of the server with its own
    store connection, or in the reader process. (In the writer itself a report cannot
    run as it is: its snapshot would open a transaction inside the writer's.)"""
    import concurrent.futures
    import threading

    from deskpulse.server import dashboard_data, health
    from deskpulse.server.reader import ReaderProcess
    from deskpulse.server.writer import WriterProcess

    local = threading.local()

    def in_thread(selection: dashboard_data.Selection) -> dict[str, Any]:
        if not hasattr(local, "store"):
            local.store = open_store(db, create=False)
        return dashboard_data.report(local.store, None, selection)

    async def scenario(in_reader: bool) -> dict[str, Any]:
        writer, reader = WriterProcess(db), ReaderProcess(db)
        threads = concurrent.futures.ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        try:
            await writer.run(health.schema_version)
            await reader.run(health.schema_version)
            await loop.run_in_executor(threads, in_thread, dashboard_data.Selection(
                device="kiosk-0000"))  # the thread's connection is open before the clock
            waits: list[float] = []
            done = asyncio.Event()

            async def probe() -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    await writer.run(health.schema_version)
                    waits.append(time.perf_counter() - start)
                    await asyncio.sleep(0.02)

            probing = asyncio.create_task(probe())
            start = time.perf_counter()
            for _ in range(reports):
                if in_reader:
                    await reader.run(dashboard_data.report, None, dashboard_data.Selection())
                else:
                    await loop.run_in_executor(threads, in_thread, dashboard_data.Selection())
            elapsed = time.perf_counter() - start
            done.set()
            await probing
            waits.sort()
            return {"report_s": elapsed / reports, "writer_jobs": len(waits),
                    "wait_median_s": statistics.median(waits),
                    "wait_p95_s": waits[int(0.95 * (len(waits) - 1))], "wait_max_s": waits[-1]}
        finally:
            threads.shutdown()
            writer.close()
            reader.close()

    return {"reports in a thread": asyncio.run(scenario(False)),
            "reports in the reader process": asyncio.run(scenario(True))}


# -- (b) live dashboards while kiosks push ---------------------------------------------------

PROBE_EVERY_S = 1.0
PREBUILD_RATE = 400
"""Batches a second made before the clock starts (more are made as needed): this machine
takes fewer than that, and making each one costs the load generator."""


async def _listen(host: str, port: int, cookie: str, probe: str, stop_at: list[float],
                  arrivals: list[float], connected: list[int], dropped: list[int],
                  overviews: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET /events HTTP/1.0\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n"
                 .encode())
    status = await reader.readline()
    if b" 200 " not in status:
        raise SystemExit(f"/events answered {status!r}")
    connected[0] += 1
    try:
        while time.time() < stop_at[0]:
            try:
                line = await asyncio.wait_for(reader.readline(),
                                              max(0.1, min(1.0, stop_at[0] - time.time())))
            except TimeoutError:
                break
            if not line:  # the server ended the stream: this dashboard fell behind
                dropped[0] += 1
                break
            if line.startswith(b"event: overview"):
                overviews[0] += 1  # what the page shows, carried by the stream
            elif line.startswith(b"data: {\"devices\""):
                arrived = time.time()
                if probe in json.loads(line[6:])["devices"]:
                    arrivals.append(arrived)
    finally:
        writer.close()


def listeners_main(url: str, count: int, probe: str, seconds: float, cookie: str) -> int:
    """The --dashboards open streams (a process of their own, so that their reading does
    not take the load generator's share of the CPU). Prints READY once all are open, then
    `seconds` later one JSON line: per stream, every arrival of an event naming the probe
    kiosk."""
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    per_stream: list[list[float]] = [[] for _ in range(count)]
    connected, dropped, overviews = [0], [0], [0]

    async def run() -> None:
        stop_at = [float("inf")]  # once every stream is open: `seconds` from then
        tasks = [asyncio.create_task(_listen(host, int(port), cookie, probe, stop_at,
                                             per_stream[i], connected, dropped, overviews))
                 for i in range(count)]
        while connected[0] < count:
            await asyncio.sleep(0.05)
        stop_at[0] = time.time() + seconds
        print("READY", flush=True)
        await asyncio.gather(*tasks)

    cpu = time.process_time()
    asyncio.run(run())
    print(json.dumps({"arrivals": per_stream, "dropped": dropped[0], "overviews": overviews[0],
                      "cpu_s": time.process_time() - cpu}), flush=True)
    return 0


async def _probe(url: str, kiosk: bench_serve.Kiosk, stop_at: float, sent: list[float]) -> None:
    """One push of the probe kiosk a second, on its own connection: when it was sent."""
    from deskpulse.sim.push_client import PushClient, build_request

    loop = asyncio.get_running_loop()
    with PushClient(url) as client:
        while time.time() < stop_at:
            _, body = kiosk.take_batch(5)
            kiosk.count += 1
            nonce = f"{kiosk.boot}.{kiosk.count}"
            request = build_request(kiosk.device_id, kiosk.key, nonce, body)
            sent.append(time.time())
            answer = await loop.run_in_executor(None, client.send, request, kiosk.key, nonce)
            if not answer.ok:
                raise SystemExit(f"the probe's push was refused: {answer.status}")
            await asyncio.sleep(PROBE_EVERY_S)


def _delays(sent: list[float], streams: list[list[float]]) -> list[float]:
    """Per stream and probe push: from sending the push to the first event naming the
    probe that arrived after it (the probe pushes once a second, the events at most
    every half second)."""
    out = []
    for arrivals in streams:
        for at in sent:
            later = [a for a in arrivals if a >= at]
            if later and later[0] - at < PROBE_EVERY_S + 1.5:
                out.append(later[0] - at)
    return out


def live_round(server: ServeProcess, kiosks: list[bench_serve.Kiosk], probe: bench_serve.Kiosk,
               seconds: float, dashboards: int, cookie: str) -> dict[str, Any]:
    listeners = None
    if dashboards:
        listeners = subprocess.Popen(
            [sys.executable, __file__, "listen", "--url", server.url, "--count",
             str(dashboards), "--probe", probe.device_id,
             "--seconds", str(seconds + PROBE_EVERY_S + 2),
             "--cookie", cookie], stdout=subprocess.PIPE, text=True)
        assert listeners.stdout is not None
        if listeners.stdout.readline().strip() != "READY":
            raise SystemExit("the dashboards did not connect")
    sent: list[float] = []

    async def load() -> bench_serve.LoadResult:
        stop_at = time.time() + seconds
        probing = asyncio.create_task(_probe(server.url, probe, stop_at, sent))
        result = await bench_serve._load([server.url], kiosks, 50, seconds, 50, False)
        await probing
        return result

    tree = bench_serve._process_tree(server.proc.pid)  # serve, its writer and reader
    cpu_before = sum(bench_serve._cpu_seconds(pid) for pid in tree)
    result = asyncio.run(load())
    server_cpu = sum(bench_serve._cpu_seconds(pid) for pid in tree) - cpu_before
    heard: dict[str, Any] = {"arrivals": [], "dropped": 0, "cpu_s": 0.0}
    if listeners is not None:
        out, _ = listeners.communicate()
        lines = [line for line in (out or "").splitlines() if line.startswith("{")]
        heard = json.loads(lines[-1]) if lines else heard
    streams: list[list[float]] = heard["arrivals"]
    delays = sorted(_delays(sent, streams))
    return {"dashboards": dashboards, "batches_per_s": len(result.accepted) / result.elapsed,
            "server_cpu_ms_per_batch": 1000 * server_cpu / max(1, len(result.accepted)),
            "refused": result.refused, "network_errors": result.network_errors,
            "probe_pushes": len(sent), "events_seen": len(delays),
            "streams_dropped": heard["dropped"], "dashboards_cpu_s": heard["cpu_s"],
            "overviews_seen": heard.get("overviews", 0),
            "delay_median_s": statistics.median(delays) if delays else None,
            "delay_p95_s": delays[int(0.95 * (len(delays) - 1))] if delays else None,
            "delay_max_s": delays[-1] if delays else None}


def bench_live(seconds: float, dashboards: int, devices: int, rounds: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="deskpulse-bench-dashboard-") as scratch:
        folder = Path(scratch)
        db = folder / "live.db"
        kiosks = bench_serve.register_kiosks(db, devices + 1, folder)
        probe, kiosks = kiosks[0], kiosks[1:]
        for kiosk in kiosks:
            kiosk.prebuild(int(PREBUILD_RATE * seconds * rounds * 2 / devices) + 1, 50)
        cookie = session_cookie_for(db)
        runs = []
        with ServeProcess(db) as server:
            for _ in range(rounds):
                for count in (0, dashboards):
                    runs.append(live_round(server, kiosks, probe, seconds, count, cookie))
                    print(json.dumps(runs[-1]), file=sys.stderr)
    return {"runs": runs}


def session_cookie_for(db: Path) -> str:
    """The Cookie header of a logged-in chain admin."""
    return "=".join(session_of(db, "bench-chain", "admin", None))


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, Python "
            f"{platform.python_version()}, load average {os.getloadavg()[0]:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    build = sub.add_parser("build", help="only build (or find) the cached database")
    pages = sub.add_parser("pages", help="(a) the pages' server time over a big database")
    for p in (build, pages):
        p.add_argument("--responses", type=int, default=1_000_000)
        p.add_argument("--devices", type=int, default=500)
        p.add_argument("--seed", type=int, default=1)
    pages.add_argument("--repeats", type=int, default=5)
    beside = sub.add_parser("beside", help="(c) a writer job's wait while reports run in a "
                                           "thread or in the reader process")
    beside.add_argument("--responses", type=int, default=1_000_000)
    beside.add_argument("--devices", type=int, default=500)
    beside.add_argument("--seed", type=int, default=1)
    beside.add_argument("--reports", type=int, default=5)
    health = sub.add_parser("health", help="(d) device health on the devices, alerts and "
                                           "overview pages, beside the devices page's read "
                                           "before it")
    health.add_argument("--responses", type=int, default=1_000_000)
    health.add_argument("--devices", type=int, default=500)
    health.add_argument("--seed", type=int, default=1)
    health.add_argument("--repeats", type=int, default=5)
    health.add_argument("--register", action="store_true",
                        help="first give every kiosk of the cached database a push key (no "
                             "figure changes), so that silent kiosks are judged")
    live = sub.add_parser("live", help="(b) push throughput with and without dashboards")
    live.add_argument("--seconds", type=float, default=10)
    live.add_argument("--dashboards", type=int, default=200)
    live.add_argument("--devices", type=int, default=200)
    live.add_argument("--rounds", type=int, default=2)
    listen = sub.add_parser("listen", help="(internal) the open dashboards of `live`")
    listen.add_argument("--url", required=True)
    listen.add_argument("--count", type=int, required=True)
    listen.add_argument("--probe", required=True)
    listen.add_argument("--seconds", type=float, required=True)
    listen.add_argument("--cookie", required=True)
    args = parser.parse_args(argv)
    if args.what == "listen":
        return listeners_main(args.url, args.count, args.probe, args.seconds, args.cookie)
    if args.what == "build":
        print(cached_database(args.responses, args.devices, args.seed))
        return 0
    if args.what == "beside":
        db = cached_database(args.responses, args.devices, args.seed)
        found = bench_reads_beside_the_writer(db, args.reports)
        print(f"a writer job every 20 ms while {args.reports} whole-range reports run "
              f"({machine()}):")
        for where, row in found.items():
            print(f"  {where}: report {row['report_s']:.3f} s; the writer job waits "
                  f"median {1000 * row['wait_median_s']:.1f} ms, p95 "
                  f"{1000 * row['wait_p95_s']:.0f} ms, max {1000 * row['wait_max_s']:.0f} ms "
                  f"({row['writer_jobs']} jobs)")
        print(json.dumps(found))
        return 0
    if args.what == "health":
        db = cached_database(args.responses, args.devices, args.seed)
        if args.register:
            print(f"registered {register_every_kiosk(db)} kiosks", file=sys.stderr)
        with open_store(db) as store:
            total = sum(store.response_counts().values())
        found = bench_health(db, args.repeats)
        print(f"{total:,} responses, {args.devices} kiosks ({machine()})")
        for who, rows in found.items():
            print(f"{who}:")
            anchor = rows["Store.devices() (the read before)"]["median_s"]
            for name, row in rows.items():
                print(f"  {name:45s} first {row['first_s']:7.3f} s   median "
                      f"{row['median_s']:7.3f} s   {row['median_s'] / anchor:5.3f}x the read "
                      "before")
        print(json.dumps(found))
        return 0
    if args.what == "pages":
        db = cached_database(args.responses, args.devices, args.seed)
        with open_store(db) as store:
            total = sum(store.response_counts().values())
        figures = bench_pages(db, args.repeats)
        print(f"{total:,} responses, {args.devices} kiosks in {args.devices // 10} stores "
              f"({machine()})")
        for who, rows in figures.items():
            print(f"{who}:")
            anchor = rows["deskpulse report --format json (in-process)"]["median_s"]
            for name, row in rows.items():
                print(f"  {name:45s} first {row['first_s']:7.3f} s   median "
                      f"{row['median_s']:7.3f} s   {row['median_s'] / anchor:5.2f}x the command")
        print(json.dumps(figures))
        return 0
    result = bench_live(args.seconds, args.dashboards, args.devices, args.rounds)
    print(f"live dashboards ({machine()}):")
    for run in result["runs"]:
        delay = ("" if run["delay_median_s"] is None else
                 f"; push to event median {run['delay_median_s']:.2f} s, p95 "
                 f"{run['delay_p95_s']:.2f} s, max {run['delay_max_s']:.2f} s over "
                 f"{run['events_seen']} events, {run['streams_dropped']} streams dropped; "
                 f"{run['overviews_seen']} overviews carried; "
                 f"the dashboards' process took {run['dashboards_cpu_s']:.1f} s of CPU")
        print(f"  {run['dashboards']:3d} dashboards: {run['batches_per_s']:6.1f} batches/s, "
              f"server CPU {run['server_cpu_ms_per_batch']:.2f} ms per batch{delay}")
    without = [r["batches_per_s"] for r in result["runs"] if not r["dashboards"]]
    with_ = [r["batches_per_s"] for r in result["runs"] if r["dashboards"]]
    print(f"with / without: {statistics.mean(with_) / statistics.mean(without):.3f} of the "
          "batches/s (means of the rounds)")
    cpu_without = [r["server_cpu_ms_per_batch"] for r in result["runs"] if not r["dashboards"]]
    cpu_with = [r["server_cpu_ms_per_batch"] for r in result["runs"] if r["dashboards"]]
    print(f"server CPU per batch, with / without: "
          f"{statistics.mean(cpu_with) / statistics.mean(cpu_without):.3f}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
