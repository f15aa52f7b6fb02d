"""The dashboard in a real browser: Debian's headless chromium driven by Playwright.

Playwright is given chromium's path (`executable_path`): its own browser download is never
used. One browser per test process (each xdist worker), a fresh context (cookies, storage)
per test; one `deskpulse serve` per test process on a database holding the chain of
webchain.py.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store

from . import webchain
from .pagecheck import Sessions

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

CHROMIUM_NAMES = ("chromium", "chromium-browser")
PAGE_PATIENCE_MS = 15_000  # a bound for a page to answer on a loaded machine, not a goal


def chromium_path() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(autouse=True)
def leaves_no_running_loop() -> Iterator[None]:
    """Set up before the browser, so torn down after it: the test's worker must be able to
    run asyncio again (the reason `browser` is per test)."""
    yield
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    pytest.fail("a browser test left an event loop running in the worker's thread")


@pytest.fixture
def browser() -> Iterator[Browser]:
    """A headless chromium for one test. Not one per process: while Playwright's sync API
    is started it leaves its event loop set as running in the thread, and every later
    test of the same pytest worker that calls asyncio.run() would fail (seen in make
    test: the server tests that drive the broadcaster or the writer with asyncio.run)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: `make venv` installs the dev dependencies")
    executable = chromium_path()
    if executable is None:
        pytest.skip("no chromium found: `make browser` installs Debian's chromium "
                    "(apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=executable, headless=True,
            args=["--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"])
        yield launched
        launched.close()


def new_page(browser: Browser, **context_options: Any) -> Page:
    context = browser.new_context(**context_options)
    context.set_default_timeout(PAGE_PATIENCE_MS)
    return context.new_page()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a context of its own: no cookie of another test."""
    opened = new_page(browser, viewport={"width": 1280, "height": 900})
    yield opened
    opened.context.close()


@pytest.fixture
def phone(browser: Browser) -> Iterator[Page]:
    """A page the size of a phone's screen (CSS pixels of a common 6.1-inch phone)."""
    opened = new_page(browser, viewport={"width": 390, "height": 844}, is_mobile=True,
                      has_touch=True, device_scale_factor=1)
    yield opened
    opened.context.close()


@pytest.fixture(scope="session")
def signed_in_cookies() -> dict[str, list[Any]]:
    """Each user's session cookies, kept for every browser test of this process."""
    return {}


@pytest.fixture
def sessions(browser: Browser, chain: webchain.Chain,
             signed_in_cookies: dict[str, list[Any]]) -> Sessions:
    """Log a test's page in as a user of the chain: `sessions.sign_in(page, "admin")`."""
    return Sessions(lambda: new_page(browser), chain.url, webchain.PASSWORD,
                    signed_in_cookies)


@pytest.fixture(scope="session")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webchain.Chain]:
    """`deskpulse serve` on a free port over the chain of webchain.py, with its users."""
    folder = tmp_path_factory.mktemp("chain")
    db = str(folder / "deskpulse.db")
    with open_store(db) as store:
        kiosks = webchain.seed(store, folder, "http://127.0.0.1:8080", now=time.time())
        webchain.add_users(store)
    with ServeProcess(db) as served:
        yield webchain.Chain(served.url, db, kiosks)
