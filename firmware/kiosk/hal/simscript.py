# The simulated customer: plays a script of events against a running kiosk through the
# simulated buttons and clock, so every tap goes through the real debouncer and flow.
#
#   rate N      tap face N (1 = worst)        yes / no    answer the follow-up
#               (a customer: waits until the screen shows the question, and reads it;
#               on the closed screen presses once to bring the question up; presses
#               again if the screen changed under the finger and the press was early)
#   quick E     E (rate N, yes or no) at once, without waiting to see or read the screen:
#               a double press, a child hammering the buttons
#   wait S      S simulated seconds pass: every timer fires at its due time within them,
#               on the virtual clock (no real sleeping, also with --realtime)
#   clock T     set the device clock, as a host sync would (unix seconds or
#               YYYY-MM-DDTHH:MM:SSZ)
#   service     the technician's service button (on a board without one, both end face
#               buttons held for 3 s): opens or closes the service screen
#   touch [N]   a touch board's finger on target N of the screen shown (1 = the first),
#               or without N on the middle of the screen (the service screen's touch check)
#   wifi off    the simulated network goes down: connection attempts fail (OSError)
#   wifi on     the network is back
#   exit        stop the simulator           # ...       comment (also after an event)
import asyncio

from kiosk import civil, ticks
from kiosk import config as cfg
from kiosk.clock import EARLIEST_WALL, LATEST_WALL, SOURCE_HOST
from micropython import const

# A long wait sleeps in steps of a day: asyncio's deadlines must stay within half the tick
# period, which is 2**29 ms on a 32-bit port.
_WAIT_STEP_MS = const(86400000)


# How often a scripted customer presses again when a press was early for a screen that
# changed under the finger.
_RETRIES = const(3)
_SERVICE_HOLD_MS = const(3300)  # over the app's 3 s hold of both end buttons


class ScriptError(ValueError):
    pass


def _parse_time(text):
    if text.isdigit():
        return int(text)
    if len(text) != 20 or text[4] != "-" or text[7] != "-" or text[10] != "T" or text[19] != "Z":
        raise ValueError
    y, mo, d = int(text[:4]), int(text[5:7]), int(text[8:10])
    h, mi, s = int(text[11:13]), int(text[14:16]), int(text[17:19])
    if not (1 <= mo <= 12 and 1 <= d <= 31 and h < 24 and mi < 60 and s < 60):
        raise ValueError
    return civil.days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s


def _buttons(board):
    """(face -> button index, answer -> button index); on a touch board the faces and
    answers are touch targets instead: ("touch", option index) by face/answer."""
    if board.get("touch"):
        return ({face: ("touch", face - 1) for face in range(1, 6)},
                {"no": ("touch", 0), "yes": ("touch", 1)})
    faces = {}
    answers = {}
    for i, button in enumerate(board["buttons"]):
        if button.get("face"):
            faces[button["face"]] = i
        if button.get("answer"):
            answers[button["answer"]] = i
    return faces, answers


def _event(line, number, faces, answers):
    """One script line as (verb, argument), None for a blank or comment line; raises
    ScriptError naming the line."""
    words = line.split("#", 1)[0].split()  # "# ..." comments, whole-line or trailing
    if not words:
        return None
    # "quick E": E pressed at once, without waiting to see the screen.
    press = "press"
    if words[0] == "quick":
        if len(words) < 2 or words[1] not in ("rate", "yes", "no"):
            raise ScriptError("line %d: quick goes before rate N, yes or no" % number)
        press = "quick"
        words = words[1:]
    verb = words[0]
    try:
        if verb == "rate" and len(words) == 2:
            face = int(words[1])
            if face not in faces:
                raise ScriptError("line %d: no face %d on this board (faces %s)"
                                  % (number, face, sorted(faces)))
            return (press, faces[face])
        if verb in ("yes", "no") and len(words) == 1:
            if verb not in answers:
                raise ScriptError("line %d: this board has no %r button" % (number, verb))
            return (press, answers[verb])
        if verb == "wait" and len(words) == 2:
            seconds = float(words[1])
            if not 0 <= seconds <= 10 * 365 * 86400:
                raise ValueError
            return ("wait", int(seconds * 1000))
        if verb == "clock" and len(words) == 2:
            wall = _parse_time(words[1])
            if not EARLIEST_WALL <= wall <= LATEST_WALL:
                raise ScriptError("line %d: clock %s is outside 2000-01-01..2100-01-01, "
                                  "which a kiosk refuses" % (number, words[1]))
            return ("clock", wall)
        if verb == "service" and len(words) == 1:
            return ("service", 0)
        if verb == "touch" and len(words) <= 2:
            if not isinstance(answers.get("yes"), tuple):
                raise ScriptError("line %d: this board has no touch panel" % number)
            target = int(words[1]) if len(words) == 2 else 0
            if target < 0:
                raise ValueError
            return ("touch", target - 1)
        if verb == "wifi" and len(words) == 2 and words[1] in ("on", "off"):
            return ("wifi", 1 if words[1] == "on" else 0)
        if verb == "exit" and len(words) == 1:
            return ("exit", 0)
    except ScriptError:
        raise
    except ValueError:
        raise ScriptError("line %d: bad value in %r" % (number, line.strip()))
    raise ScriptError("line %d: unknown event %r (use rate N, yes, no, quick rate N|yes|no, "
                      "wait S, clock T, service, touch [N], wifi on|off, exit)"
                      % (number, line.strip()))


def events(path, board):
    """Yield the script's events, reading the file a line at a time (a long script must
    not take the simulated device's heap)."""
    faces, answers = _buttons(board)
    with open(path) as f:
        number = 0
        for line in f:
            number += 1
            event = _event(line, number, faces, answers)
            if event is not None:
                yield event


