"""Sending one message to one destination with apprise, and showing destinations without
their secrets.

Each destination gets its own apprise object, so one that fails (a refused SMTP login, a
webhook that is down) is known by itself and never stops the others."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from deskpulse.errors import DeskPulseError

EMAIL_SCHEMES = ("mailto", "mailtos")


@dataclass(frozen=True, slots=True)
class Message:
    """A title (an email's subject) and a plain-text body; `html`, when given, is what an
    email destination gets instead (with a plain-text part apprise derives from it)."""

    title: str
    text: str
    html: str | None = None


Deliver = Callable[[str, Message], "str | None"]
"""(url, message) -> None when delivered, else why not: `deliver`, or a test's wrapper."""


def _plugin(url: str) -> Any:
    import apprise  # not at the top: only commands that notify load it

    return apprise.Apprise.instantiate(url)


def check_destination(url: str) -> str:
    """The URL if apprise can send to it; otherwise a one-line DeskPulseError, with
    apprise's reason when it gives one."""
    import apprise

    with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
        plugin = _plugin(url)
        said = captured.getvalue().strip().splitlines()  # type: ignore[attr-defined]
    if plugin is None:
        reason = f" ({_scrubbed(said[0].rpartition(' - ')[2], url)})" if said else ""
        raise DeskPulseError(
            f"destination {safe_url(url)} is not a URL apprise can send to{reason}: give e.g. "
            "mailtos://USER:PASSWORD@smtp.example.com?to=manager@example.com, "
            "json://HOST/PATH, slack://TOKEN_A/TOKEN_B/TOKEN_C or msteams://... "
            "(https://github.com/caronc/apprise/wiki)")
    return url


def safe_url(url: str) -> str:
    """The destination as messages show it: apprise's privacy form (passwords and tokens
    masked) without its options; a URL apprise cannot read loses its user part and query."""
    plugin = _plugin(url)
    if plugin is not None:
        return str(plugin.url(privacy=True)).partition("?")[0]
    return re.sub(r"//[^/@?#]*@", "//***@", url).partition("?")[0]


def is_email(url: str) -> bool:
    return urlsplit(url).scheme.lower() in EMAIL_SCHEMES


def deliver(url: str, message: Message) -> str | None:
    """Send; None when the destination took it, else why not (secrets scrubbed)."""
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return "apprise cannot read this URL"
    html = message.html if is_email(url) else None
    with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
        try:
            delivered = sender.notify(
                body=message.text if html is None else html, title=message.title,
                body_format=apprise.NotifyFormat.TEXT if html is None
                else apprise.NotifyFormat.HTML)
        except Exception as exc:  # a plugin's own failure must not stop the other destinations
            return _scrubbed(f"{type(exc).__name__}: {exc}", url)
        said = captured.getvalue().strip().splitlines()  # type: ignore[attr-defined]
    if delivered:
        return None
    # Apprise's lines start with a time and a level: the words are what matters.
    reason = said[-1].rpartition(" - ")[2] if said else "not delivered"
    return _scrubbed(reason, url)


def _scrubbed(text: str, url: str) -> str:
    """Apprise's own words about a failure, without the URL's password should they hold it."""
    parts = urlsplit(url)
    for secret in (parts.password, parts.username and parts.password and url):
        if secret:
            text = text.replace(secret, "***")
    return text.strip()
