"""The single domain error raised by DeskPulse host tools."""


class DeskPulseError(Exception):
    """The one domain error; the CLI prints it as `deskpulse: message`."""
