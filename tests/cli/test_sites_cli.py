"""`deskpulse sites` in-process: the tree laid out, shown, changed and refused, each
refusal one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from deskpulse import cli
from deskpulse.store import open_store


def run(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> tuple[int, str, str]:
    code = cli.main(["sites", *args, "--db", str(db)])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> str:
    code, out, err = run(capsys, db, *args)
    assert code == 2 and out == "" and err.startswith("deskpulse: ") and err.count("\n") == 1
    return err


@pytest.fixture
def db(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    path = tmp_path / "deskpulse.db"
    assert run(capsys, path, "add", "acme", "--time-zone", "Europe/Paris")[0] == 0
    for site in ("acme/north", "acme/north/lyon-1"):
        assert run(capsys, path, "add", site)[0] == 0
    assert run(capsys, path, "add", "acme/outlet", "--kind", "store",
               "--hours", "sat-sun 10:00-13:00")[0] == 0
    with open_store(path) as store:
        for device_id in ("desk-1", "desk-2", "desk-3"):
            store.describe_device(device_id, create=True, now=0)
        store.describe_device("desk-2", time_zone="Asia/Tokyo")
    capsys.readouterr()
    return path


def test_the_tree_with_its_kiosks(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, db, "assign", "acme/north/lyon-1", "desk-1", "desk-2")
    assert code == 0 and out == ("desk-1 is in acme/north/lyon-1\n"
                                 "desk-2 is in acme/north/lyon-1\n")
    code, out, _ = run(capsys, db)
    assert code == 0 and out == (
        "acme (organisation)  zone Europe/Paris\n"
        "  north (region)\n"
        "    lyon-1 (store)  kiosks: desk-1, desk-2\n"
        "  outlet (store)  hours sat-sun 10:00-13:00  kiosks: none\n"
        "in no store: desk-3\n")
    assert run(capsys, db, "list")[1] == out


def test_show_says_where_zone_and_hours_come_from(db: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, db, "assign", "acme/north/lyon-1", "desk-1", "desk-2")
    code, out, _ = run(capsys, db, "set", "acme/north", "--hours",
                       "mon-fri 09:00-18:00,sat 10:00-12:00")
    assert code == 0 and out == ("acme/north: time zone inherited, opening hours "
                                 "mon-fri 09:00-18:00, sat 10:00-12:00\n")
    code, out, _ = run(capsys, db, "show", "acme/north/lyon-1")
    assert code == 0 and out == (
        "acme/north/lyon-1 (store)\n"
        "time zone: Europe/Paris (from acme)\n"
        "opening hours: mon-fri 09:00-18:00, sat 10:00-12:00 (from acme/north)\n"
        "kiosks: desk-1, desk-2 (own zone Asia/Tokyo)\n")
    code, out, _ = run(capsys, db, "show", "acme")
    assert "below it: north (region), outlet (store)" in out
    assert "opening hours: none set" in out


def test_renaming_moving_and_removing(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, db, "assign", "acme/north/lyon-1", "desk-1")
    assert run(capsys, db, "rename", "acme/north", "nord")[1] == (
        "renamed acme/north to acme/nord\n")
    assert run(capsys, db, "add", "acme/south")[0] == 0
    assert run(capsys, db, "move", "acme/nord/lyon-1", "acme/south")[1] == (
        "moved acme/nord/lyon-1 to acme/south/lyon-1\n")
    assert "holds 1 site and 1 kiosk" in refused(capsys, db, "remove", "acme/south")
    code, out, _ = run(capsys, db, "remove", "acme/south", "--force")
    assert code == 0 and out == ("removed acme/south and 1 site below it; now in no store "
                                 "(their responses stay): desk-1\n")
    assert run(capsys, db, "unassign", "desk-1")[1] == "desk-1 is in no store\n"
    with open_store(db) as store:
        assert [s.path for s in store.sites()] == ["acme", "acme/nord", "acme/outlet"]
        assert store.kiosk_sites() == {}


@pytest.mark.parametrize(("args", "problem"), [
    (("add", "north", "--kind", "region"), "stands in an organisation"),
    (("add", "acme/north/lyon-1/x"), "stands in"),
    (("set", "acme", "--hours", "mon 9-18"), "not a span"),
    (("set", "acme", "--time-zone", "Europe/Pariss"), "unknown time zone"),
    (("set", "acme"), "nothing to set"),
    (("assign", "acme/north", "desk-1"), "is a region"),
    (("assign", "acme/outlet", "desk-9"), "no device desk-9"),
    (("show", "acme/west"), "no site 'acme/west'"),
    (("move", "acme/north", "acme/north/lyon-1"), "inside it"),
    (("rename", "acme/outlet", "north"), "exists already"),
])
def test_refusals_are_one_line_and_change_nothing(
        db: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...],
        problem: str) -> None:
    before = run(capsys, db)[1]
    assert problem in refused(capsys, db, *args)
    assert run(capsys, db)[1] == before


def test_add_creates_a_database_but_listing_does_not(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.db"
    assert "no database" in refused(capsys, missing)
    assert not missing.exists()
    assert run(capsys, missing, "add", "acme")[0] == 0
    assert run(capsys, missing)[1] == "acme (organisation)\n"


def test_devices_add_and_set_take_a_store(db: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "desk-9.json"

    def devices(*args: str) -> int:
        return cli.main(["devices", "--db", str(db), *args])

    add = ("add", "desk-9", "--server", "http://10.0.0.2:8080", "-o", str(config))
    assert devices(*add, "--site", "acme/north") == 2  # a region: refused first
    assert "is a region" in capsys.readouterr().err
    assert not config.exists()
    with open_store(db) as store:
        assert store.registered_ids() == set()
    assert devices(*add, "--site", "acme/north/lyon-1") == 0
    assert devices("set", "desk-1", "--site", "acme/outlet", "--time-zone", "Nowhere/X") == 2
    with open_store(db) as store:
        assert store.device_site_path("desk-1") is None  # nothing of the refused change
    assert devices("set", "desk-1", "--site", "acme/outlet") == 0
    with open_store(db) as store:
        assert store.kiosk_sites() == {"desk-9": "acme/north/lyon-1", "desk-1": "acme/outlet"}
    capsys.readouterr()
    assert devices() == 0
    listed = capsys.readouterr().out
    assert "desk-1, in acme/outlet\n" in listed and "desk-9, in acme/north/lyon-1\n" in listed
    assert devices("set", "desk-9", "--site", "") == 0
    with open_store(db) as store:
        assert store.kiosk_sites() == {"desk-1": "acme/outlet"}
