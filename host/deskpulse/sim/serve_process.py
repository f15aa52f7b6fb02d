"""`deskpulse serve` in a child process, for tests, the load generator and demos.

The child prints the address it listens on once its socket is bound; `ServeProcess`
waits for that line (port 0 picks a free port) and then for /v1/health to answer.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from deskpulse.errors import DeskPulseError

_LISTENING = re.compile(r"listening on (https?://\S+)")
STARTUP_PATIENCE = 60.0  # seconds; a bound for a slow machine, not an expectation


def _limit_open_files(count: int) -> Callable[[], None]:
    def limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    return limit


class ServeProcess:
    """A running `deskpulse serve --db DB`; its stderr is kept in `log` (a list of lines)."""

    def __init__(self, db_path: str | os.PathLike[str], *, host: str = "127.0.0.1",
                 port: int = 0, extra_args: tuple[str, ...] = (),
                 open_files: int | None = None) -> None:
        """open_files sets the child's RLIMIT_NOFILE (soft and hard), as a service
        manager would."""
        self.db_path = db_path  # a file or a postgresql:// URL (which Path would mangle)
        self.log: list[str] = []
        self.url = ""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deskpulse.cli", "serve", "--db", os.fspath(self.db_path),
             "--host", host, "--port", str(port), *extra_args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=None if open_files is None else _limit_open_files(open_files))
        self._readers = [
            threading.Thread(target=self._collect, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)]
        self._announced = threading.Event()
        for reader in self._readers:
            reader.start()
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _collect(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.log.append(line.rstrip("\n"))
            match = _LISTENING.search(line)
            if match and not self.url:
                self.url = match[1]
                self._announced.set()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_PATIENCE
        while not self._announced.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                time.sleep(0.2)  # let the readers catch the last lines
                raise DeskPulseError("deskpulse serve did not start: "
                                     + " | ".join(self.log[-5:]))
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise DeskPulseError("deskpulse serve does not answer /v1/health: "
                             + " | ".join(self.log[-5:]))

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def healthy(self) -> bool:
        host, port = self.url.split("://", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=5)
        if self.url.startswith("https://"):
            # Only "does the child we started answer yet": nothing is sent or trusted,
            # so its certificate is not checked (the kiosks' is: firmware/kiosk/https.py).
            probe = ssl.create_default_context()
            probe.check_hostname = False
            probe.verify_mode = ssl.CERT_NONE
            conn = http.client.HTTPSConnection(host, int(port), timeout=5, context=probe)
        try:
            conn.request("GET", "/v1/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM: uvicorn finishes the requests in flight, then exits."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return self.kill()
        finally:
            self._join()

    def kill(self) -> int:
        """SIGKILL, as a power cut or a crash would stop it."""
        if self.proc.poll() is None:
            self.proc.kill()
        code = self.proc.wait()
        self._join()
        return code

    def _join(self) -> None:
        for reader in self._readers:
            reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if stream is not None:
                    stream.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
