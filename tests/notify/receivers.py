"""Real local receivers the notifications are delivered to: an SMTP server (aiosmtpd) and
a webhook endpoint (deskpulse.sim.webhook), each on a free port of 127.0.0.1, keeping what
arrived; and their fixtures, which the test modules import (a conftest.py here would
shadow tests/conftest.py, which other suites import as `conftest`)."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, TypeVar

import pytest

from deskpulse.notify.delivery import Deliver, Message, deliver
from deskpulse.sim.webhook import WebhookReceiver

Webhook = WebhookReceiver


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class SmtpSink:
    """Every message received, parsed; `url(to)` is the apprise URL that sends here."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    envelopes: list[list[str]] = field(default_factory=list)
    refused: set[str] = field(default_factory=set)  # recipients refused (550), as a server may

    def url(self, to: str) -> str:
        return f"mailto://127.0.0.1:{self.port}?to={to}&from=deskpulse@example.com"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any,  # noqa: N802
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refused:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.envelopes.append(list(envelope.rcpt_tos))
        self.messages.append(email.message_from_bytes(  # type: ignore[arg-type]
            envelope.content, policy=email.policy.default))
        return "250 OK"


Result = TypeVar("Result")


def at_once(first: Callable[[Deliver], Result], second: Callable[[], Result]
            ) -> tuple[Result, Result]:
    """Two passes at once: `first(deliver_to)` in a thread, whose first delivery waits
    until `second()` has run here; (first's result, second's)."""
    first_sending, other_done = threading.Event(), threading.Event()

    def held_delivery(url: str, message: Message) -> str | None:
        first_sending.set()
        assert other_done.wait(30)  # the other pass runs while this one sends
        return deliver(url, message)

    results: dict[str, Result] = {}
    thread = threading.Thread(target=lambda: results.update(first=first(held_delivery)))
    thread.start()
    try:
        assert first_sending.wait(30)
        results["second"] = second()
    finally:
        other_done.set()
        thread.join()
    return results["first"], results["second"]


def parts(message: EmailMessage) -> dict[str, str]:
    """content type -> text of each text part."""
    return {part.get_content_type(): part.get_content() for part in message.walk()
            if part.get_content_maintype() == "text"}


def run_smtp_sink() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def run_webhook() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SmtpSink]:
    yield from run_smtp_sink()


@pytest.fixture(name="webhook")
def webhook_fixture() -> Iterator[WebhookReceiver]:
    yield from run_webhook()
