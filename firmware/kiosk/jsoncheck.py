# A strict JSON check (RFC 8259) to run before json.load, fed the text in pieces.
#
# MicroPython's json.loads accepts broken texts ('{"scale": 3,,}', '{"a": 1 "b": 2}') and
# recurses once per nesting level, so a deeply nested file ends in MemoryError or
# RecursionError. A config must be exactly what its author wrote, so every path that reads
# one checks it here first. The text arrives in pieces of any size (a serial upload's
# lines, a file read a few dozen bytes at a time) and is never whole in RAM: the checker
# keeps where it is in the grammar between pieces, the open containers as bits of one int,
# and allocates nothing until a problem is reported; no recursion.
# The bytes of strings must be well-formed UTF-8 (RFC 3629: no overlong forms, no
# surrogates, nothing past U+10FFFF): json.load gets the bytes themselves, and
# MicroPython's own UTF-8 test takes all of those. Meaning is left to config.validate.
# It runs on CPython too (the host checks configs with it when it has no MicroPython).
try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:
    # MicroPython never takes this branch and never looks const up: its compiler folds
    # NAME = const(n) itself.
    def const(value):
        return value

MAX_DEPTH = const(8)  # a config nests 3 levels deep (texts.en.question)

# Where the checker is in the grammar: between tokens (with _state below), or inside one.
_TOKENS = const(0)
_STRING = const(1)
_ESCAPE = const(2)  # just after a backslash in a string
_HEX = const(3)  # in the 4 hex digits of \uXXXX
_NUMBER = const(4)
_WORD = const(5)  # in true, false or null

# Between tokens: what may come next.
_VALUE = const(0)  # a value
_FIRST_ITEM = const(1)  # just after '[': a value or ']'
_FIRST_KEY = const(2)  # just after '{': a key or '}'
_KEY = const(3)  # after ',' in an object: a key
_COLON = const(4)  # after a key
_AFTER = const(5)  # after a value: ',' or the closer, or the end at the top level

# Inside a number: -? (0 | [1-9][0-9]*) (. digits)? ([eE] [+-]? digits)?
_N_MINUS = const(0)  # after the leading '-': a digit must come
_N_ZERO = const(1)  # after a leading 0: no digit may come
_N_INT = const(2)  # in the integer part's digits
_N_POINT = const(3)  # after '.': a digit must come
_N_FRACTION = const(4)
_N_E = const(5)  # after 'e' or 'E': a sign or a digit must come
_N_SIGN = const(6)  # after the exponent's sign: a digit must come
_N_EXPONENT = const(7)

_QUOTE = const(34)
_BACKSLASH = const(92)
_COMMA = const(44)
_COLON_CH = const(58)
_OPEN_OBJ = const(123)
_CLOSE_OBJ = const(125)
_OPEN_ARR = const(91)
_CLOSE_ARR = const(93)
_MINUS = const(45)
_PLUS = const(43)
_DOT = const(46)
_ZERO = const(48)
_NINE = const(57)
_CONT_LOW = const(0x80)  # the range of a UTF-8 continuation byte
_CONT_HIGH = const(0xBF)


class JsonProblem(ValueError):
    """Why a text is not JSON; the message says what was expected and at which byte
    (counted from 0)."""


class TooDeep(JsonProblem):
    """Valid so far, but nested deeper than MAX_DEPTH: its own problem, because the
    text may be fine JSON that this device will not parse."""


class BadUtf8(JsonProblem):
    """Valid JSON syntax, but a string's bytes are not UTF-8. Reported only when the
    syntax has no problem, as when the text was decoded after the check."""


def _is_hex(b):
    return _ZERO <= b <= _NINE or 97 <= (b | 32) <= 102


