"""`deskpulse notify` in-process, the background runner, and `deskpulse serve --notify-every`
as real processes sharing one database with a real webhook receiver."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from receivers import (
    Webhook,
    webhook_fixture,  # noqa: F401 -- fixtures
)
from test_notify_pass import LYON, T0, answer, burst, chain

from deskpulse import cli
from deskpulse.notify.background import NotifyRunner
from deskpulse.notify.rules import make_rule
from deskpulse.sim.serve_process import ServeProcess
from deskpulse.store import open_store

PATIENCE = 30.0


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    path = tmp_path / "deskpulse.db"
    with open_store(path) as store:
        chain(store)
    return str(path)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = cli.main(["notify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_rules_added_listed_and_removed(db_path: str, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    secret_url = "mailtos://deskpulse:s3cr3t@smtp.example.com?to=m@example.com"
    code, out, _ = run(capsys, "rules", "add", "lyon", "--db", db_path, "--site", LYON,
                       "--to", secret_url, "--to", "json://127.0.0.1:9/hook",
                       "--window", "10m", "--min", "5", "--remind", "24h")
    assert code == 0 and "s3cr3t" not in out
    code, out, _ = run(capsys, "rules", "--db", db_path, "list")
    assert out == ("lyon: negative (>= 50% of at least 5 responses in 10m) at "
                   "acme/north/lyon-1, reminder every 24h -> mailtos://deskpulse:****@"
                   "smtp.example.com/m%40example.com, json://127.0.0.1:9/hook\n")
    assert run(capsys, "rules", "remove", "lyon", "--db", db_path)[:2] == (
        0, "removed the alert rule lyon\n")
    assert run(capsys, "rules", "list", "--db", db_path)[1] == "no alert rules\n"


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "nonsense://x:s3cr3t@host"], "destination nonsense://***@host is not a URL "
                                           "apprise can send to"),
    (["--to", "mailto://u:s3cr3t@127.0.0.1?to=m@example.com&from=bad"],
     "Invalid ~From~ email"),
    (["--to", "json://h/x", "--negative", "2"], "--negative 2.0 is not a share"),
    (["--to", "json://h/x", "--remind", "soon"], "--remind 'soon' is not a duration"),
    (["--to", "json://h/x", "--site", "acme/nowhere"], "no site 'acme/nowhere'"),
])
def test_a_bad_rule_is_one_line_without_secrets(db_path: str, args: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    site = [] if "--site" in args else ["--site", LYON]
    code, _, err = run(capsys, "rules", "add", "lyon", "--db", db_path, *site, *args)
    assert code != 0 and err.startswith("deskpulse: ") and message in err
    assert err.count("\n") == 1 and "s3cr3t" not in err
    assert run(capsys, "rules", "list", "--db", db_path)[1] == "no alert rules\n"


def test_run_and_dry_run(db_path: str, webhook: Webhook, capsys: pytest.CaptureFixture[str]
                         ) -> None:
    with open_store(db_path) as store:
        store.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
        now = int(time.time())
        burst(store, "k1", at=now - T0 - 240)
    code, out, _ = run(capsys, "run", "--dry-run", "--db", db_path)
    assert code == 0 and "would send to json://127.0.0.1" in out and "New (1):" in out
    assert webhook.posts == []
    code, out, _ = run(capsys, "run", "--db", db_path)
    assert code == 0 and out.splitlines() == [
        "1 problem going on", f"sent to {webhook.url()}: DeskPulse: 1 new alert"]
    webhook.failing = True
    with open_store(db_path) as store:
        store.add_alert_rule(make_rule("again", LYON, "negative", [webhook.url("2")]))
    code, out, _ = run(capsys, "run", "--db", db_path)
    assert code == 1 and "not delivered to json://127.0.0.1" in out


def test_the_background_runner_sends_once_over_many_passes(db_path: str, webhook: Webhook
                                                           ) -> None:
    with open_store(db_path) as store:
        store.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
        burst(store, "k1")
    runner = NotifyRunner(db_path, 0.05, clock=lambda: T0 + 300)
    runner.start()
    try:
        deadline = time.monotonic() + PATIENCE
        while runner.passes < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert runner.passes >= 4
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert"]


@pytest.mark.slow
def test_two_servers_with_notify_every_send_once(db_path: str, webhook: Webhook) -> None:
    with open_store(db_path) as store:
        store.add_alert_rule(make_rule("lyon", LYON, "negative", [webhook.url()]))
        burst(store, "k1", at=int(time.time()) - T0 - 240)
        answer(store, "k2", [(int(time.time()) - T0, 5)])
    with ThreadPoolExecutor(2) as starting:  # both start at once: each takes seconds
        servers = list(starting.map(
            lambda _: ServeProcess(db_path, extra_args=("--notify-every", "1s")), range(2)))
    try:
        deadline = time.monotonic() + PATIENCE
        while not webhook.posts and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2)  # more passes of each server
    finally:
        for server in servers:
            server.stop()
    assert [p["title"] for p in webhook.posts] == ["DeskPulse: 1 new alert"]
    assert sum("notify: sent to" in line for s in servers for line in s.log) == 1


def test_serve_refuses_a_bad_interval(db_path: str, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    assert cli.main(["serve", "--db", db_path, "--notify-every", "often"]) != 0
    assert "--notify-every 'often' is not a duration" in capsys.readouterr().err
