"""The notification pass in the background of `deskpulse serve --notify-every`: a thread of
its own (a pass reads the database and waits on SMTP and webhooks, which must never hold up
the event loop that takes the kiosks' pushes), with its own store connection per pass.
Several serve instances on one database each run one; the lease lets one of them send.
With a sending account (`digest_sender`, from $DESKPULSE_SMTP), each pass also sends the
weekly digests that are due (deskpulse.notify.weekly), under the same lease."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from deskpulse.errors import DeskPulseError
from deskpulse.notify.passes import PassResult, lease_owner, run_pass
from deskpulse.notify.weekly import DigestResult, describe_digests, run_digest_pass
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
                 clock: Callable[[], float] = time.time, digest_sender: str | None = None
                 ) -> None:
        self.db = db
        self.digest_sender = digest_sender
        self.every_s = every_s
        self.clock = clock
        self.owner = lease_owner()  # one owner for the runner's life: it renews its lease
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deskpulse-notify",
                                        daemon=True)

    def start(self) -> None:
        if self.digest_sender is None:
            log.info("notify: no $DESKPULSE_SMTP: weekly digests are not sent")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def run_once(self) -> PassResult:
        with open_store(self.db, create=False) as store:
            return run_pass(store, now=self.clock(), owner=self.owner)

    def digest_once(self) -> DigestResult:
        """The weekly digests due now and not yet delivered (none without a sender)."""
        if self.digest_sender is None:
            return DigestResult()
        with open_store(self.db, create=False) as store:
            return run_digest_pass(store, now=self.clock(), sender=self.digest_sender,
                                   owner=self.owner)

    def _run(self) -> None:
        while not self._stop.is_set():
            result = self._guarded(self.run_once)
            if isinstance(result, PassResult) and (result.sent or result.failed):
                for line in describe_pass(result):  # quiet passes stay out of the console
                    log.info("notify: %s", line)
            digests = self._guarded(self.digest_once)
            if isinstance(digests, DigestResult) and (digests.sent or digests.failed):
                for line in describe_digests(digests):
                    log.info("notify: weekly digest %s", line)
            self.passes += 1
            self._stop.wait(self.every_s)

    def _guarded(self, step: Callable[[], PassResult | DigestResult]
                 ) -> PassResult | DigestResult | None:
        """The step's result; None when it failed, which is logged: the next pass runs on
        time, and the server keeps taking pushes whatever a pass does."""
        try:
            return step()
        except DeskPulseError as exc:
            log.warning("notification pass failed (next in %gs): %s", self.every_s, exc)
        except Exception:
            log.exception("notification pass failed (next in %gs)", self.every_s)
        return None
