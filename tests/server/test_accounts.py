"""Accounts on the web (deskpulse.server.accounts, docs/dashboard.md "Accounts"): logging in
and out, the session cookie (signature, expiry, a password change or a removal ending it),
CSRF on every POST, the login's rate limit, the viewer's subtree, and the secret that two
apps on one database share. In-process, over FastAPI's TestClient (httpx), with the app's
real writer process and a real SQLite database."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.testclient import TestClient

from deskpulse.server import accounts
from deskpulse.server.accounts import (
    SESSION_COOKIE,
    Accounts,
    Keys,
    LoginThrottle,
    Viewer,
    check_csrf,
    covers,
    csrf_token,
    device_in_scope,
    require_role,
    scoped_site,
    session_cookie,
    viewer,
)
from deskpulse.server.app import create_app
from deskpulse.server.common import ServerState, state
from deskpulse.server.writer import StorageUnavailable
from deskpulse.store import accounts as account_rules
from deskpulse.store import open_store
from deskpulse.store.accounts import hash_password
from deskpulse.store.base import DeviceFacts

PASSWORD = "correct horse battery"
SITES = ("acme", "acme/north", "acme/north/store-1", "acme/north/store-10", "acme/south",
         "acme/south/store-2")


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def _probe_routes(app: FastAPI) -> None:
    """Routes only these tests add: a page, an API route, a form and an admin page that
    use the contract's dependencies as the dashboard's will."""

    @app.get("/probe")
    async def page(who: Annotated[Viewer, Depends(viewer)]) -> dict[str, Any]:
        return {"name": who.name, "role": who.role, "site": who.site}

    @app.get("/api/probe")
    async def api(who: Annotated[Viewer, Depends(viewer)], site: str | None = None
                  ) -> dict[str, Any]:
        return {"site": scoped_site(who, site)}

    @app.get("/probe/form")
    async def form_page(request: Request, who: Annotated[Viewer, Depends(viewer)]
                        ) -> dict[str, str]:
        return {"csrf": csrf_token(request)}

    @app.post("/probe/act", dependencies=[Depends(check_csrf)])
    async def act(who: Annotated[Viewer, Depends(viewer)]) -> dict[str, str]:
        return {"done": who.name}

    @app.get("/probe/admin")
    async def admin(who: Annotated[Viewer, Depends(require_role("admin"))]) -> dict[str, str]:
        return {"admin": who.name}

    @app.get("/api/kiosk/{device_id}")
    async def kiosk(device_id: str, who: Annotated[Viewer, Depends(viewer)],
                    server: Annotated[ServerState, Depends(state)]) -> dict[str, Any]:
        return {"site": await device_in_scope(server, who, device_id)}


@pytest.fixture(scope="module", autouse=True)
def quick_hashes() -> Iterator[None]:
    """argon2 with small parameters: argon2-cffi's own (64 MiB, 3 passes) take half a
    second a login on a busy test machine. The login verifies with the parameters a hash
    names, so the code under test is the same; tests/store/test_store_accounts.py checks the
    real parameters."""
    from argon2 import PasswordHasher

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(account_rules, "_hasher",
                      lambda: PasswordHasher(time_cost=1, memory_cost=2048, parallelism=1))
        yield


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory, quick_hashes: None) -> Path:
    path = tmp_path_factory.mktemp("accounts") / "deskpulse.db"
    with open_store(path) as store:
        for site in SITES:
            store.add_site(site)
        password_hash = hash_password(PASSWORD)
        store.add_user("root", "admin", site=None, email=None, password_hash=password_hash)
        store.add_user("north", "manager", site="acme/north", email="n@example.com",
                       password_hash=password_hash)
        store.add_user("one", "viewer", site="acme/north/store-1", email=None,
                       password_hash=password_hash)
        for kiosk in ("k-1", "k-10", "k-none"):
            store.set_key(kiosk, b"k" * 32, replace=False,
                          facts=DeviceFacts(kiosk, None, None, None))
        store.describe_device("k-usb", create=True)  # synced over USB only: no key
        store.assign_kiosk("k-1", "acme/north/store-1")
        store.assign_kiosk("k-10", "acme/north/store-10")
    return path


@pytest.fixture(scope="module")
def app(database: Path) -> Iterator[FastAPI]:
    built = create_app(database)
    _probe_routes(built)
    with TestClient(built):  # the lifespan: the writer starts once for the module
        yield built


@pytest.fixture
def clock(app: FastAPI) -> FakeClock:
    """A fresh throttle (on a fake clock) for each test: failures of one test never block
    the next."""
    fake = FakeClock()
    app.state.accounts = Accounts(throttle=LoginThrottle(clock=fake))
    return fake


@pytest.fixture
def client(app: FastAPI, clock: FakeClock) -> TestClient:
    return TestClient(app, follow_redirects=False)


def login(client: TestClient, name: str, password: str = PASSWORD, *, next_path: str = "/"
          ) -> Any:
    form = client.get("/login", params={"next": next_path})
    assert form.status_code == 200
    token = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert token is not None
    return client.post("/login", data={"name": name, "password": password,
                                       "csrf": token.group(1), "next": next_path})


def keys_of(database: Path) -> Keys:
    with open_store(database) as store:
        return Keys.from_secret(store.server_secret())


# -- logging in ----------------------------------------------------------------------------


def test_the_right_password_logs_in_and_the_session_names_the_user(client: TestClient) -> None:
    answer = login(client, "north", next_path="/probe?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/probe?x=1"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back
    assert client.get("/probe").json() == {"name": "north", "role": "manager",
                                           "site": "acme/north"}


def test_a_session_cookie_is_secure_over_https(app: FastAPI, clock: FakeClock) -> None:
    https = TestClient(app, base_url="https://dashboard.example", follow_redirects=False)
    answer = login(https, "north")
    assert answer.status_code == 303
    assert "Secure" in answer.headers["set-cookie"]


def test_a_wrong_password_or_an_unknown_name_is_refused_alike(client: TestClient) -> None:
    wrong = login(client, "north", "not the password")
    unknown = login(client, "nobody", "not the password")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert "Wrong name or password." in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert client.get("/probe").status_code == 303


def test_a_page_without_a_session_goes_to_login_and_an_api_route_says_401(
        client: TestClient) -> None:
    page = client.get("/probe", params={"a": "1"})
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=%2Fprobe%3Fa%3D1"
    api = client.get("/api/probe")
    assert api.status_code == 401
    assert "log in" in api.json()["error"]


def test_after_login_only_a_path_of_this_server_is_followed(client: TestClient) -> None:
    for outside in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        answer = login(client, "root", next_path=outside)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/"


def test_logout_ends_the_session(client: TestClient) -> None:
    login(client, "root")
    token = client.get("/probe/form").json()["csrf"]
    answer = client.post("/logout", data={"csrf": token})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert client.get("/probe").status_code == 303


# -- the cookie ----------------------------------------------------------------------------


def test_a_tampered_cookie_is_refused(client: TestClient, database: Path) -> None:
    login(client, "one")
    good = client.cookies[SESSION_COOKIE]
    body, signature = good.split(".")
    # Another user's name under the same signature; a cookie signed with another secret.
    forged_body = session_cookie(keys_of(database), "root", 1, time.time() + 60).split(".")[0]
    other_secret = session_cookie(Keys.from_secret(b"x" * 32), "root", 1, time.time() + 60)
    for cookie in (f"{forged_body}.{signature}", other_secret, body, f"{body}.",
                   f"{body}.{signature[:-2]}AA", "garbage"):
        client.cookies.set(SESSION_COOKIE, cookie)
        assert client.get("/probe").status_code == 303, cookie
    client.cookies.set(SESSION_COOKIE, good)
    assert client.get("/probe").json()["name"] == "one"


def test_an_expired_cookie_is_refused(client: TestClient, database: Path) -> None:
    with open_store(database) as store:
        user = store.user("root")
    assert user is not None
    keys = keys_of(database)
    client.cookies.set(SESSION_COOKIE, session_cookie(keys, "root", user.generation,
                                                      time.time() - 1))
    assert client.get("/probe").status_code == 303
    client.cookies.set(SESSION_COOKIE, session_cookie(keys, "root", user.generation,
                                                      time.time() + 60))
    assert client.get("/probe").json()["name"] == "root"  # the same cookie, still current


def test_a_password_change_ends_the_sessions_made_before(app: FastAPI, clock: FakeClock,
                                                         database: Path) -> None:
    with open_store(database) as store:
        store.add_user("temp", "viewer", site="acme/south", email=None,
                       password_hash=hash_password(PASSWORD))
    phone, laptop = (TestClient(app, follow_redirects=False) for _ in range(2))
    try:
        login(phone, "temp")
        assert phone.get("/probe").status_code == 200
        with open_store(database) as store:
            store.set_password("temp", hash_password("another good password"))
        assert phone.get("/probe").status_code == 303  # the old session is dead
        assert login(laptop, "temp").status_code == 401
        assert login(laptop, "temp", "another good password").status_code == 303
        assert laptop.get("/probe").status_code == 200
        with open_store(database) as store:
            store.remove_user("temp")
        assert laptop.get("/probe").status_code == 303
    finally:
        with open_store(database) as store:
            if store.user("temp") is not None:
                store.remove_user("temp")


def test_an_outdated_hash_is_replaced_at_login_without_ending_sessions(
        app: FastAPI, clock: FakeClock, database: Path) -> None:
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    with open_store(database) as store:
        store.add_user("old", "viewer", site="acme/south", email=None, password_hash=weak)
        generation = store.user("old").generation  # type: ignore[union-attr]
    try:
        client = TestClient(app, follow_redirects=False)
        assert login(client, "old").status_code == 303
        with open_store(database) as store:
            user = store.user("old")
        assert user is not None
        assert user.password_hash != weak and user.password_hash.startswith("$argon2id$")
        assert user.generation == generation
        assert client.get("/probe").status_code == 200
        assert login(TestClient(app, follow_redirects=False), "old").status_code == 303
    finally:
        with open_store(database) as store:
            store.remove_user("old")


def test_two_apps_on_one_database_accept_each_others_cookies(db_target: str) -> None:
    """On each engine, through the writer process: the secret drawn by the first app is
    the second's, and a login's rehash is stored there too."""
    from argon2 import PasswordHasher

    weak = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)
    with open_store(db_target) as store:
        store.add_site("acme")
        store.add_user("ana", "manager", site="acme", email=None, password_hash=weak)
    first, second = create_app(db_target), create_app(db_target)
    for app in (first, second):
        _probe_routes(app)
    with TestClient(first, follow_redirects=False) as one, \
            TestClient(second, follow_redirects=False) as two:
        assert login(one, "ana").status_code == 303
        two.cookies.set(SESSION_COOKIE, one.cookies[SESSION_COOKIE])
        assert two.get("/probe").json() == {"name": "ana", "role": "manager", "site": "acme"}
        token = two.get("/probe/form").json()["csrf"]
        assert one.post("/probe/act", data={"csrf": token}).json() == {"done": "ana"}
    with open_store(db_target) as store:
        rehashed = store.user("ana")
        assert rehashed is not None and rehashed.password_hash != weak
        assert Keys.from_secret(store.server_secret()).session == \
            first.state.accounts.keys.session


# -- CSRF ----------------------------------------------------------------------------------


def test_a_post_without_the_right_csrf_token_is_refused(client: TestClient,
                                                       app: FastAPI) -> None:
    login(client, "north")
    token = client.get("/probe/form").json()["csrf"]
    assert client.post("/probe/act").status_code == 403
    assert client.post("/probe/act", data={"csrf": "x" + token[1:]}).status_code == 403
    assert client.post("/logout", data={}).status_code == 403
    assert client.get("/probe").status_code == 200  # the refused logout did nothing
    # Another session's token does not fit this one.
    other = TestClient(app, follow_redirects=False)
    login(other, "one")
    their_token = other.get("/probe/form").json()["csrf"]
    assert client.post("/probe/act", data={"csrf": their_token}).status_code == 403
    assert client.post("/probe/act", data={"csrf": token}).json() == {"done": "north"}
    assert client.post("/probe/act", headers={"X-CSRF-Token": token}).status_code == 200


def test_the_login_form_needs_its_own_token(client: TestClient) -> None:
    client.get("/login")
    for fields in ({"name": "root", "password": PASSWORD},
                   {"name": "root", "password": PASSWORD, "csrf": "forged"}):
        answer = client.post("/login", data=fields)
        assert answer.status_code == 403
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    # A token of one login form does not fit another browser's form cookie.
    other = TestClient(client.app, follow_redirects=False)
    page = other.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    answer = client.post("/login", data={"name": "root", "password": PASSWORD,
                                         "csrf": token.group(1)})
    assert answer.status_code == 403


# -- the login's rate limit ----------------------------------------------------------------


def test_repeated_failures_are_answered_429_then_wait_longer_each_time(
        client: TestClient, clock: FakeClock) -> None:
    for _ in range(accounts.FREE_FAILURES):
        assert login(client, "north", "wrong password!").status_code == 401
    blocked = login(client, "north")  # even the right password waits
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) == accounts.FIRST_WAIT_S
    clock.now += accounts.FIRST_WAIT_S
    assert login(client, "north", "wrong password!").status_code == 401
    second = login(client, "north")
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) == 2 * accounts.FIRST_WAIT_S
    clock.now += 2 * accounts.FIRST_WAIT_S
    assert login(client, "north").status_code == 303  # a success starts afresh
    assert login(client, "north", "wrong password!").status_code == 401


def test_the_limit_holds_per_name_across_addresses_and_per_address_across_names(
        app: FastAPI, clock: FakeClock) -> None:
    attackers = [TestClient(app, follow_redirects=False, client=(f"10.0.0.{n}", 4000))
                 for n in range(accounts.FREE_FAILURES + 1)]
    for attacker in attackers[:-1]:
        assert login(attacker, "root", "wrong password!").status_code == 401
    assert login(attackers[-1], "root").status_code == 429  # a new address, the same name
    spray = TestClient(app, follow_redirects=False, client=("10.0.1.1", 4000))
    for n in range(accounts.FREE_FAILURES):
        assert login(spray, f"user{n}", "wrong password!").status_code == 401
    assert login(spray, "one").status_code == 429  # the same address, another name
    assert login(TestClient(app, follow_redirects=False, client=("10.0.2.1", 1)),
                 "one").status_code == 303


def test_the_throttle_forgets_old_failures_and_caps_its_wait() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(clock=clock)
    for _ in range(40):
        throttle.failed("name:x")
    assert throttle.wait("name:x") == accounts.MAX_WAIT_S
    clock.now += accounts.FORGET_S
    throttle.failed("name:x")
    assert throttle.wait("name:x") == 0  # one failure of a new day, not the 41st
    for n in range(accounts.MAX_COUNTED + 1):  # guesses from very many addresses
        clock.now += 1
        throttle.failed(f"address:{n}")
    assert len(throttle.failures) <= accounts.MAX_COUNTED
    assert throttle.failures[f"address:{accounts.MAX_COUNTED}"].count == 1  # newest kept


# -- the viewer's subtree ------------------------------------------------------------------


def test_scoped_site_keeps_a_viewer_in_their_subtree() -> None:
    store_1 = Viewer("one", "viewer", "acme/north/store-1")
    north = Viewer("north", "manager", "acme/north")
    root = Viewer("root", "admin", None)
    assert scoped_site(store_1, None) == "acme/north/store-1"
    assert scoped_site(store_1, "acme/north/store-1") == "acme/north/store-1"
    assert scoped_site(north, "acme/north/store-10") == "acme/north/store-10"
    assert scoped_site(root, None) is None
    assert scoped_site(root, "acme/south") == "acme/south"
    for who, outside in ((store_1, "acme/north/store-10"), (store_1, "acme/north"),
                         (store_1, "acme"), (north, "acme/northern"), (north, "acme/south"),
                         (north, "acme/north-x/store")):
        with pytest.raises(HTTPException) as refused:
            scoped_site(who, outside)
        assert refused.value.status_code == 404
    assert covers(root, None) and not covers(north, None)


def test_api_routes_refuse_other_sites_and_kiosks_as_not_found(client: TestClient) -> None:
    login(client, "one")
    assert client.get("/api/probe").json() == {"site": "acme/north/store-1"}
    outside = client.get("/api/probe", params={"site": "acme/north/store-10"})
    assert outside.status_code == 404 and outside.json() == {"error": "not found"}
    assert client.get("/api/kiosk/k-1").json() == {"site": "acme/north/store-1"}
    for kiosk in ("k-10", "k-none", "k-usb", "k-unknown"):
        assert client.get(f"/api/kiosk/{kiosk}").json() == {"error": "not found"}


def test_an_admin_sees_every_kiosk_and_pages_need_their_role(client: TestClient) -> None:
    login(client, "north")
    assert client.get("/probe/admin").status_code == 403
    login(client, "root")
    assert client.get("/probe/admin").json() == {"admin": "root"}
    assert client.get("/api/kiosk/k-none").json() == {"site": None}
    assert client.get("/api/kiosk/k-usb").json() == {"site": None}
    assert client.get("/api/kiosk/k-unknown").status_code == 404


def test_the_login_page_is_small_html_for_a_phone(client: TestClient) -> None:
    page = client.get("/login")
    assert page.headers["content-type"].startswith("text/html")
    assert 'name="viewport"' in page.text and 'data-testid="login-submit"' in page.text
    assert page.headers["cache-control"] == "no-store"
    with pytest.raises(Exception, match="admin, manager or viewer"):
        require_role("owner")


def test_a_login_verifies_off_the_event_loop_so_pushes_go_on(
        database: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a password is being verified (held here until released), the same app's event
    loop still answers: had argon2 run on the loop, /v1/health would wait for the verify
    to give up (after a minute) and find it finished."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()
    real_verify = account_rules.verify_password

    def held_verify(password_hash: str, password: str) -> bool:
        started.set()
        release.wait(60)
        finished.set()
        return real_verify(password_hash, password)

    monkeypatch.setattr(account_rules, "verify_password", held_verify)
    app = create_app(database)
    _probe_routes(app)
    with TestClient(app, follow_redirects=False) as client:  # one event loop for both
        form = client.get("/login")
        token = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert token is not None
        answers: list[Any] = []
        login_thread = threading.Thread(target=lambda: answers.append(client.post(
            "/login", data={"name": "root", "password": PASSWORD, "csrf": token.group(1)})))
        login_thread.start()
        try:
            assert started.wait(60)
            assert client.get("/v1/health").status_code == 200
            assert not finished.is_set()
        finally:
            release.set()
            login_thread.join(60)
        assert answers[0].status_code == 303


def test_a_database_that_cannot_answer_is_503_with_retry_after(
        app: FastAPI, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    login(client, "root")
    assert client.get("/probe").status_code == 200

    async def unavailable(fn: Any, *args: Any) -> Any:
        raise StorageUnavailable("not committed: database is locked")

    monkeypatch.setattr(app.state.deskpulse.database, "run", unavailable)
    for answer in (client.get("/probe"), login(client, "root")):
        assert answer.status_code == 503
        assert int(answer.headers["retry-after"]) > 0
        assert "not available right now" in answer.json()["error"]
