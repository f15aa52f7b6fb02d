"""Benchmark what sites cost: storing batches of kiosks in a site tree, and `report --site`.

Run from the repository root:
    .venv/bin/python tools/bench_sites.py [--kiosks K] [--batches B] [--db URL] [--json]

K kiosks (default 200): half spread over the stores of a tree of 5 organisations x 10
regions x 10 stores (555 sites, zones set on the organisations and on some stores), half
in no site with the same zones set on themselves (the anchor). Each kiosk sends B batches
(default 10) of 50 responses through `Store.store_batch`, 100 batches per group commit as
`deskpulse serve` does, the two halves
taking turns so that the machine's drift falls on both alike. Storing a batch reads the
kiosk's zone (its rollups are kept in local time): with sites that is the zone its store
follows, kept on the kiosk's own row (docs/sites.md).

Then the report over the kiosks of one organisation, chosen by `--site` (ours) and by
`--location` (the anchor: the same kiosks, their location set to the organisation's name),
each the median of --rounds runs (21), the two taking turns; both must give the same
figures.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from deskpulse.protocol.batch import Response
from deskpulse.reports import figures as report
from deskpulse.store import open_store
from deskpulse.store.base import Store

START = 1_780_000_000
BATCH = 50
GROUP = 100
STATUS = {"board": "bench", "firmware": "bench"}


def lay_out(store: Store, kiosks: list[str]) -> None:
    """The tree; every odd kiosk in one of its stores, and the even kiosk before it in no
    site but with the zone that store gives (so both halves count in the same zones)."""
    stores: list[tuple[str, str]] = []
    for o in range(5):
        organisation_zone = ("Europe/Paris", "Asia/Tokyo")[o % 2]
        store.add_site(f"org{o}", time_zone=organisation_zone)
        for r in range(10):
            store.add_site(f"org{o}/region{r}")
            for s in range(10):
                path = f"org{o}/region{r}/store{s}"
                own = "America/New_York" if s == 9 else None
                store.add_site(path, time_zone=own)
                stores.append((path, own or organisation_zone))
    for i, device_id in enumerate(kiosks):
        store.describe_device(device_id, create=True, now=START)
        index = i // 2 % len(stores)
        path, zone = stores[index]
        if i % 2:
            store.assign_kiosk(device_id, path)
            store.describe_device(device_id, location=f"org{index // 100}")
        else:
            store.describe_device(device_id, time_zone=zone)


def batches(device_id: str, index: int, rng: random.Random) -> list[Response]:
    first = index * BATCH + 1
    return [Response(seq=seq, rating=rng.randint(1, 5), scale=5,
                     told_next=rng.choice(("yes", "no", "no_answer")), latency_s=2.0,
                     rapid=False, closed=False, boot=1, uptime_s=seq * 60,
                     wall=START + seq * 600 + rng.randrange(600), config_version=1)
            for seq in range(first, first + BATCH)]


def ingest(store: Store, kiosks: list[str], count: int) -> dict[str, float]:
    """Seconds inside store_batch for the kiosks without a site and those with one."""
    rng = random.Random(5)
    spent = {"no site": 0.0, "in a store": 0.0}
    work = [(i % 2, device_id, b) for b in range(count) for i, device_id in enumerate(kiosks)]
    for start in range(0, len(work), GROUP):
        # One group of each half in turn: the same kind of work, the same moment.
        for half in (0, 1):
            chosen = [(d, b) for h, d, b in work[start:start + GROUP] if h == half]
            prepared = [(d, batches(d, b, rng)) for d, b in chosen]
            began = time.perf_counter()
            with store.group_commit():
                for device_id, responses in prepared:
                    with store.part():
                        store.store_batch(device_id, responses, [], STATUS, "wifi")
            spent[("no site", "in a store")[half]] += time.perf_counter() - began
    return spent


def interleaved(runs: dict[str, Any], rounds: int) -> dict[str, tuple[float, Any]]:
    """The median seconds (and the result) of each run, the runs taking turns each round:
    on a shared machine a burst of someone else's work then falls on all of them."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    results: dict[str, Any] = {}
    for _ in range(rounds):
        for name, run in runs.items():
            began = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - began)
    return {name: (statistics.median(times[name]), results[name]) for name in runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kiosks", type=int, default=200)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--db", help="a postgresql:// URL of an empty database (default: a "
                                     "SQLite file in a temporary folder)")
    parser.add_argument("--rounds", type=int, default=21, help="report runs of each kind")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    kiosks = [f"kiosk-{i:04d}" for i in range(args.kiosks)]
    with (tempfile.TemporaryDirectory() as folder,
          open_store(args.db or Path(folder) / "bench.db") as store):
        lay_out(store, kiosks)
        spent = ingest(store, kiosks, args.batches)
        store.refresh_rollups(kiosks)
        timed = interleaved({
            "site": lambda: report.build_report(store, site="org0"),
            "location": lambda: report.build_report(store, location="org0")}, args.rounds)
        (by_site, ours), (by_location, anchor) = timed["site"], timed["location"]
    same = all(ours[k] == anchor[k] for k in ("responses", "csat", "heatmap", "trend",
                                              "devices"))
    responses = args.kiosks // 2 * args.batches * BATCH
    figures = {
        "responses_per_half": responses,
        "ingest_no_site_per_s": responses / spent["no site"],
        "ingest_in_a_store_per_s": responses / spent["in a store"],
        "ingest_ratio_no_site_over_in_a_store": spent["in a store"] / spent["no site"],
        "report_site_s": by_site, "report_location_s": by_location,
        "report_ratio_site_over_location": by_site / by_location,
        "report_responses": ours["responses"], "same_figures": same,
    }
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(f"ingest, {responses} responses per half in batches of {BATCH}:")
    print(f"  kiosks in no site (anchor): {figures['ingest_no_site_per_s']:,.0f} responses/s")
    print(f"  kiosks in a 555-site tree:  {figures['ingest_in_a_store_per_s']:,.0f} responses/s"
          f"  (time ratio {figures['ingest_ratio_no_site_over_in_a_store']:.2f})")
    print(f"report over one organisation's {ours['responses']} responses (median of "
          f"{args.rounds}, taking turns):")
    print(f"  --location (anchor): {by_location * 1000:.1f} ms")
    print(f"  --site:              {by_site * 1000:.1f} ms  "
          f"(ratio {figures['report_ratio_site_over_location']:.2f}; same figures: {same})")


if __name__ == "__main__":
    main()
