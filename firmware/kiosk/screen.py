# The screen interface the flow draws through, and a text stand-in.
#
# show(kind, title, options, note): kind is one of the VIEW_* names; title the main line;
# options the labels of the choices (faces or yes/no), in button order; note a small line.
# The e-ink screens (next issue) implement the same method.
VIEW_IDLE = "idle"
VIEW_FOLLOW_UP = "follow_up"
VIEW_THANKS = "thanks"
VIEW_CLOSED = "closed"
VIEW_SERVICE = "service"


class TextScreen:
    """Writes each view as one console line; keeps the last one for tests and status."""

    def __init__(self, write=None):
        self._write = write
        self.kind = None
        self.title = ""
        self.views = 0

    def show(self, kind, title, options=(), note=""):
        self.kind = kind
        self.title = title
        self.views += 1
        if self._write is not None:
            line = "[screen] %s: %s" % (kind, title)
            if options:
                line += " [" + " | ".join(options) + "]"
            if note:
                line += " (" + note + ")"
            self._write(line + "\n")


class ScreenTee:
    """Shows every view on several screens (the panel, and the console in the simulator)."""

    def __init__(self, *screens):
        self.screens = screens

    def show(self, kind, title, options=(), note=""):
        for s in self.screens:
            s.show(kind, title, options, note)
