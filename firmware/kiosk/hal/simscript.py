# The simulated customer: plays a script of events against a running kiosk through the
# simulated buttons and clock, so every tap goes through the real debouncer and flow.
#
#   rate N      tap face N (1 = worst)        yes / no    answer the follow-up
#   wait S      simulated time jumps S seconds (no real sleeping)
#   clock T     set the device clock, as a host sync would (unix seconds or
#               YYYY-MM-DDTHH:MM:SSZ)
#   exit        stop the simulator           # ...       comment (also after an event)
import asyncio

from kiosk import civil
from kiosk.clock import SOURCE_HOST
from micropython import const

_MAX_JUMP_MS = const(86400000)


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


def parse(text, board):
    """Parse a whole script up front, so a typo is reported before any customer taps.
    Returns a list of (verb, argument); raises ScriptError naming the line."""
    faces = {}
    answers = {}
    for i, button in enumerate(board["buttons"]):
        if button.get("face"):
            faces[button["face"]] = i
        if button.get("answer"):
            answers[button["answer"]] = i
    events = []
    for number, line in enumerate(text.split("\n"), 1):
        words = line.split("#", 1)[0].split()  # "# ..." comments, whole-line or trailing
        if not words:
            continue
        verb = words[0]
        try:
            if verb == "rate" and len(words) == 2:
                face = int(words[1])
                if face not in faces:
                    raise ScriptError("line %d: no face %d on this board (faces %s)"
                                      % (number, face, sorted(faces)))
                events.append(("press", faces[face]))
            elif verb in ("yes", "no") and len(words) == 1:
                if verb not in answers:
                    raise ScriptError("line %d: this board has no %r button" % (number, verb))
                events.append(("press", answers[verb]))
            elif verb == "wait" and len(words) == 2:
                seconds = float(words[1])
                if not 0 <= seconds <= 10 * 365 * 86400:
                    raise ValueError
                events.append(("wait", int(seconds * 1000)))
            elif verb == "clock" and len(words) == 2:
                events.append(("clock", _parse_time(words[1])))
            elif verb == "exit" and len(words) == 1:
                events.append(("exit", 0))
            else:
                raise ScriptError("line %d: unknown event %r (use rate N, yes, no, wait S, "
                                  "clock T, exit)" % (number, line.strip()))
        except ScriptError:
            raise
        except ValueError:
            raise ScriptError("line %d: bad value in %r" % (number, line.strip()))
    return events


async def play(events, hal, kiosk):
    """Play events; returns True when the script said exit."""
    hold_ms = kiosk.poll_ms * (kiosk.debouncer.stable_polls + 2)
    for verb, arg in events:
        if verb == "press":
            hal.set_pressed(arg, True)
            await asyncio.sleep_ms(hold_ms)
            hal.set_pressed(arg, False)
            await asyncio.sleep_ms(hold_ms)
        elif verb == "wait":
            left = arg
            while left:
                # Jump in steps the tick arithmetic can tell apart (under 2**29 ms), and
                # let the timer task see each one.
                step = min(left, _MAX_JUMP_MS)
                hal.jump_ms(step)
                left -= step
                await asyncio.sleep_ms(kiosk.poll_ms * 2 + 60)
        elif verb == "clock":
            kiosk.clock.set_wall(arg, SOURCE_HOST)
        elif verb == "exit":
            return True
    return False