class Checker:
    """A JSON text checked as it arrives: feed(piece) for each piece in order, of any
    size, then end(). Either raises JsonProblem (TooDeep, BadUtf8) for the text's first
    problem, at its byte offset in the whole text; a checker that raised is spent: it
    raises the same problem (also kept in .problem) until reset()."""

    def __init__(self):
        self.reset()

    def reset(self):
        """Start on a new text. Every attribute is set here: storing a new one later
        would grow the instance (an allocation)."""
        self.problem = None
        self.fed = 0  # bytes fed so far: the offset of the next piece's first byte
        self._mode = _TOKENS
        self._state = _VALUE
        self._depth = 0
        self._objects = 0  # bit d set: the container at depth d + 1 is an object
        self._then = _AFTER  # the state once the string in progress ends (_COLON: a key)
        self._step = 0  # _HEX: digits still due; _NUMBER: the part (_N_*); _WORD: matched
        self._word = b""
        self._start = 0  # offset of the word in progress
        self._more = 0  # UTF-8 continuation bytes still due
        self._lead = 0  # offset of the UTF-8 sequence in progress (a problem is told there)
        self._low = _CONT_LOW  # the range the next continuation byte must lie in
        self._high = _CONT_HIGH
        self._bad_utf8 = -1  # offset of the first sequence that is not UTF-8; -1: none

    def _fail(self, what, pos):
        """The problem to raise, kept: what was wrong, at which byte."""
        self.problem = JsonProblem("%s at byte %d" % (what, pos))
        return self.problem

    def feed(self, data, count=-1):
        """Check the next piece of the text: data[:count] (bytes, bytearray or
        memoryview; count < 0: all of it)."""
        if self.problem is not None:
            raise self.problem
        end = len(data) if count < 0 else count
        base = self.fed
        mode = self._mode
        state = self._state
        depth = self._depth
        objects = self._objects
        step = self._step
        more = self._more
        lead = self._lead
        low = self._low
        high = self._high
        pos = 0
        while pos < end:
            b = data[pos]
            if mode == _STRING:  # most of a config's bytes: first
                if more:
                    if low <= b <= high:
                        more -= 1
                        low = _CONT_LOW
                        high = _CONT_HIGH
                        pos += 1
                        continue
                    # A sequence cut short: this byte starts afresh.
                    more = 0
                    low = _CONT_LOW
                    high = _CONT_HIGH
                    if self._bad_utf8 < 0:
                        self._bad_utf8 = lead
                if b == _QUOTE:
                    mode = _TOKENS
                    state = self._then
                elif b == _BACKSLASH:
                    mode = _ESCAPE
                elif b < 32:
                    raise self._fail("control character 0x%02x in a string" % b, base + pos)
                elif b >= 0x80:
                    lead = base + pos
                    if b < 0xC2 or b > 0xF4:  # a continuation byte, an overlong lead, or
                        if self._bad_utf8 < 0:  # past U+10FFFF
                            self._bad_utf8 = lead
                    elif b < 0xE0:
                        more = 1
                    elif b < 0xF0:
                        more = 2
                        if b == 0xE0:
                            low = 0xA0  # below: overlong forms of U+0000-07FF
                        elif b == 0xED:
                            high = 0x9F  # above: the surrogates U+D800-DFFF
                    else:
                        more = 3
                        if b == 0xF0:
                            low = 0x90  # below: overlong forms of U+0000-FFFF
                        elif b == 0xF4:
                            high = 0x8F  # above: past U+10FFFF
                pos += 1
            elif mode == _TOKENS:
                if b == 32 or b == 10 or b == 13 or b == 9:
                    pos += 1
                    continue
                if state == _AFTER:
                    if depth == 0:
                        raise self._fail("expected the end of the text", base + pos)
                    in_object = objects >> (depth - 1) & 1
                    if b == _COMMA:
                        state = _KEY if in_object else _VALUE
                    elif b == (_CLOSE_OBJ if in_object else _CLOSE_ARR):
                        depth -= 1
                    else:
                        raise self._fail("expected ',' or '}'" if in_object
                                         else "expected ',' or ']'", base + pos)
                elif state == _COLON:
                    if b != _COLON_CH:
                        raise self._fail("expected ':'", base + pos)
                    state = _VALUE
                elif state == _KEY or state == _FIRST_KEY:
                    if b == _QUOTE:
                        mode = _STRING
                        self._then = _COLON
                    elif b == _CLOSE_OBJ and state == _FIRST_KEY:
                        depth -= 1
                        state = _AFTER
                    else:
                        raise self._fail("expected '\"' (a key)" if state == _KEY
                                         else "expected '\"' or '}'", base + pos)
                elif b == _CLOSE_ARR and state == _FIRST_ITEM:  # _VALUE or _FIRST_ITEM
                    depth -= 1
                    state = _AFTER
                elif b == _OPEN_OBJ or b == _OPEN_ARR:
                    if depth == MAX_DEPTH:
                        self.problem = TooDeep("more than %d levels of arrays and objects "
                                               "at byte %d" % (MAX_DEPTH, base + pos))
                        raise self.problem
                    if b == _OPEN_OBJ:
                        objects |= 1 << depth
                        state = _FIRST_KEY
                    else:
                        objects &= ~(1 << depth)
                        state = _FIRST_ITEM
                    depth += 1
                elif b == _QUOTE:
                    mode = _STRING
                    self._then = _AFTER
                elif b == _MINUS:
                    mode = _NUMBER
                    step = _N_MINUS
                elif _ZERO <= b <= _NINE:
                    mode = _NUMBER
                    step = _N_ZERO if b == _ZERO else _N_INT
                elif b == 116 or b == 102 or b == 110:  # t, f, n
                    mode = _WORD
                    self._word = b"true" if b == 116 else b"false" if b == 102 else b"null"
                    self._start = base + pos
                    step = 1
                else:
                    raise self._fail("expected a value", base + pos)
                pos += 1
            elif mode == _NUMBER:
                digit = _ZERO <= b <= _NINE
                if step == _N_INT or step == _N_FRACTION or step == _N_EXPONENT:
                    if digit:
                        pos += 1
                        continue
                    if b == _DOT and step == _N_INT:
                        step = _N_POINT
                    elif b | 32 == 101 and step != _N_EXPONENT:  # e or E
                        step = _N_E
                    else:  # the number is over: this byte is the next token's
                        mode = _TOKENS
                        state = _AFTER
                        continue
                elif step == _N_ZERO:
                    if digit:
                        raise self._fail("a number may not start with 0", base + pos - 1)
                    if b == _DOT:
                        step = _N_POINT
                    elif b | 32 == 101:
                        step = _N_E
                    else:
                        mode = _TOKENS
                        state = _AFTER
                        continue
                elif step == _N_E and (b == _PLUS or b == _MINUS):
                    step = _N_SIGN
                elif not digit:  # _N_MINUS, _N_POINT, _N_E, _N_SIGN: a digit must come
                    raise self._fail("expected a digit", base + pos)
                elif step == _N_MINUS:
                    step = _N_ZERO if b == _ZERO else _N_INT
                elif step == _N_POINT:
                    step = _N_FRACTION
                else:
                    step = _N_EXPONENT
                pos += 1
            elif mode == _ESCAPE:
                if b == 117:  # \uXXXX
                    mode = _HEX
                    step = 4
                elif b in b'"\\/bfnrt':
                    mode = _STRING
                else:
                    raise self._fail("unknown escape in a string", base + pos - 1)
                pos += 1
            elif mode == _HEX:
                if not _is_hex(b):
                    raise self._fail("expected 4 hex digits after \\u", base + pos)
                step -= 1
                if not step:
                    mode = _STRING
                pos += 1
            else:  # _WORD
                word = self._word
                if b != word[step]:
                    raise self._fail("expected a value", self._start)
                step += 1
                if step == len(word):
                    mode = _TOKENS
                    state = _AFTER
                pos += 1
        self.fed = base + end
        self._mode = mode
        self._state = state
        self._depth = depth
        self._objects = objects
        self._step = step
        self._more = more
        self._lead = lead
        self._low = low
        self._high = high

    def end(self):
        """The text is over: raise its problem, if it has one."""
        if self.problem is not None:
            raise self.problem
        total = self.fed
        mode = self._mode
        state = self._state
        if mode == _STRING or mode == _ESCAPE:
            raise self._fail("unterminated string", total)
        if mode == _HEX:
            raise self._fail("expected 4 hex digits after \\u", total)
        if mode == _WORD:
            raise self._fail("expected a value", self._start)
        if mode == _NUMBER:
            step = self._step
            if step == _N_MINUS or step == _N_POINT or step == _N_E or step == _N_SIGN:
                raise self._fail("expected a digit", total)
            state = _AFTER
        if state != _AFTER or self._depth:
            raise self._fail("unexpected end of the text", total)
        if self._bad_utf8 >= 0:
            self.problem = BadUtf8("invalid UTF-8 at byte %d" % self._bad_utf8)
            raise self.problem


_checker = None  # check()'s, made at its first call: later calls allocate nothing


def check(data):
    """Raise JsonProblem unless data (bytes or bytearray) is one JSON value, with nothing
    but whitespace around it, at most MAX_DEPTH nested arrays and objects (TooDeep) and
    strings of UTF-8 (BadUtf8): a Checker fed data whole."""
    global _checker
    checker = _checker
    if checker is None:
        checker = _checker = Checker()
    else:
        checker.reset()
    checker.feed(data)
    checker.end()
