"""The notification pass in the background of `deskpulse serve --notify-every`: a thread of
its own (a pass reads the database and waits on SMTP and webhooks, which must never hold up
the event loop that takes the kiosks' pushes), with its own store connection per pass.
Several serve instances on one database each run one; the lease lets one of them send."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from deskpulse.errors import DeskPulseError
from deskpulse.notify.passes import PassResult, lease_owner, run_pass
from deskpulse.store import open_store

log = logging.getLogger("deskpulse.notify")


def describe_pass(result: PassResult) -> list[str]:
    """What a pass did, one line each, destinations without secrets."""
    if not result.held:
        return ["another process holds the notification lease: it sends; nothing done here"]
    lines = [f"{result.open_problems:,} problem{'s' if result.open_problems != 1 else ''} "
             "going on"]
    lines += [f"sent to {url}: {message.title}" for url, message in result.sent.items()]
    lines += [f"not delivered to {url} (retried next pass): {why}"
              for url, why in result.failed.items()]
    return lines


class NotifyRunner:
    """Runs a pass every `every_s` seconds until stopped."""

    def __init__(self, db: str | os.PathLike[str] | None, every_s: float, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.every_s = every_s
        self.clock = clock
        self.owner = lease_owner()  # one owner for the runner's life: it renews its lease
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deskpulse-notify",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def run_once(self) -> PassResult:
        with open_store(self.db, create=False) as store:
            return run_pass(store, now=self.clock(), owner=self.owner)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                result = self.run_once()
            except DeskPulseError as exc:
                log.warning("notification pass failed (next in %gs): %s", self.every_s, exc)
            except Exception:  # the server keeps taking pushes whatever a pass does
                log.exception("notification pass failed (next in %gs)", self.every_s)
            else:
                if result.sent or result.failed:  # quiet passes stay out of the console
                    for line in describe_pass(result):
                        log.info("notify: %s", line)
            self.passes += 1
            self._stop.wait(self.every_s)
