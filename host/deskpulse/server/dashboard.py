"""The dashboard that store managers browse to (docs/dashboard.md, "Dashboard"): pages,
their JSON, the CSV download and the live events, on the port the kiosks push to.

Every route takes the viewer (deskpulse.server.accounts) and reads within the viewer's
site; the figures are computed in the reader process (server/reader.py,
dashboard_data.py) so that the event loop and the writer keep serving the kiosks while a
report over millions of responses is made.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.staticfiles import StaticFiles

from deskpulse.errors import DeskPulseError
from deskpulse.reports import alerts as report_alerts
from deskpulse.server import accounts, pages
from deskpulse.server import dashboard_data as data
from deskpulse.server.accounts import Viewer
from deskpulse.server.common import ServerState, error_response, log, state
from deskpulse.server.live import TooManySubscribers

router = APIRouter(include_in_schema=False)

KEEP_ALIVE_S = 15.0
"""A comment line this often on an idle event stream, so that proxies keep it open."""
RECONNECT_MS = 2000
"""What the browser waits before reconnecting a dropped event stream."""
MEMO_ENTRIES = 256
STREAM_S = 60.0
"""How long one event stream lasts before the browser reconnects and is checked again."""


def static_files() -> StaticFiles:
    """/static: the dashboard's script and style sheet, shipped in the package."""
    return StaticFiles(packages=[("deskpulse.server", "static")])


Who = Annotated[Viewer, Depends(accounts.viewer)]
"""Every route's viewer: its site (None for an admin: everything) bounds what it reads."""
Server = Annotated[ServerState, Depends(state)]


def selection(since: str | None = None, until: str | None = None, site: str | None = None,
              device: str | None = None,
              include_flagged: Annotated[bool, Query()] = False) -> data.Selection:
    """The filters of `deskpulse report`, as query parameters (empty means not given)."""
    return data.Selection(since or None, until or None, site or None, device or None,
                          include_flagged)


Chosen = Annotated[data.Selection, Depends(selection)]


def _now(server: ServerState) -> float:
    now = server.clock.now()
    return float(now) if now is not None else time.time()


