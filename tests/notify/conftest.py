"""Fixtures of the notification tests: the local receivers (receivers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from receivers import SmtpSink, Webhook, run_smtp_sink, run_webhook


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    yield from run_smtp_sink()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    yield from run_webhook()
