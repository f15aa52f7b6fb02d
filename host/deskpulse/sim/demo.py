"""`make demo`: the whole system on a laptop, with simulated kiosks.

1. A USB kiosk: a scripted morning of 200 customers, a power cut (customers answer while
   it has no clock), a cleaner unplugging it (the manager's laptop sets its clock again),
   a watchdog reset (the ESP32's own RTC carries the time), then `deskpulse sync` over its
   console pty exactly as it would run over a USB cable.
2. `deskpulse serve` on 127.0.0.1 (a free port) and two WiFi kiosks registered as
   `deskpulse devices add` does it, a touch board in Paris and a button board in New York.
   They play a scripted day of about 200 customers each (the Paris one has a bad
   stretch, the New York one loses its WiFi) and push every response to the server.
   The two stores are sites of one chain, with two dashboard accounts: the chain's owner
   and the Paris manager, who log in to the server's dashboard as a browser does and
   each see only their own part (New York's report is "not found" to the Paris manager).
3. What a store manager then sees: `deskpulse devices`, the report, the alerts, and the
   HTML report.

Every kiosk runs the real firmware in `micropython` with the simulated hardware, on the
virtual clock: every timer fires at its own simulated moment, and a day of customers
costs the CPU about a second per simulated hour of idle polling (docs/benchmarks.md), so
the days are busy counters' hours rather than whole days of mostly waiting.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any
from zoneinfo import ZoneInfo

from deskpulse.cli.format import format_devices, format_response, format_status, format_summary
from deskpulse.device import boards, registration
from deskpulse.device.inspect import read_state
from deskpulse.device.micropython import require_micropython
from deskpulse.device.sync import sync
from deskpulse.errors import DeskPulseError
from deskpulse.reports import alerts
from deskpulse.reports import figures as report
from deskpulse.reports import html as report_html
from deskpulse.reports.table import format_table
from deskpulse.sim import simulator
from deskpulse.sim.dashboard_client import DashboardClient
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store
from deskpulse.store.accounts import hash_password
from deskpulse.store.base import Store

STATE = Path("state/demo")
DATABASE_NAME = "deskpulse.db"
REPORT_NAME = "report.html"
BOARD = "esp32-devkitc-ssd1680"
USB_DEVICE = "demo-desk-1"
CONFIG = {
    "version": 1,
    "device_id": USB_DEVICE,
    # The counter is open on Monday mornings only: the demo's busy morning ends at closing.
    "opening_hours": {"mon": ["09:00-11:00"],
                      **{day: ["09:00-17:00"] for day in ("tue", "wed", "thu", "fri")}},
    "utc_offset_min": 60,
}
USB_SCRIPTS = ("monday.txt", "after-a-power-cut.txt", "unplugged.txt",
               "after-a-watchdog-reset.txt")
"""The USB kiosk's scripts, in the order it plays them (tests count their customers)."""
OFF_S = 900
"""How long the USB kiosk stays off at the power cut and when unplugged: a quarter of an
hour, well over what the scripts' counted waits leave out (each tap's reading time)."""

ACK_PATIENCE = 120.0  # seconds; a bound for a slow machine, not an expectation
USB_CUSTOMERS = 200
USB_OPENS = "2026-11-23T08:05:00Z"  # 09:05 in Paris, a Monday
USB_CLOSING_AFTER_S = 3600 + 55 * 60  # 11:00 in Paris
PUSH_AFTER_S = 2 * 3600
"""The WiFi kiosks push once their first waiting answer is this old (push_interval_s).

A push answer sets a kiosk's host-set clock to the server's time. The demo's days run
thousands of times faster than the server's clock, so a push in the middle of a day would
pull the kiosk's clock back to the laptop's "now" and scatter the rest of its day. Pushing
after closing keeps every answer at its scripted time; a real kiosk, whose clock runs at
the server's pace, pushes within 30 s (the default)."""