class _Failed(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def _read(server: ServerState, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(store, *args) in the reader; a bad filter is a 400, outside the scope a 404."""
    try:
        return await server.reader.run(fn, *args)
    except data.OutOfScope as exc:
        raise _Failed(404, str(exc)) from exc
    except DeskPulseError as exc:
        raise _Failed(400, str(exc)) from exc


def _page(request: Request, who: Viewer, title: str, body: str, status: int = 200, *,
          live: bool = False) -> HTMLResponse:
    logout = f'<input type="hidden" name="csrf" value="{accounts.csrf_token(request)}">'
    return HTMLResponse(pages.layout(title, request.url.path, body, viewer=who.name,
                                     logout=logout, live=live), status_code=status)


async def _answer(read: Callable[[], Awaitable[Any]]) -> Response:
    """The JSON of an API route: what read() gives, or its refusal as {"error": ...}."""
    try:
        return JSONResponse(await read())
    except _Failed as failed:
        return error_response(failed.status, failed.message)


def _within(who: Viewer, chosen: data.Selection) -> data.Selection:
    """The selection with its site bounded by the viewer's (accounts.scoped_site); the
    kiosk, if any, is checked in the reader (dashboard_data.scoped), in the same call."""
    try:
        site = accounts.scoped_site(who, chosen.site)
    except HTTPException as exc:
        raise _Failed(exc.status_code, str(exc.detail)) from exc
    return dataclasses.replace(chosen, site=site)


def _query(chosen: data.Selection) -> str:
    return urlencode({k: v for k, v in (
        ("since", chosen.since), ("until", chosen.until), ("site", chosen.site),
        ("device", chosen.device),
        ("include_flagged", "true" if chosen.include_flagged else None)) if v})


# -- the overview ----------------------------------------------------------------------------

async def _memo(server: ServerState, key: tuple[Any, ...],
                make: Callable[[], Awaitable[Any]]) -> Any:
    """make()'s result, once per key until a push changes the figures (live.Broadcaster's
    memo): the dashboards that ask at the same moment share one computation."""
    memo = server.live.memo
    task = memo.get(key)
    if task is None:
        if len(memo) >= MEMO_ENTRIES:  # minutes without a push, each with its own key
            memo.clear()
        task = memo[key] = asyncio.ensure_future(make())
    try:
        return await asyncio.shield(task)
    except Exception:
        if memo.get(key) is task:
            del memo[key]  # a failure is not kept: the next ask tries again
        raise


async def _overview(server: ServerState, scope: str | None) -> dict[str, Any]:
    """The overview: today and this week, as of this minute."""
    now = _now(server)
    return await _memo(server, ("overview", scope, int(now // 60)),
                       lambda: _read(server, data.overview, scope, now))


async def _overview_json(server: ServerState, scope: str | None) -> str:
    """The overview as one line of JSON, encoded once for every event stream of a scope."""
    now = _now(server)

    async def encoded() -> str:
        return json.dumps(await _overview(server, scope), separators=(",", ":"))
    return await _memo(server, ("overview-json", scope, int(now // 60)), encoded)


@router.get("/", response_class=HTMLResponse)
async def overview_page(request: Request, server: Server, who: Who) -> Response:
    try:
        body = pages.overview(await _overview(server, who.site))
    except _Failed as failed:
        return _page(request, who, "Overview", pages.error_page(failed.message),
                     failed.status)
    title = f"Overview of {who.site}" if who.site else "Overview"
    return _page(request, who, title, body, live=True)


@router.get("/api/overview")
async def overview_api(server: Server, who: Who) -> Response:
    return await _answer(lambda: _overview(server, who.site))


# -- the report ------------------------------------------------------------------------------


@router.get("/report", response_class=HTMLResponse)
async def report_page(request: Request, server: Server, who: Who, chosen: Chosen
                      ) -> Response:
    try:
        choices = await _read(server, data.choices, who.site)
    except _Failed as failed:
        return _page(request, who, "Report", pages.error_page(failed.message), failed.status)
    form = pages.filters_form("/report", vars_of(chosen), choices)
    try:
        rep = await _read(server, data.report, who.site, _within(who, chosen),
                          int(_now(server)))
    except _Failed as failed:
        return _page(request, who, "Report", form + pages.error_page(failed.message),
                     failed.status)
    return _page(request, who, "Report", form + pages.report(rep, _query(chosen)))


def vars_of(chosen: data.Selection) -> dict[str, Any]:
    return {"since": chosen.since, "until": chosen.until, "site": chosen.site,
            "device": chosen.device, "include_flagged": chosen.include_flagged}


@router.get("/api/report")
async def report_api(server: Server, who: Who, chosen: Chosen) -> Response:
    """What `deskpulse report --format json` prints for the same selection."""
    return await _answer(lambda: _read(server, data.report, who.site, _within(who, chosen),
                                       int(_now(server))))


@router.get("/report.csv")
async def report_csv(server: Server, who: Who, chosen: Chosen) -> Response:
    """`deskpulse report --format csv` for the same selection, streamed kiosk by kiosk."""
    try:
        chosen = _within(who, chosen)
        kiosks = await _read(server, data.csv_devices, who.site, chosen)
    except _Failed as failed:
        return error_response(failed.status, failed.message)

    async def rows() -> AsyncIterator[str]:
        yield data.csv_header()
        for device_id in kiosks:
            yield await server.reader.run(data.csv_part, who.site, chosen, device_id)

    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": 'attachment; filename="deskpulse-report.csv"'})


# -- devices and alerts ----------------------------------------------------------------------


@router.get("/devices", response_class=HTMLResponse)
async def devices_page(request: Request, server: Server, who: Who) -> Response:
    try:
        found = await _read(server, data.devices, who.site, _now(server))
    except _Failed as failed:
        return _page(request, who, "Devices", pages.error_page(failed.message),
                     failed.status)
    return _page(request, who, "Devices", pages.devices(found))


@router.get("/api/devices")
async def devices_api(server: Server, who: Who) -> Response:
    return await _answer(lambda: _read(server, data.devices, who.site, _now(server)))


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(request: Request, server: Server, who: Who, chosen: Chosen
                      ) -> Response:
    try:
        choices = await _read(server, data.choices, who.site)
        form = pages.filters_form("/alerts", vars_of(chosen), choices)
        found = await _read(server, data.alerts, who.site, _within(who, chosen),
                            _now(server))
    except _Failed as failed:
        return _page(request, who, "Alerts", pages.error_page(failed.message),
                     failed.status)
    note = ("Alerts of the last 7 days." if chosen.since is None and chosen.until is None
            else "Alerts of the chosen range.")
    until = report_alerts.parse_bound(chosen.until, "--until")
    end = report_alerts.range_end(None if until is None else int(until), int(_now(server)))
    current, earlier = report_alerts.current_and_earlier(found["alerts"], end)
    return _page(request, who, "Alerts",
                 form + pages.alerts(current, earlier, note, found["health"]))


@router.get("/api/alerts")
async def alerts_api(server: Server, who: Who, chosen: Chosen) -> Response:
    return await _answer(lambda: _read(server, data.alerts, who.site, _within(who, chosen),
                                       _now(server)))


# -- live events -----------------------------------------------------------------------------


@router.get("/events")
async def events(server: Server, who: Who) -> Response:
    """Server-sent events: `push` whenever a push or sync of a kiosk within the scope is
    stored, carrying {"devices": [...], "sites": [...]} (the sites one level below), then
    `overview` carrying what /api/overview now answers, so that an open overview does not
    ask for it (200 dashboards refetching cost pushes 40% more CPU each). A stream ends
    after STREAM_S and the browser reconnects, logging in again with its cookie: a user
    removed or moved to another site stops hearing within that time."""
    try:
        subscription = server.live.subscribe(who.site)
    except TooManySubscribers as exc:
        log.warning("refused a live dashboard: %s", exc)
        return error_response(503, "too many live dashboards are open; retry later")

    async def stream() -> AsyncIterator[str]:
        try:
            yield f"retry: {RECONNECT_MS}\n: connected\n\n"
            ends = time.monotonic() + STREAM_S
            while (left := ends - time.monotonic()) > 0:
                event = await subscription.next_event(min(KEEP_ALIVE_S, left))
                if event is None:
                    return
                if not event:
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: push\ndata: {event}\n\n"
                try:
                    yield f"event: overview\ndata: {await _overview_json(server, who.site)}\n\n"
                except _Failed:
                    return  # the scope went away (a site removed): the reconnect says why
        except asyncio.CancelledError:
            raise
        finally:
            server.live.unsubscribe(subscription)

    return StreamingResponse(stream(), media_type="text/event-stream", headers={
        "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
