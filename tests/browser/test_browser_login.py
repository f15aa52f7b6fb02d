"""Logging in to the dashboard in a real browser (issue 17): the form, its error, the
session cookie, and the way back to the page asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from . import webchain
from .pagecheck import fill_login

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow  # a real browser and a real server

SESSION_COOKIE = "deskpulse_session"
# Every test of a process logs in from 127.0.0.1 to one server, whose rate limit counts
# failed logins per address (a success clears them): the failures here stay below its
# free ones, or the next test's login would wait.


def session_cookies(page: Page) -> list[dict]:
    return [dict(c) for c in page.context.cookies() if c["name"] == SESSION_COOKIE]


def test_a_wrong_password_shows_the_error_and_gives_no_session(
        page: Page, chain: webchain.Chain) -> None:
    page.goto(chain.url + "/login")
    fill_login(page, "lyon-manager", webchain.PASSWORD + "x")
    error = page.get_by_test_id("login-error")
    error.wait_for(state="visible")
    assert "wrong name or password" in error.inner_text().lower()
    assert urlsplit(page.url).path == "/login"
    assert session_cookies(page) == []
    # The name stays in the form, so only the password is typed again.
    assert page.get_by_test_id("login-name").input_value() == "lyon-manager"
    assert page.get_by_test_id("login-password").input_value() == ""


def test_an_unknown_name_reads_as_a_wrong_password(page: Page, chain: webchain.Chain) -> None:
    page.goto(chain.url + "/login")
    fill_login(page, "nobody-here", webchain.PASSWORD)
    assert "wrong name or password" in page.get_by_test_id("login-error").inner_text().lower()
    assert session_cookies(page) == []


def test_the_right_password_lands_on_the_overview_with_a_session(
        page: Page, chain: webchain.Chain) -> None:
    page.goto(chain.url + "/login")
    fill_login(page, "lyon-manager", webchain.PASSWORD)
    assert urlsplit(page.url).path == "/"
    page.get_by_test_id("overview-total").wait_for(state="visible")
    assert page.get_by_test_id("viewer").inner_text() == "lyon-manager"
    assert page.get_by_test_id("login-error").count() == 0
    (cookie,) = session_cookies(page)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    assert SESSION_COOKIE not in page.evaluate("document.cookie")  # no script reads it
