"""A small chain for the browser tests: two stores with registered kiosks and answers, the
users who may see them, and signed pushes sent from the test while a page is open.

acme (Europe/Paris)
  north: lyon-1 (kiosks lyon-a, lyon-b)
  south: nice-1 (kiosk nice-a)
Each store's answers differ in count and mood, so a figure of one store can be told from
the other's: nice-1's totals are odd primes that lyon-1's figures never reach.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from deskpulse.device import registration
from deskpulse.protocol.batch import Response
from deskpulse.sim.push_client import PushAnswer, push_batch
from deskpulse.store.base import Store

ZONE = "Europe/Paris"
STATUS = {"boot": 1, "board": "esp32-devkitc-ssd1680", "firmware": "0.1.0",
          "log": {"stored": 0, "unacked": 0, "dropped": 0, "corrupt": 0, "fs_fill": 0.02}}
STORES = {"lyon-1": "acme/north/lyon-1", "nice-1": "acme/south/nice-1"}
KIOSKS = {"lyon-a": "lyon-1", "lyon-b": "lyon-1", "nice-a": "nice-1"}
# (earlier days, today) answers per kiosk, and the rating they give out of 5.
ANSWERS = {"lyon-a": (40, 6, 5), "lyon-b": (12, 3, 4), "nice-a": (211, 97, 1)}
PASSWORD = "correct horse battery staple"
USERS = {  # name: (role, site)
    "admin": ("admin", None),
    "lyon-manager": ("manager", STORES["lyon-1"]),
    "nice-manager": ("manager", STORES["nice-1"]),
}
PUSH_BOOT = 2  # the seeded answers are boot 1's, stored by a serial sync


def store_of(device_id: str) -> str:
    return STORES[KIOSKS[device_id]]


def responses_of_store(store: str, *, today_only: bool = False) -> int:
    """What the seeding gave `store` ("lyon-1"), before any push."""
    return sum(today + (0 if today_only else earlier)
               for kiosk, (earlier, today, _) in ANSWERS.items() if KIOSKS[kiosk] == store)


def _answers(first_seq: int, walls: list[int], rating: int, *, boot: int,
             boot_start: int) -> list[Response]:
    return [Response(seq=first_seq + n, rating=rating, scale=5,
                     told_next="yes" if n % 3 else "no", latency_s=2.0, rapid=False,
                     closed=False, boot=boot, uptime_s=wall - boot_start, wall=wall,
                     config_version=0)
            for n, wall in enumerate(walls)]


def today_walls(count: int, now: float) -> list[int]:
    """`count` moments between the start of today (in ZONE) and now, oldest first."""
    midnight = datetime.fromtimestamp(now, ZoneInfo(ZONE)).replace(
        hour=0, minute=0, second=0, microsecond=0).timestamp()
    span = max(1, int(now - midnight) - 2)
    return [int(midnight) + 1 + span * n // count for n in range(count)]


@dataclass
class Kiosk:
    """What a kiosk keeps for its pushes: key, next sequence number, request counter."""

    device_id: str
    key: bytes
    boot_start: int
    next_seq: int
    requests: int = 0

    def nonce(self) -> str:
        self.requests += 1
        return f"{PUSH_BOOT}.{self.requests}"


@dataclass
class Chain:
    url: str
    db: str
    kiosks: dict[str, Kiosk] = field(default_factory=dict)

    def push(self, device_id: str, count: int, *, rating: int = 5) -> PushAnswer:
        """A signed batch of `count` answers given just now by the kiosk, as its push
        would send them; the answer is checked (stored, signature verified)."""
        kiosk = self.kiosks[device_id]
        now = int(time.time())
        walls = [now - count + n for n in range(count)]
        answers = _answers(kiosk.next_seq, walls, rating, boot=PUSH_BOOT,
                           boot_start=kiosk.boot_start)
        answer = push_batch(self.url, device_id, kiosk.key, kiosk.nonce(),
                            {**STATUS, "boot": PUSH_BOOT}, [], answers,
                            uptime_s=answers[-1].uptime_s + 1)
        assert answer.ok and answer.new == count, (answer.status, answer.body)
        kiosk.next_seq += count
        return answer


def seed(store: Store, folder: Path, server_url: str, *, now: float) -> dict[str, Kiosk]:
    """The chain above in `store`: sites, kiosks registered with keys (for their pushes)
    and their answers, older ones spread over the six days before today."""
    store.add_site("acme", time_zone=ZONE)
    store.add_site("acme/north")
    store.add_site("acme/south")
    for path in STORES.values():
        store.add_site(path)
    kiosks = {}
    for device_id, (earlier, today, rating) in ANSWERS.items():
        config = folder / f"{device_id}.json"
        registration.add_device(store, device_id, server_url, config)
        key = bytes.fromhex(json.loads(config.read_text())["sync"]["device_key"])
        start_of_today = today_walls(1, now)[0]
        week_ago = int((datetime.fromtimestamp(start_of_today) - timedelta(days=6)).timestamp())
        older = [week_ago + (start_of_today - week_ago) * n // earlier for n in range(earlier)]
        walls = older + today_walls(today, now)
        boot_start = walls[0] - 60
        store.store_batch(device_id, _answers(1, walls, rating, boot=1, boot_start=boot_start),
                          [], STATUS, "serial")
        store.assign_kiosk(device_id, store_of(device_id))
        kiosks[device_id] = Kiosk(device_id, key, boot_start=int(now) - 3600,
                                  next_seq=len(walls) + 1)
    return kiosks



def add_users(store: Store) -> None:
    """USERS, each with PASSWORD, as `deskpulse users add` stores them."""
    from deskpulse.store import accounts

    password_hash = accounts.hash_password(PASSWORD)
    for name, (role, site) in USERS.items():
        store.add_user(name, role, site=site, email=None,
                       password_hash=password_hash)