def check(path, board):
    """Read the whole script once before any customer taps, so a typo is reported first."""
    for _ in events(path, board):
        pass


async def _press(hal, debouncer, index, poll_ms):
    # Like a finger: hold until the click registers, then let go until it is released.
    before = debouncer.presses
    hal.set_pressed(index, True)
    while debouncer.presses == before:
        await asyncio.sleep_ms(poll_ms)
    hal.set_pressed(index, False)
    while debouncer.held() & (1 << index):
        await asyncio.sleep_ms(poll_ms)


async def _read(hal, kiosk, option):
    # Like a customer: wait until the panel shows a screen with the option to tap (on a
    # touch board the thank-you screen has none), then read it for as long as the kiosk
    # expects a person to (min_read_ms, at least the input guard).
    config = kiosk.flow.config
    reading = max(config["input_guard_ms"], config["min_read_ms"])
    while True:
        seen = kiosk.flow.seen_since()
        if (seen is not None and ticks.diff(hal.ticks_ms(), seen) >= reading
                and (option is None or option < len(kiosk.screens.boxes))):
            return
        await asyncio.sleep_ms(kiosk.poll_ms)


async def _touch(hal, kiosk, option):
    # Like a customer, wait until the screen shows the option (the thank-you screen has
    # none), then put a finger on the middle of its box.
    while option >= len(kiosk.screens.boxes):
        await asyncio.sleep_ms(kiosk.poll_ms)
    x, y = kiosk.screens.boxes[option].centre()
    await _touch_at(hal, kiosk, x, y)


async def _touch_at(hal, kiosk, x, y):
    taps = kiosk.touch_taps
    before = taps.taps
    hal.touch_at(x, y)
    while taps.taps == before:
        await asyncio.sleep_ms(kiosk.poll_ms)
    hal.release()
    while taps.touching():
        await asyncio.sleep_ms(kiosk.poll_ms)


async def _wake(hal, kiosk, arg):
    # The closed screen asks nothing (docs/flow.md): a customer who came to rate presses
    # once (touches it anywhere) to bring up the question, then reads it.
    if not kiosk.flow.closed_shown():
        return
    await _read(hal, kiosk, None)
    if isinstance(arg, tuple):
        screens = kiosk.screens
        await _touch_at(hal, kiosk, screens.width // 2, screens.height // 2)
    else:
        await _press(hal, kiosk.debouncer, arg, kiosk.poll_ms)
    await asyncio.sleep_ms(kiosk.poll_ms)


async def _service(hal, kiosk):
    # The board's service button; without one the two end face buttons held together
    # past the app's hold time (docs/flow.md).
    for i, button in enumerate(kiosk.buttons):
        if button.get("service"):
            await _press(hal, kiosk.debouncer, i, kiosk.poll_ms)
            return
    ends = [i for i, b in enumerate(kiosk.buttons)
            if b.get("face") in (1, kiosk.face_buttons)]
    for i in ends:
        hal.set_pressed(i, True)
    await asyncio.sleep_ms(_SERVICE_HOLD_MS)
    for i in ends:
        hal.set_pressed(i, False)
    await asyncio.sleep_ms(kiosk.poll_ms)


def _button_for(kiosk, index):
    # A scale smaller than the button count is laid over all the face buttons
    # (cfg.scale_rating): "rate N" is face N of the scale in use, so press the first
    # button that gives it (the board's face N button when the scale fills the board).
    # An answer press keeps its button: the worst end is face 1, the best no face of a
    # smaller scale.
    face = kiosk.buttons[index].get("face")
    if face:
        for i, button in enumerate(kiosk.buttons):
            if button.get("face") and cfg.scale_rating(
                    button["face"], kiosk.face_buttons, kiosk.config["scale"]) == face:
                return i
    return index


async def play(path, hal, kiosk):
    """Play the script at path; returns True when it said exit."""
    for verb, arg in events(path, hal.board):
        if verb in ("press", "quick"):
            option = arg[1] if isinstance(arg, tuple) else None
            # A customer whose press did nothing because the screen changed under the
            # finger (the timer brought up the next view; the press was early for it)
            # reads the new screen and presses again. A quick press is never repeated.
            for _ in range(_RETRIES if verb == "press" else 1):
                if verb == "press":
                    await _wake(hal, kiosk, arg)
                    await _read(hal, kiosk, option)
                early = kiosk.flow.early_presses
                if option is None:
                    await _press(hal, kiosk.debouncer, _button_for(kiosk, arg), kiosk.poll_ms)
                else:
                    await _touch(hal, kiosk, option)
                # Let the input task act on the press before the next event.
                await asyncio.sleep_ms(kiosk.poll_ms)
                if kiosk.flow.early_presses == early:
                    break
        elif verb == "wait" and isinstance(arg, int):
            # The kiosk's tasks run through the wait on simulated time, each timer at its
            # moment; under --realtime the wait is fast-forwarded all the same.
            clock = hal.virtual_clock
            skip = not clock.paced_waits
            if skip:
                clock.fast_forward(True)
            try:
                left = arg
                while left:
                    step = min(left, _WAIT_STEP_MS)
                    await asyncio.sleep_ms(step)
                    left -= step
            finally:
                if skip:
                    clock.fast_forward(False)
        elif verb == "service":
            await _service(hal, kiosk)
        elif verb == "touch":
            if arg < 0:
                screens = kiosk.screens
                await _touch_at(hal, kiosk, screens.width // 2, screens.height // 2)
            else:
                await _touch(hal, kiosk, arg)
            await asyncio.sleep_ms(kiosk.poll_ms)
        elif verb == "clock":
            kiosk.clock.set_wall(arg, SOURCE_HOST)
        elif verb == "wifi":
            hal.set_network(arg)
        elif verb == "exit":
            return True
    return False
