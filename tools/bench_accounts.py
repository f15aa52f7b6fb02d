"""What logging in and a logged-in request cost the server (issue 17, accounts).

Run from the repository root:
    .venv/bin/python tools/bench_accounts.py [--requests N] [--logins L] [--rounds R]

In-process (FastAPI's TestClient on `create_app`, its real writer process and a SQLite
file), taking turns round by round:

- **anchor**: GET /v1/health, one round trip to the writer and no session;
- **logged in**: a route behind `Depends(accounts.viewer)`: the cookie's signature and
  expiry checked, the user read through the writer (what every dashboard request adds);
- **login**: GET /login then POST /login with argon2-cffi's default parameters (the
  verify runs on a thread, off the event loop).

Health and logged-in requests alternate one by one. It prints the median wall time of
each and its ratio to the anchor's median in the same round (the machine is shared:
compare ratios, not milliseconds), and the CPU time of one argon2 verify alone.
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from fastapi.testclient import TestClient

from deskpulse.server.accounts import Viewer, viewer
from deskpulse.server.app import create_app
from deskpulse.store import accounts as account_rules
from deskpulse.store import open_store

PASSWORD = "correct horse battery"


def _login(client: TestClient) -> None:
    form = client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if token is None:
        raise SystemExit("no CSRF token on the login page")
    answer = client.post("/login", data={"name": "bench", "password": PASSWORD,
                                         "csrf": token.group(1)})
    if answer.status_code != 303:
        raise SystemExit(f"login failed: {answer.status_code}")


def _timed(client: TestClient, path: str) -> float:
    start = time.perf_counter()
    if client.get(path).status_code != 200:
        raise SystemExit(f"{path} failed")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--logins", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        db = Path(folder) / "bench.db"
        with open_store(db) as store:
            store.add_site("acme")
            store.add_user("bench", "manager", site="acme", email=None,
                           password_hash=account_rules.hash_password(PASSWORD))
            stored_hash = store.user("bench").password_hash  # type: ignore[union-attr]
        app = create_app(db)

        @app.get("/api/bench")
        async def logged_in(who: Annotated[Viewer, Depends(viewer)]) -> dict[str, Any]:
            return {"name": who.name}

        rows = []
        with TestClient(app, follow_redirects=False) as client:
            _login(client)
            for _ in range(20):  # warm: the writer, the secret
                _timed(client, "/api/bench")
            for round_no in range(1, args.rounds + 1):
                # One of each in turn: the shared machine's load drifts alike for both.
                anchor, session = [], []
                for _ in range(args.requests):
                    anchor.append(_timed(client, "/v1/health"))
                    session.append(_timed(client, "/api/bench"))
                logins = []
                for _ in range(args.logins):
                    start = time.perf_counter()
                    _login(client)
                    logins.append(time.perf_counter() - start)
                rows.append((round_no, statistics.median(anchor), statistics.median(session),
                             statistics.median(logins)))
        cpu = []
        for _ in range(args.logins):
            start = time.process_time()
            account_rules.verify_password(stored_hash, PASSWORD)
            cpu.append(time.process_time() - start)
    print("round  health ms  logged-in ms (ratio)  login ms (ratio)   [medians]")
    for round_no, anchor, session, login in rows:
        print(f"{round_no:5}  {anchor * 1e3:9.2f}  {session * 1e3:8.2f} ({session / anchor:5.2f})"
              f"  {login * 1e3:8.1f} ({login / anchor:6.1f})")
    print(f"argon2 verify alone, CPU ms: median {statistics.median(cpu) * 1e3:.1f} "
          f"(min {min(cpu) * 1e3:.1f}, max {max(cpu) * 1e3:.1f})")


if __name__ == "__main__":
    main()
