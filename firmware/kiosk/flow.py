# The survey flow: an explicit state machine, driven by logical events and time
# (docs/flow.md has the diagram and the reasons).
#
#   IDLE --face--> FOLLOW_UP --yes/no/timeout--> THANKS --after thank_you_s--> IDLE
#                  FOLLOW_UP --another face--> (stored with no answer) FOLLOW_UP
#
# A press counts only for the screen the customer can see: until the panel shows the
# current view and input_guard_ms has passed, presses are ignored and counted. A face
# tapped on the thank-you screen starts the next session at once (a waiting customer is
# never ignored). Every completed session becomes one durable record before the thank-you
# screen shows. Misuse is flagged, never dropped: a session is RAPID when it started
# within rapid_interval_s of the previous one and one of its taps came sooner than a
# person reads (min_read_ms after its screen could be seen); CLOSED outside opening hours.
#
# Outside opening hours the closed screen asks nothing (no faces, no question); a press
# there only brings up the question, and the session that follows is flagged CLOSED.
# The technician's SERVICE screen opens only from IDLE: asked for during a session, it
# waits until that session is stored and its thank-you is over, so no customer's answer
# is lost or given to the technician. It closes on a second request or after
# _SERVICE_SHOW_MS. Customer screens carry no technician text, only a neutral mark.
from kiosk import config as cfg
from kiosk import record, screen, ticks
from micropython import const

IDLE = const(0)
FOLLOW_UP = const(1)
THANKS = const(2)
SERVICE = const(3)
STATE_NAMES = ("idle", "follow_up", "thanks", "service")

_HOURS_CHECK_MS = const(30000)
_SERVICE_SHOW_MS = const(60000)  # a service screen left open returns to the customers


