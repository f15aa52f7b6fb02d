"""Shared test plumbing: run code on the real MicroPython unix port, hardware opt-in."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from deskpulse.device.micropython import default_micropython
from deskpulse.store import open_store
from deskpulse.store.base import Store
from pg_cluster import PgCluster, missing_reason

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
FW_TESTS = REPO / "tests" / "firmware" / "mp"  # MicroPython-side test helpers (harness.py)

# MicroPython source: walk(folder, {}) lists every file under a mounted folder as
# {path below the folder: [size, SHA-256 hex]}, for tests that read an image back.
MP_WALK = """
import os, hashlib, binascii

def walk(folder, found, top=None):
    top = top or folder
    for entry in os.ilistdir(folder):
        path = folder + "/" + entry[0]
        if entry[1] == 0x4000:
            walk(path, found, top)
        else:
            h = hashlib.sha256()
            size = 0
            with open(path, "rb") as f:
                while True:
                    chunk = f.read(4096)
                    if not chunk:
                        break
                    h.update(chunk)
                    size += len(chunk)
            found[path[len(top):]] = [size, binascii.hexlify(h.digest()).decode()]
    return found
"""


def micropython_binary() -> str:
    """The `micropython` command installed beside this interpreter (the venv's)."""
    found = default_micropython()
    if found is None:
        raise RuntimeError("micropython not found: run `make test` to install the venv")
    return str(found)


def run_mpy(
    source: str,
    *args: str,
    heap: str = "8M",
    timeout: float = 300,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run MicroPython source (firmware/ on sys.path) and return the finished process."""
    prelude = (
        f"import sys\nsys.path.insert(0, {str(FIRMWARE)!r})\n"
        f"sys.path.insert(0, {str(FW_TESTS)!r})\n"
    )
    cmd = [micropython_binary(), "-X", f"heapsize={heap}", "-c", prelude + source, *args]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"micropython exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\n"
            f"stderr:\n{proc.stderr[-4000:]}"
        )
    return proc


def mpy_json(source: str, *args: str, **kwargs) -> list:
    """Run source and parse every stdout line that starts with '@' as JSON."""
    proc = run_mpy(source, *args, **kwargs)
    return [json.loads(line[1:]) for line in proc.stdout.splitlines() if line.startswith("@")]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--port", default=None, help="serial port of a real ESP32 board")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if hasattr(config, "workerinput"):
        # An xdist worker (make test): the slow tests first, so that the workers end together
        # rather than one of them alone on a long simulator run it picked up last. A plain
        # run keeps the file order, quick failures early.
        items.sort(key=lambda item: "slow" not in item.keywords)
    if config.getoption("--port"):
        return
    skip = pytest.mark.skip(reason="needs a real board: pass --port PORT")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def port(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--port")


# -- store engines ------------------------------------------------------------------------

STORE_ENGINES = ("sqlite", "postgresql")
"""Every store engine; suites that build a store run on each (`db_target`)."""


def examples_on(engine: str, examples: int) -> int:
    """A property test's hypothesis examples on `engine`. On PostgreSQL each example is a
    new database and a dozen round trips per batch: a fifth of SQLite's examples there
    keeps `make test` within its time, while the engines' agreement on one rich data set
    is proven by tests/reports/test_engines_agree.py."""
    return examples if engine == "sqlite" else max(5, examples // 5)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One throwaway PostgreSQL cluster per test process (per xdist worker), stopped at
    the end of the session; skipped, saying why, where PostgreSQL is not installed."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_url(pg_cluster: PgCluster) -> Iterator[str]:
    """The URL of a new empty PostgreSQL database for this test alone."""
    url = pg_cluster.new_database()
    yield url
    pg_cluster.drop_database(url)


@pytest.fixture(params=STORE_ENGINES)
def db_target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What `--db` or open_store() takes for a new empty store, on each engine in turn: a
    SQLite file, then a PostgreSQL database."""
    if request.param == "postgresql":
        return str(request.getfixturevalue("pg_url"))
    return str(tmp_path / "deskpulse.db")


@contextlib.contextmanager
def fresh_store(request: pytest.FixtureRequest, engine: str, folder: Path) -> Iterator[Store]:
    """A new empty store on `engine`, closed (and a PostgreSQL database dropped) after:
    for tests that need many, such as one per hypothesis example."""
    if engine == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        url = cluster.new_database()
        try:
            with open_store(url) as store:
                yield store
        finally:
            cluster.drop_database(url)
    else:
        with open_store(folder / "deskpulse.db") as store:
            yield store


@contextlib.contextmanager
def another_writer_holding(target: str | Path, write: Callable[[Store], object]
                           ) -> Iterator[None]:
    """Inside the block, another connection to `target` has done `write` in a group commit
    it has not committed yet, so that its locks are held (busy-store tests)."""
    entered, release = threading.Event(), threading.Event()

    def hold() -> None:
        with open_store(target) as holder, holder.group_commit():
            write(holder)
            entered.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert entered.wait(10)
        yield
    finally:
        release.set()
        thread.join()
