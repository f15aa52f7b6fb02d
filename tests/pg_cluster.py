"""A throwaway PostgreSQL cluster for tests: initdb and pg_ctl in a private folder, its
Unix socket in that folder, no TCP (listen_addresses=''), and a fresh database per test.

`PgCluster.start()` takes about 3 s, so tests share one cluster per process (one per
pytest-xdist worker: the `pg_cluster` fixture in tests/conftest.py) and each test gets its
own database with `new_database()` (CREATE DATABASE from the empty template: quick).

initdb refuses to run as root, so as root the cluster runs as `nobody` (runuser) in a
folder that user owns. A watcher process stops the cluster and removes the folder when
this process ends however it ends (Ctrl-C, a killed xdist worker): no postmaster is left
behind even when the fixture's teardown never runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path


def _installed_bin() -> Path:
    """Debian's server binaries, the newest major version installed (15 on bookworm; a
    later Debian ships a later one, which reads the same SQL); 15's path when none is."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda path: int(path.parent.parent.name)
                   if path.parent.parent.name.isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


BIN = Path(os.environ.get("DESKPULSE_PG_BIN") or _installed_bin())
USER = "dp"
"""The cluster's superuser; trust authentication over the private socket."""

# Durability off: a test cluster is thrown away, and fsyncs would dominate its time.
SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off",
            "max_connections=60", "shared_buffers=32MB", "max_locks_per_transaction=256")

_WATCHER = """
import json, shutil, subprocess, sys
sys.stdin.read()  # EOF: the process that started the cluster has ended
subprocess.run(json.loads(sys.argv[1]), capture_output=True)
shutil.rmtree(sys.argv[2], ignore_errors=True)
"""


def missing_reason() -> str | None:
    """Why no cluster can be started here, or None when one can."""
    for tool in ("initdb", "pg_ctl", "postgres"):
        if not (BIN / tool).exists():
            return (f"PostgreSQL is not installed ({BIN / tool} is missing): "
                    "`make postgres` installs it (Debian's postgresql package)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "initdb refuses root and runuser is missing to run it as nobody"
    return None


def _free_port() -> int:
    """A port number nobody listens on: it names the socket file (no TCP is opened)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PgCluster:
    """One running cluster. `url(name)` connects to a database of it."""

    def __init__(self, settings: tuple[str, ...] = SETTINGS) -> None:
        self.settings = settings
        self.folder = Path(tempfile.mkdtemp(prefix="dp-pg-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.port = _free_port()
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "nobody")
            self._as_user = ["runuser", "-u", "nobody", "--"]
        self._names = itertools.count(1)
        self._watcher: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self._as_user, *args], capture_output=True, text=True,
                              check=False, cwd=self.folder)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args[:2])} failed ({done.returncode}): "
                               f"{done.stderr.strip()}\n{log}")

    def start(self) -> PgCluster:
        """initdb and start; on a failure nothing is left running or on disk."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        self._run(str(BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
                  "--no-sync", "-E", "UTF8", "--locale=C")
        # The watcher first: from here on, whatever happens to us, the cluster goes too.
        stop = [*self._as_user, str(BIN / "pg_ctl"), "stop", "-D", str(self.data),
                "-m", "immediate", "-w"]
        self._watcher = subprocess.Popen(
            [sys.executable, "-c", _WATCHER, json.dumps(stop), str(self.folder)],
            stdin=subprocess.PIPE, start_new_session=True)
        options = " ".join([f"-p {self.port}", f"-k {self.folder}", "-c listen_addresses=''",
                            *(f"-c {setting}" for setting in self.settings)])
        self._run(str(BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                  str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        """Stop the cluster at once and remove its folder."""
        if self._watcher is not None and self._watcher.stdin is not None:
            with contextlib.suppress(OSError):
                self._watcher.stdin.close()  # the watcher stops and removes it
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watcher.wait(60)
            self._watcher = None
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, database: str = "postgres") -> str:
        """A libpq URL of one database, over the cluster's Unix socket."""
        return f"postgresql://{USER}@/{database}?host={self.folder}&port={self.port}"

    def new_database(self) -> str:
        """The URL of a new empty database (created from template0's copy, template1)."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" STRATEGY FILE_COPY')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        """Drop a database new_database() made (closing whoever is still in it)."""
        import psycopg

        name = url.split("/")[3].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
