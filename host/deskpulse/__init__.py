"""DeskPulse host tools: simulator, flashing, sync and reporting for the feedback kiosk."""


def installed_version() -> str | None:
    """The installed package's version; None in a source tree that is not installed."""
    from importlib import metadata  # here: few commands need it

    try:
        return metadata.version("deskpulse")
    except metadata.PackageNotFoundError:
        return None
