"""A small chain for the dashboard's tests: two regions, three stores in two time zones,
five kiosks (one in no store), responses over three weeks up to a fixed "now", a few of
them flagged, and a burst of unhappy customers at one kiosk (an alert).

Device health (add_health): lyon-1 and nice-1 push over WiFi and are silent by LATER,
lyon-2 runs an older config than it is given, lyon-2 and lille-1 had pushes refused, and
pushes were refused under ids of no kiosk (GHOSTS)."""

from __future__ import annotations

import random
import time
from pathlib import Path

from argon2 import PasswordHasher

from deskpulse.device import registration
from deskpulse.protocol.batch import Anchor, Response
from deskpulse.server.accounts import SESSION_COOKIE, Keys, session_cookie
from deskpulse.store import open_store
from deskpulse.store.base import Store
from deskpulse.store.health import RefusalCount, hour_of

NOW = 1_793_199_600  # 2026-10-28T14:20Z, a Wednesday
STORES = {"acme/north/lyon": ("lyon-1", "lyon-2"), "acme/north/lille": ("lille-1",),
          "acme/south/nice": ("nice-1",)}
LOOSE = "loose-1"  # a kiosk in no store
KIOSKS = [k for kiosks in STORES.values() for k in kiosks] + [LOOSE]
NAMES = {"lyon-1": "Lyon <front> & co", "nice-1": "Nice desk"}
LATER = NOW + 8 * 3600
"""When lyon-1 and nice-1, pushing over WiFi and busy every hour, have been silent long
enough for a health alert (their last responses are minutes before NOW)."""
PUSHING = ("lyon-1", "nice-1")
BEHIND = "lyon-2"  # runs config 1, given 2
REFUSED = {"lyon-2": "signature of lyon-2 does not match", "lille-1": "bad nonce from lille"}
"""Kiosks with pushes refused in the last day, and each one's sentence (a trace)."""
GHOSTS = {"ghost-kiosk": "no kiosk ghost-kiosk is registered",
          "*": "many made-up ids were refused"}
"""Ids of no kiosk with pushes refused, and each one's sentence: they belong to no store."""
USERS = {"root": ("admin", None), "acme-admin": ("admin", "acme"),
         "north": ("manager", "acme/north"),
         "lyon": ("manager", "acme/north/lyon"), "nice": ("viewer", "acme/south/nice")}
PASSWORD = "a long enough password"
STATUS = {"boot": 1, "board": "esp32-devkitc-ssd1680", "firmware": "0.2.0",
          "log": {"stored": 5, "unacked": 5, "dropped": 2, "corrupt": 0, "fs_fill": 0.25}}


def responses(device_index: int, count: int, rng: random.Random) -> list[Response]:
    """`count` responses of one kiosk over the 21 days before NOW, the last hours included."""
    out = []
    start = NOW - 21 * 86400
    for seq in range(1, count + 1):
        wall = start + (21 * 86400 - 600) * seq // count
        rating = rng.choice((1, 2, 3, 4, 4, 4))
        out.append(Response(seq=seq, rating=rating, scale=4,
                            told_next=rng.choice(("yes", "yes", "no", "no_answer")),
                            latency_s=3.0, rapid=rng.random() < 0.05, closed=False,
                            boot=1, uptime_s=wall - start + 100, wall=wall,
                            config_version=1))
    return out


def build(path: Path | str, keys_folder: Path) -> dict[str, bytes]:
    """The chain in a new store at `path`; the kiosks' push keys, by id."""
    rng = random.Random(17)
    keys = {}
    with open_store(path) as store:
        store.add_site("acme", "organisation", time_zone="Europe/Paris")
        store.add_site("acme/north", "region")
        store.add_site("acme/south", "region", time_zone="America/New_York")
        for path_ in STORES:
            store.add_site(path_, "store")
        for n, device_id in enumerate(KIOSKS):
            out = keys_folder / f"{device_id}.json"
            registration.add_device(store, device_id, "http://127.0.0.1:8080", out)
            key = store.device_key(device_id)
            assert key is not None
            keys[device_id] = key
            if device_id in NAMES:
                store.describe_device(device_id, name=NAMES[device_id])
            batch = responses(n, 400 + 40 * n, rng)
            store_batch(store, device_id, batch)
        for path_, kiosks in STORES.items():
            for device_id in kiosks:
                store.assign_kiosk(device_id, path_)
        # A bad quarter of an hour at nice-1 yesterday: an alert.
        burst = [Response(seq=1000 + i, rating=1, scale=4, told_next="no", latency_s=2.0,
                          rapid=False, closed=False, boot=2, uptime_s=100 + 60 * i,
                          wall=NOW - 86400 + 60 * i, config_version=1) for i in range(6)]
        store_batch(store, "nice-1", burst)
        add_health(store)
        # Small argon2 parameters: these tests log in by cookie, not by password.
        password_hash = PasswordHasher(time_cost=1, memory_cost=2048, parallelism=1).hash(
            PASSWORD)
        for name, (role, site) in USERS.items():
            store.add_user(name, role, site=site, email=None, password_hash=password_hash)
    return keys


def session_of(path: Path | str, name: str) -> tuple[str, str]:
    """(cookie name, value) of a session of the user `name`, as a login would set it."""
    with open_store(path) as store:
        user = store.user(name)
        assert user is not None
        keys = Keys.from_secret(store.server_secret())
        return SESSION_COOKIE, session_cookie(keys, name, user.generation, time.time() + 3600)


def store_batch(store: Store, device_id: str, batch: list[Response]) -> None:
    last = batch[-1]
    store.store_batch(device_id, batch, [Anchor(last.boot, last.uptime_s, last.wall or 0, 2)],
                      STATUS, "serial", now=NOW - 1800)


def add_health(store: Store) -> None:
    """The chain's device health (the module's docstring)."""
    pushed = NOW - 1200
    for device_id in PUSHING:
        status = {**STATUS, "config_version": 1, "clock": {"known": True, "wall": pushed + 4}}
        store.store_batch(device_id, [], [], status, "wifi", now=pushed)
    store.store_batch(BEHIND, [], [], {**STATUS, "config_version": 1}, "serial", now=pushed)
    store.save_config({BEHIND: {"scale": 3}}, now=pushed)
    hour = hour_of(NOW - 3600)
    store.record_refusals(
        [RefusalCount(device_id, "signature", hour, 3, NOW - 3000, message)
         for device_id, message in REFUSED.items()]
        + [RefusalCount(device_id, "unknown_device", hour, 7, NOW - 2000, message)
           for device_id, message in GHOSTS.items()], now=NOW)
