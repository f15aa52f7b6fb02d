"""Benchmark device health (issue 17): `health_alerts` over a chain's two years, and the
push server's throughput while a flood of bad pushes is refused and recorded.

Run from the repository root:
    .venv/bin/python tools/bench_health.py [--responses N] [--devices D] [--seconds S]
                                           [--rounds R] [--json] [--skip-alerts]
                                           [--skip-serve]

1. **health_alerts**: D kiosks (default 500) with N responses (default 2,000,000) over two
   years, made and stored as tools/bench_report.py does (pushes, in sites with opening
   hours), then `reports.health.health_alerts` timed per call (the median of --repeats)
   at two moments: ten minutes after the first kiosk's last push (every kiosk still pushing: only
   those whose last response is older than the grace read 8 weeks of day rollups) and a
   day after the last kiosk's (every kiosk silent: all of them judged).
   Anchors in the same run: `store.devices()` (what `deskpulse devices` reads) and the
   customer alerts (`reports.alerts.find_alerts`) over the last week.
2. **push throughput**: `deskpulse serve` in its own process, K kiosks pushing 50-response
   batches as fast as answered (tools/bench_serve.py's load), for S seconds each:
   - alone (the anchor);
   - beside a flood of bad pushes (wrong key under registered ids, made-up ids) on two
     more connections, refusals recorded (every 10 s, the default);
   - the same flood with refusals counted but written only when the server stops (the
     recorder's interval set beyond the run): during the run, as before issue 17.
   Each configuration runs --rounds times, taking turns; the medians are compared. The
   database must then hold exactly the refusals the flood got answered.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.client
import json
import os
import platform
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import bench_report
import bench_serve

from deskpulse.reports import health
from deskpulse.reports.alerts import find_alerts
from deskpulse.sim.push_client import build_request
from deskpulse.store import open_store
from deskpulse.store.base import EARLIEST, DeviceFacts, Store

HOURS = "mon-sun 08:00-18:00"  # the synthetic desks' opening hours (bench_report.OPEN)
BATCH = 50


# -- 1. health_alerts over two years -------------------------------------------------------


def build_chain(path: Path, total: int, devices: int, seed: int) -> tuple[int, int]:
    """The two years of pushes; returns the time of the first kiosk's last push and of the
    last one (the kiosks' last pushes are some days apart)."""
    store = open_store(path)
    try:
        kiosks, syncs = bench_report.synthetic_syncs(total, devices, seed)
        store.add_site("chain")
        for k in kiosks:
            site = f"chain/{k.location}"
            if site not in {s.path for s in store.sites()}:
                store.add_site(site, "store", time_zone=k.zone or "UTC", opening_hours=HOURS)
            store.set_key(k.device_id, os.urandom(32), replace=False,
                          facts=DeviceFacts(k.device_id, None, None, None),
                          now=bench_report.START)
            store.assign_kiosk(k.device_id, site)
        last: dict[str, int] = {}
        for kiosk, responses, anchors in syncs:
            at = kiosk.wall + 60  # the true time: a kiosk's clock may be a year ahead
            fill = min(0.95, 0.05 + kiosk.rng.random())  # some of them nearly full
            store.store_batch(kiosk.device_id, responses, anchors,
                              {"board": "b", "firmware": "bench", "config_version": 1,
                               "log": {"fs_fill": fill, "dropped": 0, "unacked": 0},
                               "clock": {"known": True, "wall": at}}, "wifi", now=at)
            last[kiosk.device_id] = at
        return min(last.values()), max(last.values())
    finally:
        store.close()


def timed_calls(fn: Callable[[], Any], repeats: int) -> tuple[Any, float]:
    """fn's result and its median time over `repeats` calls."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


def bench_alerts(total: int, devices: int, seed: int, repeats: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chain.db"
        start = time.perf_counter()
        first, last = build_chain(path, total, devices, seed)
        built = time.perf_counter() - start
        with open_store(path) as store:
            figures: dict[str, Any] = {"responses": total, "devices": devices,
                                       "build_s": built}
            for name, now in (("all_active", first + 600), ("all_silent", last + 86400)):
                alerts, seconds = timed_calls(
                    lambda now=now: health.health_alerts(store, now=now), repeats)
                kinds: dict[str, int] = {}
                for alert in alerts:
                    kinds[alert["kind"]] = kinds.get(alert["kind"], 0) + 1
                figures[f"health_alerts_{name}_s"] = seconds
                figures[f"alerts_{name}"] = kinds
            _, figures["devices_s"] = timed_calls(store.devices, repeats)
            _, figures["customer_alerts_week_s"] = timed_calls(
                lambda: find_alerts(store, since=last - 7 * 86400), repeats)
    return figures


# -- 2. push throughput beside a flood of bad pushes ---------------------------------------


def serve_child(db: str, interval_s: float) -> None:
    """`deskpulse serve` on db with the refusal recorder's interval set (this process is
    the server: run as `bench_health.py --serve-child DB SECONDS`)."""
    from deskpulse.server import app, run

    run.create_app = functools.partial(app.create_app,  # type: ignore[assignment]
                                       refusal_interval_s=interval_s)
    run.serve(db, "127.0.0.1", 0, announce=lambda line: print(line, flush=True))


class Server:
    """The serve child, until stopped (SIGINT: it writes what it counted, then exits)."""

    def __init__(self, db: str, interval_s: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve-child", db, str(interval_s)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = re.search(r"listening on (http://\S+)", line)
        if match is None:
            self.proc.kill()
            raise SystemExit(f"the server did not start: {line!r}")
        self.url = match[1]
        host, port = self.url.removeprefix("http://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
                conn.request("GET", "/v1/health")
                if conn.getresponse().status == 200:
                    return
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.send_signal(2)
        self.proc.wait(120)


async def _flood(host: str, port: int, ids: Sequence[str], deadline: float,
                 answered: dict[int, int]) -> None:
    """Bad pushes one after another on one connection: a wrong key under a registered id
    or a made-up id, in turn."""
    rng = random.Random(len(ids))
    body = b'{"status":{},"anchors":[],"boot":1,"uptime_s":5}\n' + bytes([0x01, 0x00])
    reader, writer = await asyncio.open_connection(host, port)
    count = 0
    try:
        while time.monotonic() < deadline:
            count += 1
            device_id = ids[count % len(ids)] if count % 2 else f"ghost-{rng.randrange(10**9)}"
            request = build_request(device_id, os.urandom(32), f"1.{count}", body)
            wire = (f"POST {request.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    + "".join(f"{k}: {v}\r\n" for k, v in request.headers.items())
                    + "\r\n").encode() + body
            writer.write(wire)
            status, _, _ = await bench_serve._read_answer(reader)
            answered[status] = answered.get(status, 0) + 1
    finally:
        writer.close()


async def _run_load(server: Server, kiosks: list[bench_serve.Kiosk], seconds: float,
                    connections: int, flood: int) -> tuple[bench_serve.LoadResult,
                                                           dict[int, int]]:
    answered: dict[int, int] = {}
    ids = [k.device_id for k in kiosks]
    deadline = time.monotonic() + seconds
    load = bench_serve._load([server.url], kiosks, BATCH, seconds, connections, False)
    floods = [_flood(server.host, server.port, ids, deadline, answered) for _ in range(flood)]
    result, *_ = await asyncio.gather(load, *floods)
    return result, answered


CONFIGS = (("alone", 0, 10.0), ("flood_recorded", 4, 10.0), ("flood_not_recorded", 4, 1e9))
"""(name, flood connections, the recorder's interval): 1e9 s counts refusals in memory and
writes them only when the server stops, after the measurement."""


def bench_serving(kiosk_count: int, seconds: float, connections: int,
                  rounds: int) -> dict[str, Any]:
    """Each configuration `rounds` times, the configurations taking turns (the machine's
    other load then falls on all of them alike); the median of each."""
    figures: dict[str, Any] = {"kiosks": kiosk_count, "seconds": seconds,
                               "connections": connections, "rounds": rounds}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in CONFIGS}
    for _ in range(rounds):
        for name, flood, interval in CONFIGS:
            runs[name].append(_serve_run(kiosk_count, seconds, connections, flood, interval))
    for name, results in runs.items():
        figures[name] = {
            "batches_per_s": statistics.median(r["batches_per_s"] for r in results),
            "bad_per_s": statistics.median(r["bad_per_s"] for r in results),
            "runs": results}
    alone = figures["alone"]["batches_per_s"]
    for name in ("flood_recorded", "flood_not_recorded"):
        figures[name]["vs_alone"] = figures[name]["batches_per_s"] / alone
    figures["recorded_vs_not"] = (figures["flood_recorded"]["batches_per_s"]
                                  / figures["flood_not_recorded"]["batches_per_s"])
    return figures


def _serve_run(kiosk_count: int, seconds: float, connections: int, flood: int,
               interval: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        db = str(Path(folder) / "serve.db")
        kiosks = bench_serve.register_kiosks(db, kiosk_count, Path(folder))
        for kiosk in kiosks:
            kiosk.prebuild(int(seconds * 600 / kiosk_count) + 2, BATCH)
        server = Server(db, interval)
        try:
            result, answered = asyncio.run(_run_load(server, kiosks, seconds, connections,
                                                     flood))
        finally:
            server.stop()
        with open_store(db) as store:
            recorded = _recorded(store)
    refused = sum(answered.values())
    if recorded["refusals"] != refused:
        raise SystemExit(f"{refused} pushes refused, {recorded['refusals']} recorded")
    return {"batches_per_s": len(result.accepted) / result.elapsed,
            "bad_per_s": refused / result.elapsed, "bad_answered": answered,
            "refusals_recorded": recorded}


def _recorded(store: Store) -> dict[str, int]:
    rows = store.push_refusals(EARLIEST)
    return {"rows": len(rows), "refusals": sum(r.count for r in rows)}


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None and len(sys.argv) == 4 and sys.argv[1] == "--serve-child":
        serve_child(sys.argv[2], float(sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", type=int, default=2_000_000)
    parser.add_argument("--devices", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kiosks", type=int, default=100, help="pushing kiosks (serve)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-alerts", action="store_true")
    parser.add_argument("--skip-serve", action="store_true")
    parser.add_argument("--json", action="store_true", help="print raw figures as JSON")
    args = parser.parse_args(argv)
    figures: dict[str, Any] = {"python": platform.python_version(),
                               "cores": os.cpu_count()}
    if not args.skip_alerts:
        figures["alerts"] = bench_alerts(args.responses, args.devices, args.seed,
                                         args.repeats)
    if not args.skip_serve:
        figures["serve"] = bench_serving(args.kiosks, args.seconds, args.connections,
                                         args.rounds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return 0
    if "alerts" in figures:
        a = figures["alerts"]
        print(f"{a['devices']} kiosks, {a['responses']:,} responses over two years "
              f"(built in {a['build_s']:.0f} s)")
        for name, when in (("all_active", "every kiosk pushing"),
                           ("all_silent", "every kiosk silent a day or more")):
            seconds = a[f"health_alerts_{name}_s"]
            print(f"  health_alerts, {when}: "
                  f"{seconds * 1000:.0f} ms ({a[f'alerts_{name}']}); "
                  f"{seconds / a['devices_s']:.2f}x store.devices(), "
                  f"{seconds / a['customer_alerts_week_s']:.2f}x a week's customer alerts")
        print(f"  anchors: store.devices() {a['devices_s'] * 1000:.0f} ms, customer "
              f"alerts over the last week {a['customer_alerts_week_s'] * 1000:.0f} ms")
    if "serve" in figures:
        s = figures["serve"]
        print(f"deskpulse serve, {s['kiosks']} kiosks on {s['connections']} connections, "
              f"{s['seconds']:g} s a run, median of {s['rounds']} rounds:")
        for name in ("alone", "flood_recorded", "flood_not_recorded"):
            run = s[name]
            ratio = f", {run['vs_alone']:.2f}x alone" if "vs_alone" in run else ""
            print(f"  {name.replace('_', ' ')}: {run['batches_per_s']:.0f} batches/s{ratio}; "
                  f"bad pushes answered {run['bad_per_s']:.0f}/s; per run: "
                  + ", ".join(f"{r['batches_per_s']:.0f}" for r in run["runs"]))
        print(f"  recorded / not recorded: {s['recorded_vs_not']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
