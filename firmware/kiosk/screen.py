# The screen interface the flow draws through, and a text stand-in.
#
# show(kind, title, options, note, chosen): kind is one of the VIEW_* names; title the main
# line; options the labels of the choices (faces or yes/no), in button order; note a small
# line; chosen, on the follow-up, the (rating, scale) of the face the customer tapped;
# mark, a small neutral sign that service is needed (customer screens carry no technician
# text). The e-ink screens (kiosk.ui.screens) implement the same method.
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
        self.note = ""
        self.options = ()
        self.mark = False
        self.views = 0

    def show(self, kind, title, options=(), note="", chosen=None, mark=False):
        self.kind = kind
        self.title = title
        self.note = note
        self.options = options
        self.mark = mark
        self.views += 1
        if self._write is not None:
            line = "[screen] %s: %s" % (kind, title)
            if chosen:
                line += " {face %d/%d}" % chosen
            if options:
                line += " [" + " | ".join(options) + "]"
            if note:
                line += " (" + note.replace("\n", "; ") + ")"
            if mark:
                line += " {service mark}"
            self._write(line + "\n")


class ScreenTee:
    """Shows every view on several screens (the panel, and the console in the simulator)."""

    def __init__(self, *screens):
        self.screens = screens

    def show(self, kind, title, options=(), note="", chosen=None, mark=False):
        for s in self.screens:
            s.show(kind, title, options, note, chosen, mark)
