# The e-ink refresh task. The screens draw into the driver's buffer and call request();
# this task copies the buffer to the panel ("buffer free" once write() returns) and runs
# the refresh while other tasks go on ("panel done" when update() returns). Requests that
# arrive during a refresh are merged into one more refresh, so the panel always ends on
# the newest view and input is never held up by it.
#
# Partial refreshes are fast but leave ghosts: every `partials_per_full` partials, and once
# the kiosk has been idle for `idle_full_ms` after a partial, a full refresh cleans the panel.
import asyncio

from kiosk.drivers import PanelError


class Display:
    def __init__(self, driver, partials_per_full=8, idle_full_ms=120000, retry_ms=30000,
                 ticks_ms=None):
        self.driver = driver
        # Which picture the glass shows, so input can wait for the screen the customer
        # sees: request() numbers each new picture; `shown` is the newest one a finished
        # refresh put on the panel, at ticks `shown_ms`.
        self._ticks_ms = ticks_ms
        self.requests = 0
        self.shown = 0
        self.shown_ms = 0
        self.partials_per_full = partials_per_full
        self.idle_full_ms = idle_full_ms
        self._wake = asyncio.Event()
        self._pending = False
        self._want_full = True  # the first picture after power-on is a full refresh
        self._partials = 0
        self._refreshing = False
        self.full_refreshes = 0
        self.partial_refreshes = 0
        self.merged = 0  # requests folded into a refresh already due
        self.retry_ms = retry_ms
        self.error = None  # why the panel last failed (None while it works)
        self.failures = 0
        self.on_write = None  # called just before each write (benchmarks, tests)

    def request(self, full=False):
        """Ask for the buffer to be shown. Cheap and non-blocking: call it after drawing."""
        if self._pending:
            self.merged += 1
        self.requests += 1
        self._pending = True
        if full:
            self._want_full = True
        self._wake.set()

    def busy(self):
        """True from a request until the panel has finished showing it."""
        return self._pending or self._refreshing

    async def run(self):
        while True:
            try:
                await self.driver.init()
                self.error = None
                while True:
                    if not self._pending:
                        if not await self._idle():
                            continue
                    await self._refresh()
            except (PanelError, OSError, MemoryError) as e:
                # The kiosk keeps collecting responses without a screen: status and the
                # failure count tell the technician; the panel is tried again later, in
                # full, since its RAM no longer matches the buffer.
                self.error = str(e) or type(e).__name__
                self.failures += 1
                self._pending = True
                self._want_full = True
                await asyncio.sleep_ms(self.retry_ms)

    async def _idle(self):
        """Wait for a request; True when one came, False after a ghost-cleaning refresh."""
        self._wake.clear()
        if not self._partials:
            await self._wake.wait()
            return True
        try:
            await asyncio.wait_for_ms(self._wake.wait(), self.idle_full_ms)
            return True
        except asyncio.TimeoutError:
            self._pending = True
            self._want_full = True
            return True

    async def _refresh(self):
        full = self._want_full or self._partials >= self.partials_per_full
        self._pending = False
        self._want_full = False
        if self.on_write is not None:
            self.on_write(full)
        covering = self.requests  # the buffer holds every picture requested so far
        self._refreshing = True
        try:
            self.driver.write(full)
            await self.driver.update(full)
        finally:
            self._refreshing = False
        if covering != self.shown:
            self.shown = covering
            if self._ticks_ms is not None:
                self.shown_ms = self._ticks_ms()
        if full:
            self.full_refreshes += 1
            self._partials = 0
        else:
            self.partial_refreshes += 1
            self._partials += 1

    def status(self):
        return {"full": self.full_refreshes, "partial": self.partial_refreshes,
                "merged": self.merged, "error": self.error, "failures": self.failures}
