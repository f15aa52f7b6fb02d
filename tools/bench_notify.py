"""Benchmark a notification pass (deskpulse.notify.passes.run_pass) over a chain.

Run from the repository root:
    .venv/bin/python tools/bench_notify.py [--kiosks 500] [--hours 24] [--db URL] [--json]

A chain of 60 sites (an organisation, 5 regions, 54 stores) with K kiosks spread over the
stores, each with a response every ~3 minutes over the last H hours, and a burst of unhappy
customers in the last minutes at one kiosk in ten. Rules at every level, all negative: one
on the organisation, one per region, one per store for 20 stores, each sending to a local
webhook (a real HTTP server on 127.0.0.1); and one device-health rule (silent kiosks) on the
organisation, which reads deskpulse.reports.health's alerts once per pass.

Timed: the first pass (evaluates every rule, sends one grouped message per destination,
writes the log), then passes with nothing new (the usual case: every rule evaluated, the
log read, nothing sent), the median of --rounds, taking turns with the anchors:
`deskpulse alerts` over the same database (find_alerts over every response, as the command
runs without --since) and find_alerts over the chain's kiosks for the pass's own look-back
(two windows): what a pass reads once for all its rules.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from deskpulse.notify.passes import run_pass
from deskpulse.notify.rules import make_rule
from deskpulse.protocol.batch import Response
from deskpulse.reports.alerts import find_alerts
from deskpulse.sim.webhook import WebhookReceiver
from deskpulse.store import open_store
from deskpulse.store.base import Store

WINDOW_S = 900


def lay_out(store: Store, kiosks: int) -> list[str]:
    """The tree and the kiosks in its stores; the store paths."""
    store.add_site("chain", time_zone="Europe/Paris")
    stores = []
    for r in range(5):
        store.add_site(f"chain/region{r}")
        for s in range(54 // 5 + (r < 54 % 5)):
            path = f"chain/region{r}/store{s}"
            store.add_site(path)
            stores.append(path)
    for k in range(kiosks):
        device_id = f"kiosk-{k:04d}"
        store.describe_device(device_id, create=True)
        store.assign_kiosk(device_id, stores[k % len(stores)])
    return stores


def fill(store: Store, kiosks: int, now: int, hours: int) -> int:
    rng = random.Random(17)
    total = 0
    for k in range(kiosks):
        walls = sorted(now - rng.randrange(hours * 3600) for _ in range(hours * 20))
        ratings = [rng.choice((3, 4, 5, 5, 2)) for _ in walls]
        if k % 10 == 0:  # a burst in the last ten minutes
            walls += [now - 600 + 60 * i for i in range(8)]
            ratings += [1] * 8
        store.store_batch(f"kiosk-{k:04d}", [
            Response(seq=i + 1, rating=rating, scale=5, told_next="yes", latency_s=2.0,
                     rapid=False, closed=False, boot=1, uptime_s=i + 1, wall=wall,
                     config_version=1)
            for i, (wall, rating) in enumerate(zip(walls, ratings, strict=True))],
            [], {}, "wifi")
        total += len(walls)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=500)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--db", help="a postgresql:// URL of an empty database (default: a "
                                     "SQLite file in a temporary folder)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    receiver = WebhookReceiver()
    hook = receiver.url("")
    now = int(time.time())
    with (tempfile.TemporaryDirectory() as folder,
          open_store(args.db or Path(folder) / "bench.db") as store):
        stores = lay_out(store, args.kiosks)
        responses = fill(store, args.kiosks, now, args.hours)
        rules = [make_rule("chain", "chain", "negative", [hook + "chain"])]
        rules += [make_rule(f"region{r}", f"chain/region{r}", "negative", [hook + f"r{r}"])
                  for r in range(5)]
        rules += [make_rule(f"store{n}", path, "negative", [hook + f"s{n}"])
                  for n, path in enumerate(stores[:20])]
        rules.append(make_rule("chain-health", "chain", "silent", [hook + "health"]))
        for rule in rules:
            store.add_alert_rule(rule)
        began = time.perf_counter()
        first = run_pass(store, now=now)
        first_s = time.perf_counter() - began
        times: dict[str, list[float]] = {"pass": [], "alerts": [], "recent": []}
        cpu: dict[str, list[float]] = {name: [] for name in times}  # this process's
        runs = {"pass": lambda: run_pass(store, now=now),
                "alerts": lambda: find_alerts(store),
                "recent": lambda: find_alerts(store, since=now - 2 * WINDOW_S, site="chain")}
        results: dict[str, Any] = {}
        for _ in range(args.rounds):
            for name, run in runs.items():
                began, began_cpu = time.perf_counter(), time.process_time()
                results[name] = run()
                times[name].append(time.perf_counter() - began)
                cpu[name].append(time.process_time() - began_cpu)
    receiver.close()
    median = {name: statistics.median(spent) for name, spent in times.items()}
    median_cpu = {name: statistics.median(spent) for name, spent in cpu.items()}
    figures = {
        "kiosks": args.kiosks, "sites": 1 + 5 + len(stores), "rules": len(rules),
        "responses": responses, "open_problems": first.open_problems,
        "messages_first_pass": len(receiver.posts), "sent_later": len(results["pass"].sent),
        "first_pass_s": first_s, "steady_pass_s": median["pass"],
        "alerts_command_s": median["alerts"], "alerts_recent_s": median["recent"],
        "steady_pass_cpu_s": median_cpu["pass"], "alerts_command_cpu_s": median_cpu["alerts"],
        "alerts_recent_cpu_s": median_cpu["recent"],
        "load_average": os.getloadavg()[0],
        "ratio_steady_pass_over_alerts": median["pass"] / median["alerts"],
        "ratio_first_pass_over_alerts": first_s / median["alerts"],
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"{args.kiosks} kiosks in {figures['sites']} sites, {responses:,} responses, "
          f"{len(rules)} rules (negative: 1 organisation, 5 regions, 20 stores; 1 health)")
    print(f"  first pass: {first_s * 1000:.0f} ms, {first.open_problems} problems, "
          f"{len(receiver.posts)} messages sent to the local webhook")
    print(f"  pass with nothing new (median of {args.rounds}): {median['pass'] * 1000:.0f} ms, "
          f"{figures['sent_later']} sent; this process's CPU "
          f"{median_cpu['pass'] * 1000:.0f} ms")
    print(f"  anchor `deskpulse alerts` (whole history): {median['alerts'] * 1000:.0f} ms "
          f"(pass / alerts {figures['ratio_steady_pass_over_alerts']:.2f}; first pass / "
          f"alerts {figures['ratio_first_pass_over_alerts']:.2f})")
    print(f"  find_alerts over the chain's kiosks, the last two windows: "
          f"{median['recent'] * 1000:.0f} ms (CPU {median_cpu['recent'] * 1000:.0f} ms); load "
          f"average {figures['load_average']:.1f}")


if __name__ == "__main__":
    main()
