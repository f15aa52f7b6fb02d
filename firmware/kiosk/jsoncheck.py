# A strict JSON syntax check (RFC 8259) to run before json.loads.
#
# MicroPython's json.loads accepts broken texts ('{"scale": 3,,}', '{"a": 1 "b": 2}') and
# recurses once per nesting level, so a deeply nested file ends in MemoryError or
# RecursionError. A config must be exactly what its author wrote, so every path that reads
# one checks it here first. The check walks the bytes once, without recursion: the open
# containers are bits of one int, and nothing is allocated until a problem is reported.
# It checks syntax only: UTF-8 is left to the decoder, and meaning to config.validate.
# It runs on CPython too (the host checks configs with it when it has no MicroPython).
try:
    from micropython import const  # pyright: ignore[reportAssignmentType]
except ImportError:
    # MicroPython never takes this branch and never looks const up: its compiler folds
    # NAME = const(n) itself.
    def const(value):
        return value

MAX_DEPTH = const(8)  # a config nests 3 levels deep (texts.en.question)

_VALUE = const(0)  # a value must come next
_FIRST_ITEM = const(1)  # just after '[': a value or ']'
_FIRST_KEY = const(2)  # just after '{': a key or '}'
_KEY = const(3)  # after ',' in an object: a key
_COLON = const(4)  # after a key
_AFTER = const(5)  # after a value: ',' or the closer, or the end at the top level

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


class JsonProblem(ValueError):
    """Why a text is not JSON; the message says what was expected and at which byte
    (counted from 0)."""


class TooDeep(JsonProblem):
    """Valid so far, but nested deeper than MAX_DEPTH: its own problem, because the
    text may be fine JSON that this device will not parse."""


def _fail(what, pos):
    """The problem to raise: what was wrong, at which byte."""
    return JsonProblem("%s at byte %d" % (what, pos))


def _is_digit(b):
    return _ZERO <= b <= _NINE


def _is_hex(b):
    return _ZERO <= b <= _NINE or 97 <= (b | 32) <= 102


def _string(data, pos, end):
    """End of the string that starts with the quote at data[pos]."""
    pos += 1
    while pos < end:
        b = data[pos]
        if b == _QUOTE:
            return pos + 1
        if b < 32:
            raise _fail("control character 0x%02x in a string" % b, pos)
        if b == _BACKSLASH:
            pos += 1
            if pos >= end:
                break
            b = data[pos]
            if b == 117:  # \uXXXX
                for i in range(pos + 1, pos + 5):
                    if i >= end or not _is_hex(data[i]):
                        raise _fail("expected 4 hex digits after \\u", i)
                pos += 4
            elif b not in b'"\\/bfnrt':
                raise _fail("unknown escape in a string", pos - 1)
        pos += 1
    raise _fail("unterminated string", end)


def _digits(data, pos, end):
    """End of the digits from pos; at least one is needed."""
    if pos >= end or not _is_digit(data[pos]):
        raise _fail("expected a digit", pos)
    while pos < end and _is_digit(data[pos]):
        pos += 1
    return pos


def _number(data, pos, end):
    """End of the number at data[pos]: -? (0 | [1-9][0-9]*) (. digits)? ([eE] [+-]? digits)?"""
    if data[pos] == _MINUS:
        pos += 1
    if pos < end and data[pos] == _ZERO:
        pos += 1
        if pos < end and _is_digit(data[pos]):
            raise _fail("a number may not start with 0", pos - 1)
    else:
        pos = _digits(data, pos, end)
    if pos < end and data[pos] == _DOT:
        pos = _digits(data, pos + 1, end)
    if pos < end and data[pos] | 32 == 101:  # e or E
        pos += 1
        if pos < end and (data[pos] == _PLUS or data[pos] == _MINUS):
            pos += 1
        pos = _digits(data, pos, end)
    return pos


def _word(data, pos, end, word):
    """End of the literal word (true, false, null) at data[pos]."""
    for i in range(len(word)):
        if pos + i >= end or data[pos + i] != word[i]:
            raise _fail("expected a value", pos)
    return pos + len(word)


def check(data):
    """Raise JsonProblem unless data (bytes or bytearray) is one JSON value, with nothing
    but whitespace around it and at most MAX_DEPTH nested arrays and objects (TooDeep)."""
    end = len(data)
    state = _VALUE
    depth = 0
    objects = 0  # bit d set: the container at depth d + 1 is an object
    pos = 0
    while pos < end:
        b = data[pos]
        if b == 32 or b == 10 or b == 13 or b == 9:
            pos += 1
            continue
        if state == _AFTER:
            if depth == 0:
                raise _fail("expected the end of the text", pos)
            in_object = objects >> (depth - 1) & 1
            if b == _COMMA:
                state = _KEY if in_object else _VALUE
                pos += 1
            elif b == (_CLOSE_OBJ if in_object else _CLOSE_ARR):
                depth -= 1
                pos += 1
            else:
                raise _fail("expected ',' or '}'" if in_object else "expected ',' or ']'", pos)
        elif state == _COLON:
            if b != _COLON_CH:
                raise _fail("expected ':'", pos)
            state = _VALUE
            pos += 1
        elif state == _KEY or state == _FIRST_KEY:
            if b == _QUOTE:
                pos = _string(data, pos, end)
                state = _COLON
            elif b == _CLOSE_OBJ and state == _FIRST_KEY:
                depth -= 1
                state = _AFTER
                pos += 1
            else:
                raise _fail("expected '\"' (a key)" if state == _KEY else "expected '\"' or '}'",
                      pos)
        else:  # _VALUE or _FIRST_ITEM
            if b == _CLOSE_ARR and state == _FIRST_ITEM:
                depth -= 1
                state = _AFTER
                pos += 1
            elif b == _OPEN_OBJ or b == _OPEN_ARR:
                if depth == MAX_DEPTH:
                    raise TooDeep("more than %d levels of arrays and objects at byte %d"
                                  % (MAX_DEPTH, pos))
                if b == _OPEN_OBJ:
                    objects |= 1 << depth
                    state = _FIRST_KEY
                else:
                    objects &= ~(1 << depth)
                    state = _FIRST_ITEM
                depth += 1
                pos += 1
            else:
                if b == _QUOTE:
                    pos = _string(data, pos, end)
                elif b == _MINUS or _is_digit(b):
                    pos = _number(data, pos, end)
                elif b == 116:
                    pos = _word(data, pos, end, b"true")
                elif b == 102:
                    pos = _word(data, pos, end, b"false")
                elif b == 110:
                    pos = _word(data, pos, end, b"null")
                else:
                    raise _fail("expected a value", pos)
                state = _AFTER
    if state != _AFTER or depth:
        raise _fail("unexpected end of the text", end)
