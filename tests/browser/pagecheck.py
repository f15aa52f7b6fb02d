"""What a browser test does and checks on a page as a person would: log in; see that a
figure is drawn (its screenshot has ink, and the text the screenshot shows is the figure);
see that nothing is wider than the screen."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

INK_CONTRAST = 96  # a pixel this much darker or lighter (0-255 luminance) than the
# element's background is ink, not antialiasing of the background or a faint border
MIN_INK_PIXELS = 20  # a digit at 12 px is well over this; an empty or hidden box is 0


def fill_login(page: Page, name: str, password: str) -> None:
    """Type into the login form on screen and send it, as a person does."""
    page.get_by_test_id("login-name").fill(name)
    page.get_by_test_id("login-password").fill(password)
    with page.expect_navigation():
        page.get_by_test_id("login-submit").click()


def log_in(page: Page, url: str, name: str, password: str) -> None:
    page.goto(url + "/login")
    fill_login(page, name, password)
    assert page.get_by_test_id("login-error").count() == 0, f"{name} could not log in"


class Sessions:
    """Each user's session cookie, made once by logging in through the form, then given
    to the context of any test that starts logged in (argon2 makes each login cost)."""

    def __init__(self, open_page: Callable[[], Page], url: str, password: str,
                 cookies: dict[str, list[Any]]) -> None:
        self.open_page = open_page
        self.url = url
        self.password = password
        self.cookies = cookies  # kept beyond one test and its browser

    def sign_in(self, page: Page, name: str) -> None:
        if name not in self.cookies:
            fresh = self.open_page()
            try:
                log_in(fresh, self.url, name, self.password)
                self.cookies[name] = fresh.context.cookies()
            finally:
                fresh.context.close()
        page.context.clear_cookies()
        page.context.add_cookies(self.cookies[name])


def ink_pixels(element: Locator) -> int:
    """Pixels of the element's screenshot that stand out from its most common colour
    (its background): the glyphs and marks a person sees in it."""
    from PIL import Image

    shot = Image.open(io.BytesIO(element.screenshot(animations="disabled"))).convert("L")
    histogram = shot.histogram()
    background = max(range(256), key=histogram.__getitem__)
    return sum(count for level, count in enumerate(histogram)
               if abs(level - background) >= INK_CONTRAST)


def shown_figure(page: Page, test_id: str) -> str:
    """The text of the element `data-testid=test_id` once it is visible and drawn: the
    screenshot of exactly that element must show ink, or the figure is not on screen
    (hidden, zero-sized, white on white, scrolled out of a clipped box)."""
    element = page.get_by_test_id(test_id)
    element.wait_for(state="visible")
    element.scroll_into_view_if_needed()
    ink = ink_pixels(element)
    assert ink >= MIN_INK_PIXELS, f"{test_id} is not drawn: {ink} ink pixels"
    return element.inner_text().strip()


def number(text: str) -> float:
    """The figure in a text as people write it: "1,234", "1 234", "87 %", "0.87"."""
    found = re.search(r"-?\d[\d,\u202f\u00a0 ]*(?:\.\d+)?", text)
    assert found, f"no number in {text!r}"
    return float(re.sub(r"[,\u202f\u00a0 ]", "", found.group()))


def horizontal_overflow(page: Page) -> int:
    """CSS pixels the page is wider than its viewport (0: no horizontal scroll)."""
    return int(page.evaluate(
        "Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"))


def widest_elements(page: Page, limit: int = 3) -> list[str]:
    """The elements that stick out of the viewport on the right, for a failure message."""
    return page.evaluate("""limit => {
      const width = document.documentElement.clientWidth;
      return [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > width + 1)
        .slice(0, limit)
        .map(e => e.tagName.toLowerCase() + (e.dataset.testid ? '[' + e.dataset.testid + ']'
                  : e.className ? '.' + e.className : ''));
    }""", limit)
