"""`deskpulse sites` as a store manager sees config over the air follow it: what each
change of the tree did to the kiosks' configs, and a note when a template does not fit."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.device import ota
from deskpulse.store import open_store
from deskpulse.store.base import DeviceFacts


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main([*args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "chain.db"
    with open_store(path) as store:
        for site in ("acme", "acme/north", "acme/north/lyon", "acme/north/cannes"):
            store.add_site(site)
        store.set_key("desk-1", bytes(32), replace=False,
                      facts=DeviceFacts("desk-1", None, None, None))
        ota.change_layer(store, "site", "acme/north/lyon", {"thank_you_s": 4})
        ota.change_layer(store, "site", "acme/north/cannes",
                         {"texts": {"en": {"question": "x" * 121}}})
    return path


def test_assign_says_which_version_the_kiosk_takes(db: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, db, "sites", "assign", "acme/north/lyon", "desk-1")
    assert code == 0 and err == ""
    assert out == ("desk-1 is in acme/north/lyon\n"
                   "  desk-1: config over the air version 1, sent at its next push\n"
                   "    thank_you_s: 3 -> 4\n")
    status = run(capsys, db, "config", "status")[1].splitlines()
    assert status[1].split() == ["desk-1", "acme/north/lyon", "1", "-", "never", "synced"]


def test_a_template_that_does_not_fit_leaves_the_assignment_and_says_what_to_do(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, db, "sites", "assign", "acme/north/lyon", "desk-1")
    code, out, err = run(capsys, db, "sites", "assign", "acme/north/cannes", "desk-1")
    assert code == 0 and out == "desk-1 is in acme/north/cannes\n"
    assert err.startswith("deskpulse: note: the config of kiosk desk-1 rejected: "
                          "texts.en.question is longer than 120 characters")
    assert "deskpulse config refresh" in err and err.count("\n") == 1
    status = run(capsys, db, "config", "status")[1]
    assert "acme/north/cannes" in status and "layers changed since" in status


def test_rename_and_remove_say_what_became_of_the_templates(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, db, "sites", "assign", "acme/north/lyon", "desk-1")
    assert run(capsys, db, "sites", "rename", "acme/north", "nord")[1] == \
        "renamed acme/north to acme/nord\n"  # no kiosk's config changes
    code, out, _ = run(capsys, db, "sites", "remove", "acme/nord", "--force")
    assert code == 0 and out.splitlines() == [
        "removed acme/nord and 2 sites below it; now in no store (their responses stay): "
        "desk-1",
        "removed the config templates of acme/nord/cannes, acme/nord/lyon",
        "  desk-1: config over the air no longer managed (it keeps the config it runs)",
        "    thank_you_s: 4 -> 3"]
    assert run(capsys, db, "config", "layers")[1] == ""