class Survey:
    def __init__(self, config, log, clock, display, face_labels=None, panel=None,
                 service_text=None):
        self.config = config
        self.log = log
        self.clock = clock
        self.display = display
        # The e-ink refresh task (kiosk.ui.display.Display), or None when a view is
        # visible as soon as it is drawn (a text screen).
        self.panel = panel
        self.early_presses = 0  # presses ignored because their screen was not seen yet
        self._view = 0  # the panel's number for the current view
        self._asked_ms = 0  # ticks when the current view was drawn
        self._seen_ms = None  # ticks from which the customer could see it
        self._quick = False  # a tap of this session came sooner than a person reads
        self.face_labels = face_labels
        self.state = IDLE
        self.completed = 0
        self.store_errors = 0
        self.last_seq = 0
        # The config had problems (the app sets it, a good config upload clears it): with
        # storage trouble, it puts the neutral service mark on the customer screens.
        self.config_problem = False
        # () -> (title, details) for the service screen (the app's Kiosk.service_text).
        self.service_text = service_text
        self._service_wanted = False  # asked for during a session: opens when idle
        self._service_at = 0
        self.service_opens = 0  # counts the service screen's openings (one each time)
        self._woken = None  # ticks when a press brought the question up while closed
        self._rating = 0
        self._scale = 0
        self._version = 0  # config version the session started under
        self._flags = 0
        self._started = 0  # ticks when the face was tapped (the follow-up's clock)
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

    def _show(self, kind, title, options=(), note="", chosen=None, mark=False):
        self.display.show(kind, title, options, note, chosen, mark)
        now = self.clock.ticks_ms()
        self._asked_ms = now
        if self.panel is None:
            self._seen_ms = now
        else:
            self._view = self.panel.requests
            self._seen_ms = None

    def seen_since(self):
        """Ticks from which the current view is on the glass, or None while it is not.
        A panel that failed shows nothing new: the view counts from when it was drawn,
        so the kiosk keeps taking answers without a screen."""
        panel = self.panel
        if self._seen_ms is None and panel is not None:
            if panel.error is not None:
                self._seen_ms = self._asked_ms
            elif panel.shown - self._view >= 0:
                self._seen_ms = panel.shown_ms
        return self._seen_ms

    def ready_for_input(self):
        """Whether the customer has seen the current view for input_guard_ms."""
        seen = self.seen_since()
        return seen is not None and ticks.diff(self.clock.ticks_ms(), seen) >= (
            self.config["input_guard_ms"])

    def accepts_input(self):
        """Whether a press now is for the view the customer sees (counted when not)."""
        if self.ready_for_input():
            return True
        self.early_presses += 1
        return False

    def _read_quickly(self, now):
        seen = self.seen_since()
        return seen is None or ticks.diff(now, seen) < self.config["min_read_ms"]

    def needs_service(self):
        """Whether the technician should look: storage trouble or a config problem."""
        return bool(self.store_errors or self.log.dropped_total or self.config_problem)

    def show_idle(self):
        t = self._texts()
        self._open = cfg.is_open(self.config, self.clock.wall())
        self._hours_checked = self.clock.ticks_ms()
        if not self._open and self._woken is None:
            self._show(screen.VIEW_CLOSED, t["closed"], (), "", None, self.needs_service())
            return
        scale = self.config["scale"]
        faces = self.face_labels[:scale] if self.face_labels else [str(i + 1) for i in range(scale)]
        self._show(screen.VIEW_IDLE, t["question"], faces, "", None, self.needs_service())

    def closed_shown(self):
        """Whether the closed screen (which asks nothing) is what the customer sees."""
        return self.state == IDLE and not self._open and self._woken is None

    def wake(self):
        """A press on the closed screen: show the question (for follow_up_timeout_s); the
        press itself rates nothing, since the screen asked nothing."""
        if self.closed_shown():
            self._woken = self.clock.ticks_ms()
            self.show_idle()

    # -- service ---------------------------------------------------------------------
    def request_service(self):
        """The technician's service button (or combination): open the service screen,
        or close it if it is open. During a session it waits for the session to end."""
        if self.state == SERVICE:
            self._close_service()
        elif self.state == IDLE:
            self._open_service()
        else:
            self._service_wanted = not self._service_wanted

    def _open_service(self):
        self._service_wanted = False
        self._woken = None
        self.state = SERVICE
        self.service_opens += 1
        self.keep_service()
        title, details = self.service_text() if self.service_text else ("Service", "")
        self._show(screen.VIEW_SERVICE, title, (), details)

    def keep_service(self):
        """The technician is at work (the touch check): the service screen stays another
        _SERVICE_SHOW_MS before it returns to the customers."""
        self._service_at = self.clock.ticks_ms()

    def _close_service(self):
        self.state = IDLE
        self.show_idle()

    # -- events ----------------------------------------------------------------
    def face(self, rating):
        """A face was tapped (1 = worst). Returns True if it started a session. During
        the follow-up it is the next customer: the question on screen was left
        unanswered, so that session is stored with no answer first."""
        if self.state == SERVICE:
            return False  # the technician's screen shows no faces
        if self.closed_shown():
            self.wake()  # the closed screen asked nothing: this press only asks now
            return False
        scale = self._scale if self.state == FOLLOW_UP else self.config["scale"]
        if not 1 <= rating <= scale:
            return False
        self._woken = None
        now = self.clock.ticks_ms()
        if self.state == FOLLOW_UP:
            self._complete(record.TOLD_NO_ANSWER, ticks.diff(now, self._started), show=False)
        self._quick = self._read_quickly(now)
        self._flags = 0 if cfg.is_open(self.config, self.clock.wall()) else record.FLAG_CLOSED
        self._rating = rating
        self._started = now
        self._scale = self.config["scale"]
        self._version = self.config["version"]
        self.state = FOLLOW_UP
        t = self._texts()
        self._show(screen.VIEW_FOLLOW_UP, t["follow_up"], (t["no"], t["yes"]), "",
                   (rating, self._scale))
        return True

    def answer(self, yes):
        """Yes or no to the follow-up question. Returns True if it completed a session."""
        if self.state != FOLLOW_UP:
            return False
        now = self.clock.ticks_ms()
        if self._read_quickly(now):
            self._quick = True
        self._complete(record.TOLD_YES if yes else record.TOLD_NO,
                       ticks.diff(now, self._started))
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
                if self._service_wanted:
                    self._open_service()
                else:
                    self.show_idle()
        elif self.state == SERVICE:
            if ticks.diff(now, self._service_at) >= _SERVICE_SHOW_MS:
                self._close_service()
        elif self._woken is not None and ticks.diff(now, self._woken) >= (
                self.config["follow_up_timeout_s"] * 1000):
            self._woken = None  # nobody rated: back to the closed screen
            self.show_idle()
        elif ticks.diff(now, self._hours_checked) >= _HOURS_CHECK_MS:
            was_open = self._open
            self._hours_checked = now
            if cfg.is_open(self.config, self.clock.wall()) != was_open:
                self.show_idle()

    def _rapid(self):
        """Hammering, not a queue: quick taps soon after the previous session."""
        return self._quick and self._last_end is not None and ticks.diff(
            self._started, self._last_end) < self.config["rapid_interval_s"] * 1000

    def _complete(self, told, latency_ms, show=True):
        clock = self.clock
        flags = self._flags | (record.FLAG_RAPID if self._rapid() else 0)
        try:
            self.last_seq = self.log.append(
                self._rating, self._scale, told, (latency_ms + 50) // 100, flags,
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
        if show:
            t = self._texts()
            self._show(screen.VIEW_THANKS, t["sorry"] if told == record.TOLD_NO else t["thanks"])
