"""A person at the dashboard of a running `deskpulse serve`, in Python's standard library
(the demo runs without the test dependencies): log in through the login form as a browser
does (its CSRF token, the session cookie), then read pages and the JSON API."""

from __future__ import annotations

import html
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from deskpulse.errors import DeskPulseError

TIMEOUT_S = 60.0  # a bound for a slow machine, not an expectation
_CSRF_FIELD = re.compile(r'name="csrf" value="([^"]+)"')


class DashboardClient:
    """One browser's worth of cookies against the dashboard at base_url."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))

    def _open(self, path: str, form: dict[str, str] | None = None) -> tuple[int, str]:
        data = None if form is None else urllib.parse.urlencode(form).encode()
        try:
            with self._opener.open(self.base_url + path, data=data, timeout=TIMEOUT_S) as got:
                return got.status, got.read().decode("utf-8")
        except urllib.error.HTTPError as refused:
            return refused.code, refused.read().decode("utf-8", "replace")
        except OSError as exc:
            raise DeskPulseError(f"cannot reach the dashboard at {self.base_url}: {exc}"
                                 ) from exc

    def log_in(self, name: str, password: str) -> None:
        """Fill in the login form; a refusal is an error naming the status."""
        status, form = self._open("/login")
        token = _CSRF_FIELD.search(form)
        if status != 200 or token is None:
            raise DeskPulseError(f"the dashboard's login page answered {status}")
        status, _ = self._open("/login", {"name": name, "password": password, "next": "/",
                                          "csrf": html.unescape(token.group(1))})
        if status != 200:
            raise DeskPulseError(f"logging in to the dashboard as {name} answered {status}")

    def status(self, path: str) -> int:
        return self._open(path)[0]

    def json(self, path: str) -> Any:
        status, body = self._open(path)
        if status != 200:
            raise DeskPulseError(f"the dashboard's {path} answered {status}")
        return json.loads(body)
