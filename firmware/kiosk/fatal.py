# A plain screen for when the app cannot run: a failure before or during its start, the
# technician's maintenance stop. It needs only the panel driver and MicroPython's built-in
# 8x8 font, not the app's screens and fonts (which may be what failed), and draws with a
# full refresh, waited for here: nothing else runs at that moment.
import asyncio

_LINE_PX = 10  # the built-in font is 8 px high
_MARGIN = 4


def show(panel, title, text):
    """Draw `title` and the lines of `text` (cut to the width) on the panel; errors of
    the panel itself are returned, never raised: the caller is already handling one."""
    try:
        fb = panel.framebuf
        fb.fill(panel.PAPER)
        fb.fill_rect(0, 0, panel.width, _LINE_PX + 2 * _MARGIN - 2, panel.INK)
        columns = (panel.width - 2 * _MARGIN) // 8
        fb.text(title[:columns], _MARGIN, _MARGIN, panel.PAPER)
        y = _LINE_PX + 2 * _MARGIN
        for line in text.split("\n"):
            while line and y + 8 <= panel.height:
                fb.text(line[:columns], _MARGIN, y, panel.INK)
                line = line[columns:]
                y += _LINE_PX
        asyncio.run(_refresh(panel))
    except Exception as error:  # noqa: BLE001 - reported by the caller
        return error
    return None


async def _refresh(panel):
    await panel.init()
    panel.write()
    await panel.update(True)