@dataclass(frozen=True, slots=True)
class WifiKiosk:
    device_id: str
    board: str
    name: str
    location: str
    time_zone: str
    scale: int
    customers: int
    seed: int
    bad_stretch_at: int | None = None  # after this many customers, a run of unhappy ones
    outage: bool = False  # the store WiFi goes down when the kiosk wants to push

    @property
    def script_name(self) -> str:
        return f"{self.device_id}.txt"


WIFI_KIOSKS = (
    WifiKiosk("paris-returns", "esp32-touch-epd213", "Returns counter", "Paris",
              "Europe/Paris", scale=5, customers=200, seed=11, bad_stretch_at=80),
    WifiKiosk("nyc-front", "lilygo-t5-v2.3", "Front desk", "New York", "America/New_York",
              scale=4, customers=180, seed=12, outage=True),
)
WIFI_DAY = "2026-11-24"  # the USB kiosk's Monday is the day before
CHAIN = "demo-chain"
STORES = {"Paris": f"{CHAIN}/paris", "New York": f"{CHAIN}/new-york"}
"""The WiFi kiosks' stores, by their location: the chain's site tree (`deskpulse sites`)."""
USERS = (("owner", "admin", None), ("paris-manager", "manager", STORES["Paris"]))
"""The dashboard's accounts (`deskpulse users add`): the chain's owner sees everything,
the Paris manager only Paris."""
DEMO_PASSWORD = "demo-password"  # the demo's own; a real one is asked for on a terminal
USB_NAME, USB_LOCATION, USB_ZONE = "Front desk", "Paris", "Europe/Paris"

# Face weights by scale for customers who were told what happens next, and for those who
# were not: being told makes the good faces likelier. A busy counter sees a few dozen
# customers in the alerts' 15-minute window, so an ordinary hour stays well under their
# 50% of unhappy faces and only the bad stretch stands out.
_WEIGHTS = {4: ([1, 1, 4, 6], [2, 3, 4, 2]), 5: ([1, 1, 3, 5, 6], [2, 2, 3, 3, 2])}


# -- scripts ------------------------------------------------------------------------------


