"""`deskpulse users` in-process: accounts added, listed, changed and removed; every refusal
one line; passwords from stdin for scripts or asked twice on a terminal, never as an
argument."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.cli.users import read_new_password
from deskpulse.errors import DeskPulseError
from deskpulse.store import accounts as rules
from deskpulse.store import open_store

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def quick_hashes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small argon2 parameters (tests/store/test_store_accounts.py checks the real ones)."""
    from argon2 import PasswordHasher

    monkeypatch.setattr(rules, "_hasher",
                        lambda: PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, db: Path,
        *args: str, stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = cli.main(["users", *args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "deskpulse.db"
    with open_store(path) as store:
        for site in ("acme", "acme/store-1", "acme/store-10"):
            store.add_site(site, "store" if "/" in site else None)
    return path


def test_users_are_added_listed_changed_and_removed(
        db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = run(capsys, monkeypatch, db, "add", "ana", "--role", "manager", "--site",
                       "acme/store-1", "--email", "ana@example.com", "--password-stdin",
                       stdin=PASSWORD + "\n")
    assert code == 0 and out == "added ana: manager, sees acme/store-1, email ana@example.com\n"
    assert run(capsys, monkeypatch, db, "add", "root", "--role", "admin",
               "--password-stdin", stdin=PASSWORD)[0] == 0
    code, out, _ = run(capsys, monkeypatch, db, "list")
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["NAME", "ROLE", "SEES", "EMAIL", "ADDED"]
    assert lines[1].split()[:4] == ["ana", "manager", "acme/store-1", "ana@example.com"]
    assert lines[2].split()[:5] == ["root", "admin", "(the", "whole", "chain)"]
    with open_store(db) as store:
        ana = store.user("ana")
    assert ana is not None and rules.verify_password(ana.password_hash, PASSWORD)
    code, out, _ = run(capsys, monkeypatch, db, "set", "ana", "--role", "viewer", "--site",
                       "acme/store-10", "--email", "")
    assert code == 0 and out == "ana: viewer, sees acme/store-10\n"
    code, out, _ = run(capsys, monkeypatch, db, "passwd", "ana", "--password-stdin",
                       stdin="a new long password\n")
    assert code == 0 and "their sessions have ended" in out
    with open_store(db) as store:
        changed = store.user("ana")
    assert changed is not None and changed.generation != ana.generation
    assert rules.verify_password(changed.password_hash, "a new long password")
    assert run(capsys, monkeypatch, db, "remove", "ana")[0] == 0
    code, out, _ = run(capsys, monkeypatch, db)
    assert code == 0 and "ana" not in out and "root" in out


@pytest.mark.parametrize(("args", "stdin", "problem"), [
    (("add", "x", "--role", "boss", "--password-stdin"), PASSWORD,
     "no role 'boss': choose admin, manager or viewer"),
    (("add", "x", "--role", "manager", "--password-stdin"), PASSWORD,
     "a manager sees one site and what is below it: give --site"),
    (("add", "x", "--role", "viewer", "--site", "acme/nowhere", "--password-stdin"),
     PASSWORD, "no site 'acme/nowhere'"),
    (("add", "x", "--role", "admin", "--password-stdin"), "", "the password is empty: "
     f"{rules.MIN_PASSWORD} characters at least"),
    (("add", "x", "--role", "admin", "--password-stdin"), "short\n",
     f"the password is too short: {rules.MIN_PASSWORD} characters at least"),
    (("add", "root", "--role", "admin", "--password-stdin"), PASSWORD,
     "there is a user 'root' already"),
    (("add", "x", "--role", "admin", "--email", "x.example.com", "--password-stdin"),
     PASSWORD, "'x.example.com' is not an email address"),
    (("add", "x", "--role", "admin"), PASSWORD, "no terminal to ask the password on"),
    (("set", "root", "--role", "viewer"), "", "a viewer sees one site"),
    (("set", "root"), "", "nothing to set: give --role, --site or --email"),
    (("set", "ghost", "--email", ""), "", "no user 'ghost'"),
    (("passwd", "ghost", "--password-stdin"), PASSWORD, "no user 'ghost'"),
    (("remove", "ghost"), "", "no user 'ghost'"),
])
def test_refusals_are_one_line_and_change_nothing(
        db: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        args: tuple[str, ...], stdin: str, problem: str) -> None:
    assert run(capsys, monkeypatch, db, "add", "root", "--role", "admin", "--password-stdin",
               stdin=PASSWORD)[0] == 0
    with open_store(db) as store:
        before = store.users()
    code, out, err = run(capsys, monkeypatch, db, *args, stdin=stdin)
    assert code == 2 and out == ""
    assert err.startswith(f"deskpulse: {problem}") and err.count("\n") == 1
    with open_store(db) as store:
        assert store.users() == before


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_password_is_asked_twice() -> None:
    answers = iter([PASSWORD, PASSWORD])
    assert read_new_password(False, stdin=Terminal(),
                             ask=lambda prompt: next(answers)) == PASSWORD
    differing = iter([PASSWORD, PASSWORD + "!"])
    with pytest.raises(DeskPulseError, match="the two passwords differ"):
        read_new_password(False, stdin=Terminal(), ask=lambda prompt: next(differing))
    asked: list[str] = []
    with pytest.raises(DeskPulseError, match="too short"):
        read_new_password(False, stdin=Terminal(),
                          ask=lambda prompt: asked.append(prompt) or "short")
    assert len(asked) == 1  # refused at once, not after typing it again


def test_the_password_from_stdin_keeps_its_spaces_but_not_the_line_end() -> None:
    assert read_new_password(True, stdin=io.StringIO(" spaced out pass \r\nnext")) == \
        " spaced out pass "
