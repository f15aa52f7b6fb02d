"""The browser tests' own checks can fail: a figure that is not drawn, a page wider than a
phone, are caught on a page of the test's own; and the served chain takes signed pushes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from deskpulse.store import open_store

from . import webchain
from .pagecheck import horizontal_overflow, number, shown_figure, widest_elements

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.slow  # a real browser

FIGURES = """<!doctype html><meta name=viewport content="width=device-width">
<style>body{margin:8px;font:16px sans-serif;background:#fff}</style>
<p>Today <b data-testid=drawn>1,234</b></p>
<p>Hidden <b data-testid=white style="color:#fff">5,678</b></p>
<p>Clipped <span style="display:inline-block;width:0;overflow:hidden">
  <b data-testid=clipped>91</b></span></p>
"""


def test_a_drawn_figure_is_read_and_a_blank_one_is_caught(page: Page) -> None:
    page.set_content(FIGURES)
    assert number(shown_figure(page, "drawn")) == 1234
    for invisible in ("white", "clipped"):
        with pytest.raises(AssertionError, match=f"{invisible} is not drawn"):
            shown_figure(page, invisible)


def test_a_page_wider_than_a_phone_is_caught(phone: Page) -> None:
    phone.set_content(FIGURES)
    assert horizontal_overflow(phone) == 0
    phone.set_content(FIGURES + '<table data-testid=wide><tr><td style="min-width:600px">x'
                                '</td></tr></table>')
    assert horizontal_overflow(phone) > 0
    assert any("table" in e for e in widest_elements(phone))


def test_numbers_are_read_as_people_write_them() -> None:
    assert number("1,234 answers") == 1234
    assert number("87.5 %") == 87.5
    assert number("1\u202f234") == 1234
    with pytest.raises(AssertionError):
        number("none yet")


def test_the_served_chain_stores_a_signed_push(chain: webchain.Chain) -> None:
    with open_store(chain.db) as store:
        before = len(store.responses_of("nice-a"))
        chain.push("nice-a", 3)
        assert len(store.responses_of("nice-a")) == before + 3
        assert store.device_site_path("nice-a") == webchain.STORES["nice-1"]
