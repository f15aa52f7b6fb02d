"""Nobody reads another store's data through any route of the app (issue 17 item 2).

Every route of `create_app` is enumerated from `app.routes`: those that need no login are
named here (the login, the kiosks' signed /v1 routes, the static files, health), and
every other one must take the viewer (`accounts.viewer`), so a route added later without
it fails here. Then every one of those is asked, as a manager of one store, for another
store's data: by its site path, by its kiosks' ids, and with no filter at all; each
answers 404 or leaves every trace of the other store (its kiosks' ids and names, its
path, its response count, the sentences of its refused pushes; and the pushes refused
under ids of no kiosk, which belong to no store) out of its body. Logged out, pages
answer 303 to /login and the API 401.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

import dashboard_chain as chain
from deskpulse.server import accounts
from deskpulse.server.app import create_app
from deskpulse.store import open_store

PUBLIC = ("/login", "/logout", "/v1/", "/static")
"""Routes that need no session: the login form and its post, logging out (which needs
its CSRF token), the kiosks' routes with their own HMAC signatures, health, and the
shipped script and style sheet."""

# (viewer, a kiosk and a site it must never see)
FOREIGN = [("lyon", "lille-1", "acme/north/lille"), ("lyon", "nice-1", "acme/south/nice"),
           ("lyon", "loose-1", None), ("north", "nice-1", "acme/south/nice"),
           ("nice", "lyon-1", "acme/north/lyon")]


@pytest.fixture(scope="module")
def chain_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FastAPI, Path]]:
    folder = tmp_path_factory.mktemp("scope")
    db = folder / "chain.db"
    chain.build(db, folder)
    app = create_app(db, clock=lambda: chain.LATER)  # lyon-1 and nice-1 silent by then
    with TestClient(app):
        yield app, db


def _needs_login(path: str) -> bool:
    return not path.startswith(PUBLIC)


@dataclass(frozen=True)
class Route:
    """A route as the app serves it: its full path, and the dependencies that a router's
    inclusion adds to its own."""

    path: str
    route: APIRoute
    added: tuple[Any, ...] = ()

    @property
    def methods(self) -> set[str]:
        return set(self.route.methods)

    def takes_viewer(self) -> bool:
        if any(d.dependency is accounts.viewer for d in self.added):
            return True
        todo = [self.route.dependant]
        while todo:
            dependant = todo.pop()
            if dependant.call is accounts.viewer:
                return True
            todo += dependant.dependencies
        return False

    def takes_query(self, name: str) -> bool:
        todo = [self.route.dependant]
        while todo:
            dependant = todo.pop()
            if any(p.name == name for p in dependant.query_params):
                return True
            todo += dependant.dependencies
        return False


def _flatten(routes: list[Any], prefix: str = "", added: tuple[Any, ...] = ()
             ) -> Iterator[Route | Mount | Any]:
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's included router
        if included is not None:
            context = route.include_context
            yield from _flatten(included.routes, prefix + context.prefix,
                                added + tuple(context.dependencies))
        elif isinstance(route, APIRoute):
            yield Route(prefix + route.path, route, added)
        else:
            yield route


def _routes(app: FastAPI) -> list[Route]:
    found = []
    for route in _flatten(app.routes):
        if isinstance(route, Mount):
            assert not _needs_login(route.path), f"mounted {route.path}: name it in PUBLIC"
        elif isinstance(route, Route):
            found.append(route)
        else:  # the docs pages, served only with --api-docs
            assert getattr(route, "path", "") in {"/openapi.json", "/docs", "/redoc",
                                                  "/docs/oauth2-redirect"}, route
    return found


def test_every_route_but_the_public_ones_takes_the_viewer(
        chain_app: tuple[FastAPI, Path]) -> None:
    app, _ = chain_app
    routes = _routes(app)
    private = [r for r in routes if _needs_login(r.path)]
    assert {r.path for r in private} >= {"/", "/report", "/report.csv", "/devices",
                                         "/alerts", "/events", "/api/overview",
                                         "/api/report", "/api/devices", "/api/alerts"}
    for route in private:
        assert route.takes_viewer(), f"{route.path} does not take Depends(accounts.viewer)"
    # The test can fail: a route without the viewer is caught.
    extra = FastAPI()

    @extra.get("/api/leak")
    def leak() -> dict[str, str]:
        return {}

    (leaky,) = [r for r in _routes(extra) if r.path == "/api/leak"]
    assert _needs_login(leaky.path) and not leaky.takes_viewer()


def _private_gets(app: FastAPI) -> list[Route]:
    return [r for r in _routes(app) if _needs_login(r.path) and "GET" in r.methods]


def _url(route: Route, device: str) -> str:
    return re.sub(r"\{[^}]+\}", device, route.path)


def test_logged_out_pages_go_to_login_and_the_api_says_401(
        chain_app: tuple[FastAPI, Path]) -> None:
    app, _ = chain_app
    client = TestClient(app, follow_redirects=False)
    for route in _private_gets(app):
        url = _url(route, "lyon-1")
        reply = client.get(url)
        if url.startswith(("/api/", "/events")):
            assert reply.status_code == 401, url
        else:
            assert reply.status_code == 303, url
            assert reply.headers["location"].startswith("/login?next="), url


def _traces(db: Path, device: str, site: str | None) -> list[re.Pattern[str]]:
    """What would betray the other kiosk and its store in a body: also the sentence of
    its refused pushes, and those of pushes refused under ids of no kiosk (no store's)."""
    with open_store(db) as store:
        count = len(store.responses_of(device))
    words = [device, *(w for w in [site, chain.NAMES.get(device), chain.REFUSED.get(device)]
                       if w),
             *(ghost for ghost in chain.GHOSTS if ghost != "*"), *chain.GHOSTS.values()]
    numbers = {str(count), f"{count:,}"}
    return ([re.compile(re.escape(w)) for w in words]
            + [re.compile(rf"(?<![\d,.]){re.escape(n)}(?![\d,.])") for n in numbers])


def _read_events(app: FastAPI, client: TestClient) -> str:
    """GET /events, its stream ended right after the event that every kiosk's push makes
    (a stream never ends by itself)."""
    hub = app.state.deskpulse.live
    subscribe = hub.subscribe

    def subscribe_once(scope: str | None) -> Any:
        subscription = subscribe(scope)
        with open_store(app.state.deskpulse.database.db_path) as store:
            hub.places = store.kiosk_sites()
        hub.notify(chain.KIOSKS)
        hub.flush()
        hub._end(subscription)
        return subscription

    hub.subscribe = subscribe_once
    try:
        reply = client.get("/events")
    finally:
        del hub.subscribe
    assert reply.status_code == 200 and "event: push" in reply.text
    return reply.text


@pytest.mark.parametrize(("viewer", "device", "site"), FOREIGN)
def test_a_manager_reads_nothing_of_another_store_through_any_route(
        chain_app: tuple[FastAPI, Path], viewer: str, device: str, site: str | None) -> None:
    app, db = chain_app
    client = TestClient(app, follow_redirects=False)
    client.cookies.set(*chain.session_of(db, viewer))
    traces = _traces(db, device, site)
    own = chain.USERS[viewer][1]
    assert own is not None
    asked = 0
    for route in _private_gets(app):
        attempts: list[dict[str, str]] = [{}, {"device": device}]
        if site is not None:
            attempts.append({"site": site})
        attempts.append({"site": own.rsplit("/", 1)[0]})  # the level above: outside too
        for query in attempts:
            url = _url(route, device)
            if route.path == "/events":
                if query:
                    continue
                body = _read_events(app, client)
                assert own.split("/")[-1] in body  # its own kiosks are heard
            else:
                reply = client.get(url, params=query)
                asked += 1
                body = reply.text
                refused = next((name for name in query if route.takes_query(name)), None)
                if refused is not None or "{" in route.path:
                    assert reply.status_code == 404, (url, query, reply.status_code)
                else:
                    assert reply.status_code == 200, (url, query, reply.status_code)
            for trace in traces:
                assert not trace.search(body), (url, query, trace.pattern)
    assert asked >= 25


def _get(app: FastAPI, db: Path, viewer: str, path: str) -> Any:
    client = TestClient(app, follow_redirects=False)
    client.cookies.set(*chain.session_of(db, viewer))
    reply = client.get(path)
    assert reply.status_code == 200, (viewer, path)
    return reply.json() if path.startswith("/api/") else reply.text


def test_health_rows_and_alerts_are_the_viewers_own_and_no_ones_only_an_admins(
        chain_app: tuple[FastAPI, Path]) -> None:
    """The fields of device health are there for one's own kiosks (so that their absence
    for the others' means something); refused pushes under ids of no kiosk belong to no
    store: only an admin without a site sees them."""
    app, db = chain_app
    devices = _get(app, db, "lyon", "/api/devices")
    assert {k["device_id"] for k in devices["kiosks"]} == set(chain.STORES["acme/north/lyon"])
    behind = next(k for k in devices["kiosks"] if k["device_id"] == chain.BEHIND)
    assert behind["refused"] == {"signature": 3} and behind["config_behind"]
    assert devices["unknown_refused"] == []
    health = _get(app, db, "lyon", "/api/alerts")["health"]
    assert {(a["device_id"], a["kind"]) for a in health} == {("lyon-1", "silent"),
                                                            ("lyon-2", "refused")}
    assert _get(app, db, "lyon", "/api/overview")["total"]["health_alerts"] == 2
    # An admin of one organisation: its kiosks, not the one in no store, no ghost.
    scoped = _get(app, db, "acme-admin", "/api/devices")
    assert {k["device_id"] for k in scoped["kiosks"]} == set(chain.KIOSKS) - {chain.LOOSE}
    assert scoped["unknown_refused"] == []
    page = _get(app, db, "acme-admin", "/devices")
    assert not any(message in page for message in chain.GHOSTS.values())
    # The admin of everything sees them apart from every store's kiosks.
    everything = _get(app, db, "root", "/api/devices")
    assert {u["device_id"] for u in everything["unknown_refused"]} == set(chain.GHOSTS)
    assert all(message in _get(app, db, "root", "/devices")
               for message in chain.GHOSTS.values())
