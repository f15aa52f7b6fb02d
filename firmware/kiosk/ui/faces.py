# Face icons for a rating scale, drawn with framebuf primitives so they stay crisp at 1 bit.
#
# Position 1 of a scale is the saddest face, position N the happiest. The mouth's curve
# follows the position; the two ends of the scale get one more cue each (worried brows,
# an open grin) so that "very" reads at a glance even on a small panel. Integer arithmetic
# throughout: moods are in thousandths (-1000 very sad .. 1000 very happy).
from array import array

from micropython import const

_SEGMENTS = const(8)  # straight pieces per mouth curve
_EXTREME = const(900)
SMALLEST = const(8)  # below this a face cannot be told from a blot: none is drawn
_MIN_CURVE = const(3)  # pixels between a mouth's corners and its middle, at least
_BROWS_FROM = const(36)  # smaller faces have no room for brows between eyes and outline


def mood(position, count):
    """-1000 (position 1) .. 1000 (position count) in even steps."""
    if count < 2:
        return 0
    return (2000 * (position - 1)) // (count - 1) - 1000


def _band(fb, points_top, points_bottom, colour):
    """Fill the polygon between two polylines that run left to right."""
    coords = array("h", points_top)
    n = len(points_bottom) // 2
    for i in range(n - 1, -1, -1):
        coords.append(points_bottom[2 * i])
        coords.append(points_bottom[2 * i + 1])
    fb.poly(0, 0, coords, colour, True)


def _curve(cx, y_mid, half_width, depth, shift):
    """Points of a parabola through the mouth corners at y_mid - depth/2 and its middle at
    y_mid + depth/2 (depth > 0 smiles), moved down by shift."""
    points = []
    for i in range(_SEGMENTS + 1):
        u = 2 * i - _SEGMENTS  # -SEGMENTS..SEGMENTS
        x = cx + half_width * u // _SEGMENTS
        y = y_mid + depth // 2 - depth * u * u // (_SEGMENTS * _SEGMENTS) + shift
        points.append(x)
        points.append(y)
    return points


def _thick_line(fb, x0, y0, x1, y1, thickness, colour):
    """A line thickness pixels tall (the brows are flat enough for a vertical offset)."""
    for d in range(thickness):
        fb.line(x0, y0 + d, x1, y1 + d, colour)


def draw(fb, cx, cy, size, position, count, ink, paper):
    """Draw face `position` of a `count`-point scale, size pixels across, centred on (cx, cy)."""
    if size < SMALLEST:
        return
    r = size // 2
    m = mood(position, count)
    stroke = max(2, (size + 6) // 16)
    fb.ellipse(cx, cy, r, r, ink, True)
    fb.ellipse(cx, cy, r - stroke, r - stroke, paper, True)

    # Eyes: upright ovals.
    eye_dx = r * 36 // 100
    eye_y = cy - r * 22 // 100
    eye_rx = max(2, r * 11 // 100)
    eye_ry = max(3, r * 17 // 100)
    fb.ellipse(cx - eye_dx, eye_y, eye_rx, eye_ry, ink, True)
    fb.ellipse(cx + eye_dx, eye_y, eye_rx, eye_ry, ink, True)

    if m <= -_EXTREME and size >= _BROWS_FROM:
        # Worried brows: inner ends raised.
        lift = max(2, r * 12 // 100)
        brow_y = eye_y - eye_ry - max(2, r * 10 // 100) - stroke
        inner = max(2, r * 8 // 100)
        outer = eye_dx + eye_rx + max(1, r // 12)
        _thick_line(fb, cx - outer, brow_y, cx - inner, brow_y - lift, stroke, ink)
        _thick_line(fb, cx + inner, brow_y - lift, cx + outer, brow_y, stroke, ink)

    mouth_y = cy + r * 40 // 100
    half_width = r * 46 // 100
    depth = m * r * 30 // 100000
    if m and -_MIN_CURVE < depth < _MIN_CURVE:
        # A curve of a pixel or two reads as a wobble on a small face, not a mood.
        depth = _MIN_CURVE if m > 0 else -_MIN_CURVE
    if m >= _EXTREME:
        # Open grin: a filled half-moon, its top edge slightly curved.
        depth = depth * 4 // 3
        top = _curve(cx, mouth_y, half_width + stroke // 2, depth // 4, -depth * 3 // 8)
        bottom = _curve(cx, mouth_y, half_width + stroke // 2, depth, stroke // 2)
        _band(fb, top, bottom, ink)
    else:
        up = -(stroke // 2)
        top = _curve(cx, mouth_y, half_width, depth, up)
        bottom = _curve(cx, mouth_y, half_width, depth, up + stroke)
        _band(fb, top, bottom, ink)
