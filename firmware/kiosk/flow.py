# The survey flow: an explicit state machine, driven by logical events and time.
#
#   IDLE --face--> FOLLOW_UP --yes/no/timeout--> THANKS --after thank_you_s--> IDLE
#
# A face tapped on the thank-you screen starts the next session at once (a waiting
# customer is never ignored). Every completed session becomes one durable record before
# the thank-you screen shows. Misuse is flagged, never dropped: a session started within
# rapid_interval_s of the previous one is RAPID; one outside opening hours is CLOSED.
from kiosk import config as cfg
from kiosk import record, screen, ticks
from micropython import const

IDLE = const(0)
FOLLOW_UP = const(1)
THANKS = const(2)
STATE_NAMES = ("idle", "follow_up", "thanks")

_HOURS_CHECK_MS = const(30000)


class Survey:
    def __init__(self, config, log, clock, display, face_labels=None):
        self.config = config
        self.log = log
        self.clock = clock
        self.display = display
        self.face_labels = face_labels
        self.state = IDLE
        self.completed = 0
        self.store_errors = 0
        self.last_seq = 0
        # A line for the technician on the idle screen (bad config, storage trouble);
        # small enough for a customer to ignore.
        self.service_note = ""
        self._rating = 0
        self._scale = 0
        self._version = 0  # config version the session started under
        self._flags = 0
        self._started = 0  # ticks when the follow-up question showed
        self._thanks_at = 0
        self._last_end = None  # ticks when the previous session ended
        self._open = True
        self._hours_checked = 0

    # -- configuration -------------------------------------------------------
    def apply_config(self, config):
        """Take a new config; a session in progress finishes under the old scale and is
        recorded with the old config version."""
        self.config = config
        if self.state == IDLE:
            self.show_idle()

    # -- views ---------------------------------------------------------------
    def _texts(self):
        return cfg.texts(self.config)

    def show_idle(self):
        t = self._texts()
        self._open = cfg.is_open(self.config, self.clock.wall())
        self._hours_checked = self.clock.ticks_ms()
        scale = self.config["scale"]
        faces = self.face_labels[:scale] if self.face_labels else [str(i + 1) for i in range(scale)]
        if self.store_errors:
            self.service_note = "service: %d responses could not be stored" % self.store_errors
        elif self.log.dropped_total:
            self.service_note = "service: flash full, %d oldest dropped: sync" % (
                self.log.dropped_total)
        if self._open:
            self.display.show(screen.VIEW_IDLE, t["question"], faces, self.service_note)
        else:
            self.display.show(screen.VIEW_CLOSED, t["closed"], faces,
                              self.service_note or t["question"])

    # -- events ----------------------------------------------------------------
    def face(self, rating):
        """A face was tapped (1 = worst). Returns True if it started a session."""
        if self.state == FOLLOW_UP or not 1 <= rating <= self.config["scale"]:
            return False
        now = self.clock.ticks_ms()
        flags = 0
        if self._last_end is not None and ticks.diff(now, self._last_end) < (
            self.config["rapid_interval_s"] * 1000
        ):
            flags |= record.FLAG_RAPID
        if not cfg.is_open(self.config, self.clock.wall()):
            flags |= record.FLAG_CLOSED
        self._rating = rating
        self._flags = flags
        self._started = now
        self._scale = self.config["scale"]
        self._version = self.config["version"]
        self.state = FOLLOW_UP
        t = self._texts()
        self.display.show(screen.VIEW_FOLLOW_UP, t["follow_up"], (t["no"], t["yes"]))
        return True

    def answer(self, yes):
        """Yes or no to the follow-up question. Returns True if it completed a session."""
        if self.state != FOLLOW_UP:
            return False
        latency = ticks.diff(self.clock.ticks_ms(), self._started)
        self._complete(record.TOLD_YES if yes else record.TOLD_NO, latency)
        return True

    def tick(self):
        """Advance timers; call every few tens of milliseconds."""
        now = self.clock.ticks_ms()
        if self.state == FOLLOW_UP:
            timeout = self.config["follow_up_timeout_s"] * 1000
            if ticks.diff(now, self._started) >= timeout:
                self._complete(record.TOLD_NO_ANSWER, timeout)
        elif self.state == THANKS:
            if ticks.diff(now, self._thanks_at) >= self.config["thank_you_s"] * 1000:
                self.state = IDLE
                self.show_idle()
        elif ticks.diff(now, self._hours_checked) >= _HOURS_CHECK_MS:
            was_open = self._open
            self._hours_checked = now
            if cfg.is_open(self.config, self.clock.wall()) != was_open:
                self.show_idle()

    def _complete(self, told, latency_ms):
        clock = self.clock
        try:
            self.last_seq = self.log.append(
                self._rating, self._scale, told, (latency_ms + 50) // 100, self._flags,
                clock.boot, clock.uptime_s(), clock.wall(), self._version)
            self.completed += 1
        except OSError:
            # The customer still gets the thank-you; the technician sees the count in
            # status and on the service screen.
            self.store_errors += 1
        now = clock.ticks_ms()
        self._last_end = now
        self._thanks_at = now
        self.state = THANKS
        t = self._texts()
        self.display.show(screen.VIEW_THANKS, t["sorry"] if told == record.TOLD_NO else t["thanks"])