class _Script:
    """Script lines plus the simulated seconds they add up to (`wait` and the follow-up)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.elapsed = 0

    def add(self, *lines: str) -> None:
        self.lines += lines

    def wait(self, seconds: int, why: str = "") -> None:
        self.lines.append(f"wait {seconds}" + (f"  # {why}" if why else ""))
        self.elapsed += seconds

    def customer(self, rng: random.Random, scale: int, told_share: float = 0.7,
                 rating: int | None = None) -> None:
        told = rng.random() < told_share
        if rating is None:
            weights = _WEIGHTS[scale][0 if told else 1]
            rating = rng.choices(range(1, scale + 1), weights=weights)[0]
        self.add(f"rate {rating}")
        if rng.random() < 0.08:
            self.wait(11, "walked away: the follow-up times out")
        else:
            self.wait(rng.randint(1, 6))
            self.add("yes" if told else "no")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def day_script(customers: int, seed: int, start: str | None,
               closing_after_s: int | None = None) -> str:
    """A busy stretch at the counter, the next customer every 10 to 40 s:
    mostly content customers, some who were not told what happens next, some who walk off
    without answering, a child pressing twice; with closing_after_s (seconds from the
    script's start to closing time), an after-hours tap."""
    return _day(customers, seed, start, closing_after_s).text()


def _day(customers: int, seed: int, start: str | None, closing_after_s: int | None = None,
         set_clock_after: tuple[int, datetime] | None = None) -> _Script:
    """`day_script`; with set_clock_after (n, when): after n customers a host sync sets
    the clock, `when` being the moment this script started."""
    rng = random.Random(seed)
    script = _Script()
    script.add(f"# demo day, seed {seed}")
    if start:
        script.add(f"clock {start}  # a host sync set the clock")
    script.wait(5, "the panel's first full refresh")
    for n in range(customers):
        if set_clock_after is not None and n == set_clock_after[0]:
            now = set_clock_after[1] + timedelta(seconds=script.elapsed)
            script.add(f"clock {_utc(now)}  # the manager's laptop syncs: the clock is back")
        script.customer(rng, 4)
        script.wait(rng.randint(10, 40))
    script.add("rate 4", "yes", "wait 1",
               "rate 4", "yes  # back at once, but reads first: not rapid")
    if closing_after_s is not None:
        if script.elapsed >= closing_after_s:
            raise DeskPulseError(f"the demo's day of {customers} customers runs past closing")
        script.wait(closing_after_s - script.elapsed + 600, "past closing time")
        script.add("rate 1", "no  # after hours: closed")
    script.add("exit")
    return script


def usb_story() -> list[tuple[str, str, str]]:
    """The USB kiosk's runs as (script name, script, how the board came out of the run
    before): a morning with its clock set; a power cut, after which customers answer
    while the clock is unknown (docs/time.md: the host bounds them by the runs around);
    a cleaner unplugs it, and the manager's laptop sets the clock again; a watchdog
    reset, across which the ESP32's own RTC keeps the time."""
    opens = datetime.fromisoformat(USB_OPENS.replace("Z", "+00:00"))
    morning = _day(USB_CUSTOMERS, 1, USB_OPENS, USB_CLOSING_AFTER_S)
    blind = _day(6, 2, None)
    unplugged_at = opens + timedelta(seconds=morning.elapsed + blind.elapsed + 2 * OFF_S)
    unplugged = _day(8, 3, None, set_clock_after=(3, unplugged_at))
    after_reset = _day(5, 4, None)
    return list(zip(USB_SCRIPTS, (morning.text(), blind.text(), unplugged.text(),
                                  after_reset.text()),
                    ("power_on", "power_on", "power_on", "watchdog"), strict=True))


def _utc(local: datetime) -> str:
    return local.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%dT%H:%M:%SZ")


def wifi_day_script(kiosk: WifiKiosk) -> str:
    """A kiosk's busy day from 09:00 local: the next customer every 10 to 40 s,
    maybe a bad stretch (unhappy customers close together, mostly not told what happens
    next), then the evening, when its push falls due. No `exit`: the kiosk keeps running
    until the demo has seen every answer stored."""
    rng = random.Random(kiosk.seed)
    opening = datetime.fromisoformat(f"{WIFI_DAY}T09:00").replace(
        tzinfo=ZoneInfo(kiosk.time_zone))
    script = _Script()
    script.add(f"# {kiosk.name} at {kiosk.location}: a day of {kiosk.customers} customers "
               f"(seed {kiosk.seed})",
               f"clock {_utc(opening)}  # 09:00 in {kiosk.time_zone}: a host sync set it")
    script.wait(rng.randint(120, 600), "the first customer")
    first_answer = script.elapsed
    for i in range(kiosk.customers):
        bad = kiosk.bad_stretch_at is not None and \
            kiosk.bad_stretch_at <= i < kiosk.bad_stretch_at + 15
        if bad and i == kiosk.bad_stretch_at:
            script.add("# a queue builds up, nobody explains the delay: unhappy customers")
        if bad:
            script.customer(rng, kiosk.scale, told_share=0.2,
                            rating=rng.choice([1, 1, 2, 2, 3]) if i % 3 else 1)
            script.wait(rng.randint(10, 30))
        else:
            script.customer(rng, kiosk.scale)
            script.wait(rng.randint(10, 40))
    push_due = first_answer + PUSH_AFTER_S
    if script.elapsed >= push_due - 600:
        raise DeskPulseError(f"{kiosk.device_id}'s day is longer than its push interval")
    if kiosk.outage:
        script.add("wifi off  # the store's router goes down for the evening")
    script.wait(push_due - 300 - script.elapsed, "the evening: the push falls due soon")
    if kiosk.outage:
        while script.elapsed < push_due + 1800:  # half an hour of failed pushes, backing off
            script.wait(120)
        script.add("wifi on  # back: the next retry goes through")
    end = script.elapsed + 900  # the push, or the retry (at most 10 min away), is in
    while script.elapsed < end:
        script.wait(120)
    return script.text()


def scripted_customers(script: str) -> int:
    return sum(1 for line in script.splitlines() if line.split()[:1] == ["rate"])


def _store(database: Path) -> Store:
    return open_store(database)


# -- the USB kiosk ------------------------------------------------------------------------


def run_day(board: Path, state: Path, script: str, name: str, config: Path | None,
            reset_cause: str = "power_on") -> None:
    script_path = state / name
    script_path.write_text(script)
    print(f"\n== {script_path.stem}: {scripted_customers(script)} customers "
          f"(script {script_path}) ==", flush=True)
    code = simulator.run(board, state, script=script_path, config=config,
                         reset_cause=reset_cause)
    if code in simulator.STOPPED_BY_SIGNAL:
        raise KeyboardInterrupt
    if code != 0:
        raise DeskPulseError(simulator.firmware_failure(state, code))


def usb_kiosk(state: Path, database: Path) -> None:
    board = boards.board_path(BOARD)
    config = state / "config.json"
    config.write_text(json.dumps(CONFIG, indent=2))
    # Power cuts lose the clock, never the log or the sequence numbers; the watchdog
    # reset keeps the time in the ESP32's RTC.
    for name, script, reset_cause in usb_story():
        run_day(board, state, script, name, config if name == USB_SCRIPTS[0] else None,
                reset_cause)
    stored = read_state(board, state)
    print("\n== what the device stored ==")
    for r in stored.responses:
        print(format_response(r))
    print("\n== device status ==")
    print(format_status(stored.status))
    print(f"time anchors (boot, uptime s, unix time, source): {stored.anchors}")
    sync_over_usb(board, state, database)


def sync_over_usb(board: Path, state: Path, database: Path) -> None:
    """A manager plugs in the cable: the kiosk keeps running while `deskpulse sync` pulls
    every response into the database and only then lets the device free its flash."""
    script = state / "plugged-in.txt"
    script.write_text("# the kiosk stays on while the manager syncs\n")
    print("\n== deskpulse sync over the kiosk's console (USB serial) ==", flush=True)
    with simulator.Simulator(board, state, script=script) as kiosk:
        summary = sync(kiosk.console_path, database)
    print(format_summary(summary))
    with _store(database) as store:
        registration.describe_device(store, USB_DEVICE, name=USB_NAME, location=USB_LOCATION,
                                 time_zone=USB_ZONE)
    after = read_state(board, state)
    print(f"on the device after the sync: {after.status['log']['unacked']} unacknowledged, "
          f"flash {100 * after.status['log']['fs_fill']:.1f}% full; next seq "
          f"{after.status['log']['next_seq']}")


# -- the WiFi kiosks ----------------------------------------------------------------------


def kiosk_settings(kiosk: WifiKiosk) -> dict[str, Any]:
    """What the kiosk's owner set besides the push: faces, opening hours, the push timing."""
    offset = datetime.fromisoformat(f"{WIFI_DAY}T12:00").replace(
        tzinfo=ZoneInfo(kiosk.time_zone)).utcoffset() or timedelta()
    return {
        "version": 1,
        "scale": kiosk.scale,
        "opening_hours": {day: ["09:00-18:00"]
                          for day in ("mon", "tue", "wed", "thu", "fri", "sat")},
        "utc_offset_min": int(offset.total_seconds()) // 60,
        "sync": {"push_interval_s": PUSH_AFTER_S, "push_min_pending": 1000},
    }


def register(store: Store, kiosk: WifiKiosk, server_url: str, state: Path) -> Path:
    """`deskpulse devices add`: a key in the database, and the config file carrying it."""
    done = registration.add_device(
        store, kiosk.device_id, server_url, state / f"{kiosk.device_id}.json",
        wifi_ssid="DemoStore", wifi_password="demo-wifi-password", name=kiosk.name,
        location=kiosk.location, time_zone=kiosk.time_zone)
    print(f"registered {done.device_id} ({kiosk.name}, {kiosk.location}, {kiosk.time_zone}, "
          f"{kiosk.board}); pushes to {done.server_url}; config {done.config_file}")
    return done.config_file


def chain_and_accounts(store: Store) -> None:
    """`deskpulse sites add/assign` and `deskpulse users add`: the WiFi kiosks' stores in
    one chain, and the dashboard's two accounts."""
    store.add_site(CHAIN)
    for kiosk in WIFI_KIOSKS:
        store.add_site(STORES[kiosk.location], "store", time_zone=kiosk.time_zone)
        store.assign_kiosk(kiosk.device_id, STORES[kiosk.location])
    for name, role, site in USERS:
        store.add_user(name, role, site=site, email=None,
                       password_hash=hash_password(DEMO_PASSWORD))
    print(f"sites: {', '.join(STORES.values())} in {CHAIN}; dashboard users: "
          + ", ".join(f"{name} ({role} of {site or 'everything'})"
                      for name, role, site in USERS))


def dashboard_tour(server_url: str) -> None:
    """What each account sees on the dashboard of the running server, read over HTTP as a
    browser does: the Paris manager gets Paris only, and New York's report is not found."""
    print(f"\n== the dashboard at {server_url}/ ==")
    for name, _, site in USERS:
        person = DashboardClient(server_url)
        person.log_in(name, DEMO_PASSWORD)
        seen = person.json("/api/report")
        kiosks = ", ".join(d["device_id"] for d in seen["devices"])
        print(f"  {name} sees {seen['responses']:,} responses from {kiosks}")
        if site is not None:
            elsewhere = [path for path in STORES.values() if path != site]
            answers = {path: person.status(f"/report?site={urllib.parse.quote(path)}")
                       for path in elsewhere}
            print("  " + "; ".join(f"{name} asking for {path}: {status}"
                                   for path, status in answers.items()))


def stored_counts(database: Path) -> dict[str, int]:
    with _store(database) as store:
        return store.response_counts()


def wait_for_pushes(kiosks: dict[str, simulator.Simulator], expected: dict[str, int],
                    database: Path, patience: float = ACK_PATIENCE) -> None:
    """Until the server has stored every scripted answer of each kiosk; a kiosk that
    stops or a deadline that passes is an error."""
    deadline = time.monotonic() + patience
    shown: dict[str, int] = {}
    while True:
        counts = stored_counts(database)
        got = {name: counts.get(name, 0) for name in expected}
        if got != shown:
            print("  stored on the server: " + ", ".join(
                f"{name} {got[name]}/{expected[name]}" for name in expected), flush=True)
            shown = got
        if got == expected:
            return
        for name, kiosk in kiosks.items():
            code = kiosk.wait(0)
            if code is not None:
                raise DeskPulseError(f"{name}: {simulator.firmware_failure(kiosk.state_dir, code)}")
        if time.monotonic() > deadline:
            raise DeskPulseError(
                f"the server did not store every answer within {patience:.0f} s (stored "
                f"{got}, scripted {expected}); see the kiosks' console.log under "
                f"{database.parent}")
        time.sleep(0.25)


def wifi_kiosks(state: Path, database: Path) -> None:
    print("\n== deskpulse serve, and two kiosks on the store WiFi ==", flush=True)
    with ServeProcess(database) as server:
        print(f"deskpulse serve --db {database} listening on {server.url}")
        with _store(database) as store:
            device_configs = {k.device_id: register(store, k, server.url, state)
                              for k in WIFI_KIOSKS}
            chain_and_accounts(store)
        expected: dict[str, int] = {}
        running: dict[str, simulator.Simulator] = {}
        try:
            for kiosk in WIFI_KIOSKS:
                folder = state / kiosk.device_id
                folder.mkdir()
                script = state / kiosk.script_name
                script.write_text(wifi_day_script(kiosk))
                settings = folder / "settings.json"
                settings.write_text(json.dumps(kiosk_settings(kiosk), indent=2))
                expected[kiosk.device_id] = scripted_customers(script.read_text())
                extra = ", a bad stretch" if kiosk.bad_stretch_at is not None else ""
                extra += ", a WiFi outage at push time" if kiosk.outage else ""
                print(f"{kiosk.device_id}: {expected[kiosk.device_id]} customers on "
                      f"{WIFI_DAY}{extra} (script {script})")
                sim = simulator.Simulator(
                    boards.board_path(kiosk.board), folder, script=script, config=settings,
                    device_config=device_configs[kiosk.device_id])
                running[kiosk.device_id] = sim
                sim.start()
            wait_for_pushes(running, expected, database)
            dashboard_tour(server.url)
        finally:
            for sim in running.values():
                sim.stop()
    print("every answer is on the server; the kiosks and the server are stopped")
    with _store(database) as store:
        pushes = {d.device_id: d.syncs for d in store.devices()}
        for kiosk in WIFI_KIOSKS:
            last = store.latest_sync(kiosk.device_id)
            push = (last.status.get("push") or {}) if last is not None else {}
            failed = push.get("failures_total", 0)
            print(f"  {kiosk.device_id}: {pushes.get(kiosk.device_id, 0)} push(es) stored"
                  + (f", after {failed} failed attempt(s) (longest backoff "
                     f"{push.get('max_backoff_ms', 0) / 1000:.0f} s)" if failed else ""))


# -- what the store manager sees ----------------------------------------------------------


def manager_view(state: Path, database: Path) -> Path:
    with _store(database) as store:
        print("\n== deskpulse devices ==")
        print(format_devices(store.devices(), store.registered_ids()))
        figures = report.build_report(store)
        found = alerts.find_alerts(store)
    print("\n== deskpulse report ==")
    print(format_table(figures, terminal=sys.stdout.isatty()))
    print("== deskpulse alerts (15 min windows, >= 4 responses, >= 50% of the two lowest "
          "faces) ==")
    print(alerts.format_alerts(found))
    html = state / REPORT_NAME
    html.write_text(report_html.render(figures, found, title="DeskPulse demo report"),
                    encoding="utf-8")
    return html


def _steps(state: Path, database: Path) -> Iterator[str]:
    yield f"open {state / REPORT_NAME} in a browser: the charts, the rankings, the alert"
    yield (f".venv/bin/deskpulse serve --db {database}, then http://127.0.0.1:8080/ in a "
           f"browser: log in as {USERS[0][0]} or {USERS[1][0]}, password {DEMO_PASSWORD}")
    for command in (f"deskpulse report --db {database} --location Paris",
                    f"deskpulse report --db {database} --format csv -o responses.csv",
                    f"deskpulse alerts --db {database} --window 30m",
                    f"deskpulse inspect --state {state}",
                    f"deskpulse inspect --board {WIFI_KIOSKS[0].board} "
                    f"--state {state / WIFI_KIOSKS[0].device_id}"):
        yield f".venv/bin/{command}"


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(state: Path = STATE) -> int:
    database = state / DATABASE_NAME
    # SIGTERM (a closed terminal, a CI timeout) stops the server and the kiosks as Ctrl-C does.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        require_micropython("the demo")
        if state.exists():
            shutil.rmtree(state)
        state.mkdir(parents=True)
        usb_kiosk(state, database)
        wifi_kiosks(state, database)
        html = manager_view(state, database)
    except DeskPulseError as e:
        print(f"deskpulse: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ndeskpulse: demo interrupted; the server and the kiosks are stopped",
              file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"\nHTML report: {html}")
    print(f"database: {database}; console logs: {state}/**/{simulator.CONSOLE_LOG_NAME}")
    print("next, try:")
    for step in _steps(state, database):
        print(f"  {step}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
