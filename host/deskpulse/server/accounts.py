"""Who is looking at the dashboard (issue 17): the login page, sessions, CSRF, the login's
rate limit, and the dependencies every dashboard page and API route uses (docs/dashboard.md
"Accounts").

A session is a signed cookie, `deskpulse_session`: the user's name, their session
generation (store/accounts.py) and an expiry, with an HMAC-SHA256 made with a key derived
from the database's server secret, so that every `deskpulse serve` on one database accepts
it. Each request checks the signature and the expiry, then reads the user (through the
writer process): a removed user, or a password changed since the cookie was made (a new
generation), ends the session at once.

CSRF: every form of the dashboard carries a token (`csrf_token`) that is an HMAC of the
session cookie, which a page of another origin can neither read nor compute;
`check_csrf` refuses a POST without it. The login form has no session yet: GET /login sets
a short-lived random cookie, `deskpulse_login`, and the form's token is bound to that.

Login attempts are limited per client address and per user name (`LoginThrottle`), in
memory of each process: after FREE_FAILURES failures in a row, each further attempt waits
twice as long as the one before (answered 429 with Retry-After).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import json
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from deskpulse.errors import DeskPulseError
from deskpulse.server.common import ServerState, log, server_of
from deskpulse.store import accounts as account_rules
from deskpulse.store.base import Store

router = APIRouter()
T = TypeVar("T")

SESSION_COOKIE = "deskpulse_session"
LOGIN_COOKIE = "deskpulse_login"
SESSION_S = 7 * 24 * 3600
"""How long a session lasts: a manager glancing at a phone once a day logs in once a week."""
LOGIN_FORM_S = 3600
"""How long a login form may wait before it is sent."""
FREE_FAILURES = 5
"""Failed logins (per address, per name) before each further attempt must wait."""
FIRST_WAIT_S = 1.0
MAX_WAIT_S = 15 * 60
FORGET_S = 24 * 3600
"""A name or address whose last failure is this old starts again with FREE_FAILURES."""
MAX_COUNTED = 10_000
"""Names and addresses counted at most; beyond, the half with the oldest failures goes."""
MAX_FORM_BYTES = 8192

_API_PREFIXES = ("/api/", "/events")
_DUMMY_HASH_PASSWORD = "not the password of anybody"


@dataclass(frozen=True, slots=True)
class Viewer:
    name: str
    role: str  # "admin" | "manager" | "viewer"
    site: str | None  # the subtree they see (a site path); None: everything (admins only)


# -- keys, signing -------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Keys:
    """Keys derived from the server secret, one per use, so that no signature made for one
    purpose is accepted for another."""

    session: bytes
    csrf: bytes

    @classmethod
    def from_secret(cls, secret: bytes) -> Keys:
        return cls(hmac.new(secret, b"deskpulse session", hashlib.sha256).digest(),
                   hmac.new(secret, b"deskpulse csrf", hashlib.sha256).digest())


def session_cookie(keys: Keys, name: str, generation: int, expires: float) -> str:
    """The cookie's value: base64(JSON) '.' base64(HMAC-SHA256 of the first part)."""
    body = _b64(json.dumps({"u": name, "g": generation, "e": int(expires)},
                           separators=(",", ":")).encode())
    return f"{body}.{_b64(hmac.new(keys.session, body.encode(), hashlib.sha256).digest())}"


@dataclass(frozen=True, slots=True)
class Session:
    name: str
    generation: int
    expires: int


def read_session(keys: Keys, cookie: str | None, now: float) -> Session | None:
    """The session a cookie holds, None unless it is signed with this key and current."""
    if not cookie or cookie.count(".") != 1:
        return None
    body, signature = cookie.split(".")
    expected = _b64(hmac.new(keys.session, body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature.encode(), expected.encode()):
        return None
    try:
        fields = json.loads(_unb64(body))
        session = Session(str(fields["u"]), int(fields["g"]), int(fields["e"]))
    except (ValueError, KeyError, TypeError):
        return None
    return session if session.expires > now else None


def _csrf_for(keys: Keys, purpose: str, value: str) -> str:
    return _b64(hmac.new(keys.csrf, f"{purpose}:{value}".encode(), hashlib.sha256).digest())


# -- the login's rate limit ----------------------------------------------------------------


@dataclass(slots=True)
class _Failures:
    count: int = 0
    last: float = 0.0
    blocked_until: float = 0.0


@dataclass(slots=True)
class LoginThrottle:
    """Failed logins per key ("address:1.2.3.4", "name:bob"); in memory of one process, so
    several `serve` processes each allow their own share (docs/dashboard.md)."""

    clock: Callable[[], float] = time.monotonic
    failures: dict[str, _Failures] = field(default_factory=dict)

    def wait(self, *keys: str) -> float:
        """Seconds before these keys may try again (0: now)."""
        now = self.clock()
        return max([0.0, *(self.failures[key].blocked_until - now
                           for key in keys if key in self.failures)])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        if len(self.failures) > MAX_COUNTED:  # guesses from many addresses: bounded memory
            recent = sorted(self.failures.items(), key=lambda item: item[1].last)
            self.failures = dict(recent[-MAX_COUNTED // 2:])
        for key in keys:
            entry = self.failures.get(key)
            if entry is None or now - entry.last >= FORGET_S:
                entry = self.failures[key] = _Failures()
            entry.count += 1
            entry.last = now
            beyond = entry.count - FREE_FAILURES
            if beyond >= 0:
                entry.blocked_until = now + min(MAX_WAIT_S, FIRST_WAIT_S * 2 ** beyond)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self.failures.pop(key, None)


# -- what one app keeps: the keys (read once from the database) and the throttle -----------


@dataclass(slots=True)
class Accounts:
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    keys: Keys | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    dummy_hash: str | None = None


def _accounts(request: Request) -> Accounts:
    app_state = request.app.state
    found = getattr(app_state, "accounts", None)
    if found is None:
        found = app_state.accounts = Accounts()
    return found  # type: ignore[no-any-return]


def _server_secret(store: Store) -> bytes:
    return store.server_secret()


async def _stored(server: ServerState, fn: Callable[..., T], *args: Any) -> T:
    """fn(store, *args) in the writer; a database that cannot answer now is a 503 with
    Retry-After (as for a push), not an internal error."""
    try:
        return await server.database.run(fn, *args)
    except DeskPulseError as exc:
        log.warning("accounts: database unavailable: %s", exc)
        raise HTTPException(503, "the database is not available right now: retry in a "
                                 "moment") from exc


async def _keys(request: Request) -> Keys:
    accounts = _accounts(request)
    if accounts.keys is None:
        async with accounts.lock:
            if accounts.keys is None:
                secret = await _stored(server_of(request), _server_secret)
                accounts.keys = Keys.from_secret(secret)
    return accounts.keys


# -- who is asking -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Known:
    role: str
    site: str | None
    generation: int


def _known_user(store: Store, name: str) -> _Known | None:
    user = store.user(name)
    return None if user is None else _Known(user.role, user.site, user.generation)


async def _session_viewer(request: Request) -> Viewer | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    session = read_session(await _keys(request), cookie, time.time())
    if session is None:
        return None
    known = await _stored(server_of(request), _known_user, session.name)
    if known is None or known.generation != session.generation:
        return None  # removed, or the password changed since this cookie was made
    return Viewer(session.name, known.role, known.site)


def _is_api(path: str) -> bool:
    return path.startswith(_API_PREFIXES)


async def viewer(request: Request) -> Viewer:
    """Depends(viewer) on every dashboard page and API route: the user of the session.
    Without one, a page is sent to /login (303, back here after) and an API route is
    answered 401."""
    found = await _session_viewer(request)
    if found is not None:
        return found
    path = request.url.path
    if _is_api(path):
        raise HTTPException(401, "not logged in: log in at /login")
    target = path + (f"?{request.url.query}" if request.url.query else "")
    raise HTTPException(303, "log in first",
                        headers={"Location": f"/login?next={quote(target, safe='')}"})


def require_role(*roles: str) -> Callable[..., Awaitable[Viewer]]:
    """Depends(require_role("admin", "manager")): the viewer, 403 for any other role."""
    for role in roles:
        account_rules.check_role(role)

    async def with_role(found: Annotated[Viewer, Depends(viewer)]) -> Viewer:
        if found.role not in roles:
            raise HTTPException(403, f"this needs the role {' or '.join(roles)}")
        return found

    return with_role


def covers(viewer: Viewer, site: str | None) -> bool:
    """Whether the site (a path; None: a kiosk in no site) is in the viewer's subtree:
    the site itself or below it by whole names ("acme/store-1" does not cover
    "acme/store-10")."""
    if viewer.site is None:
        return True
    return site is not None and (site == viewer.site or site.startswith(viewer.site + "/"))


def not_found() -> HTTPException:
    """The refusal of anything outside the viewer's subtree: the same as for a thing that
    does not exist, so that nobody learns what other stores there are."""
    return HTTPException(404, "not found")


def scoped_site(viewer: Viewer, requested: str | None) -> str | None:
    """The site path a query may use: `requested` when it is in the viewer's subtree, the
    viewer's own site when None (None for an admin: everything); 404 otherwise."""
    if requested is None:
        return viewer.site
    if not covers(viewer, requested):
        raise not_found()
    return requested


def _device_site(store: Store, device_id: str) -> tuple[bool, str | None]:
    """(whether the kiosk is known, its store's path)."""
    site = store.device_site_path(device_id)
    if site is not None:
        return True, site
    # In no store (or unknown): only an admin's question, and rare; a kiosk that only
    # ever synced over USB has no key, so the devices, not the keys, say who is known.
    return any(facts.device_id == device_id for facts in store.device_facts()), None


async def device_in_scope(server: ServerState, viewer: Viewer, device_id: str) -> str | None:
    """The store site of a kiosk the viewer may see (None: an admin's kiosk in no site);
    404 for a kiosk outside the viewer's subtree, in no site (unless admin) or unknown."""
    known, site = await _stored(server, _device_site, device_id)
    if not known or not covers(viewer, site):
        raise not_found()
    return site


# -- CSRF ----------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The token for a hidden <input name="csrf"> of a form on a logged-in page (bound to
    the session cookie); the keys are read by the viewer dependency the page ran first."""
    keys = _accounts(request).keys
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if keys is None or not cookie:
        raise HTTPException(403, "no session to protect: log in first")
    return _csrf_for(keys, "session", cookie)


async def _form(request: Request) -> dict[str, str]:
    """The fields of an urlencoded form (the first value of each); cached on the request."""
    cached = getattr(request.state, "deskpulse_form", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    fields: dict[str, str] = {}
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"a form of over {MAX_FORM_BYTES} bytes")
        try:
            parsed = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
        except (UnicodeDecodeError, ValueError) as exc:
            raise HTTPException(400, "malformed form") from exc
        fields = {name: values[0] for name, values in parsed.items()}
    request.state.deskpulse_form = fields
    return fields


async def _sent_token(request: Request) -> str:
    # A script of the dashboard may send it as a header instead of a form field.
    return request.headers.get("x-csrf-token") or (await _form(request)).get("csrf", "")


async def check_csrf(request: Request) -> None:
    """Depends(check_csrf) on every POST/PUT/DELETE of the dashboard: 403 unless the
    request carries the token of its session."""
    cookie = request.cookies.get(SESSION_COOKIE, "")
    sent = await _sent_token(request)
    expected = _csrf_for(await _keys(request), "session", cookie)
    if not cookie or not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")


# -- pages ---------------------------------------------------------------------------------


def _safe_next(target: str | None) -> str:
    """Where to go after logging in: a path of this server only (never //other.host)."""
    if (not target or not target.startswith("/") or target.startswith("//")
            or "\\" in target or any(ord(c) < 32 for c in target)):
        return "/"
    return target


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>DeskPulse: log in</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 0; padding: 1rem; background: #f4f4f4; }}
form {{ max-width: 22rem; margin: 3rem auto; padding: 1.5rem; background: #fff;
       border-radius: .5rem; box-shadow: 0 1px 4px #0002; }}
h1 {{ font-size: 1.4rem; margin-top: 0; }}
label {{ display: block; margin: .8rem 0 .3rem; }}
input {{ width: 100%; box-sizing: border-box; font-size: 1.1rem; padding: .5rem; }}
button {{ margin-top: 1.2rem; width: 100%; font-size: 1.1rem; padding: .6rem; }}
.error {{ color: #a00; }}
</style></head>
<body><form method="post" action="/login">
<h1>DeskPulse</h1>
{error}
<label for="name">Name</label>
<input id="name" name="name" autocomplete="username" autocapitalize="none" required
 value="{name}" data-testid="login-name">
<label for="password">Password</label>
<input id="password" name="password" type="password" autocomplete="current-password"
 required data-testid="login-password">
<input type="hidden" name="csrf" value="{csrf}">
<input type="hidden" name="next" value="{next}">
<button type="submit" data-testid="login-submit">Log in</button>
</form></body></html>
"""


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _login_page(request: Request, keys: Keys, *, status: int = 200, error: str = "",
                name: str = "", next_path: str = "/",
                headers: dict[str, str] | None = None) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    page = _PAGE.format(
        error=(f'<p class="error" role="alert" data-testid="login-error">{html.escape(error)}'
               "</p>") if error else "",
        name=html.escape(name), csrf=_csrf_for(keys, "login", nonce),
        next=html.escape(next_path))
    response = HTMLResponse(page, status_code=status, headers=headers)
    response.headers["Cache-Control"] = "no-store"
    response.set_cookie(LOGIN_COOKIE, nonce, max_age=LOGIN_FORM_S, httponly=True,
                        samesite="lax", secure=_secure(request))
    return response


@router.get("/login", response_class=HTMLResponse, include_in_schema=False)
async def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
    return _login_page(request, await _keys(request), next_path=_safe_next(next))


def _login_user(store: Store, name: str) -> tuple[str, int] | None:
    user = store.user(name)
    return None if user is None else (user.password_hash, user.generation)


def _rehash(store: Store, name: str, old_hash: str, new_hash: str) -> bool:
    return store.set_password(name, new_hash, end_sessions=False, replacing=old_hash)


async def _verify(accounts: Accounts, found: tuple[str, int] | None, password: str) -> bool:
    """The password against the user's hash, off the event loop (argon2 is slow by design);
    an unknown name is checked against a dummy hash, so it takes as long as a known one."""
    if found is None:
        if accounts.dummy_hash is None:
            accounts.dummy_hash = await asyncio.to_thread(
                account_rules.hash_password, _DUMMY_HASH_PASSWORD)
        await asyncio.to_thread(account_rules.verify_password, accounts.dummy_hash,
                                password)
        return False
    return await asyncio.to_thread(account_rules.verify_password, found[0], password)


@router.post("/login", include_in_schema=False)
async def login(request: Request) -> Response:
    keys = await _keys(request)
    accounts = _accounts(request)
    fields = await _form(request)
    name, password = fields.get("name", ""), fields.get("password", "")
    next_path = _safe_next(fields.get("next"))
    nonce = request.cookies.get(LOGIN_COOKIE, "")
    if not nonce or not hmac.compare_digest(fields.get("csrf", "").encode(),
                                            _csrf_for(keys, "login", nonce).encode()):
        return _login_page(request, keys, status=403, name=name, next_path=next_path,
                           error="The form had expired: please log in again.")
    client = request.client.host if request.client else "unknown"
    # Names are 64 characters at most: a longer one counts as its first 65.
    throttle_keys = (f"address:{client}", f"name:{name[:65]}")
    wait = accounts.throttle.wait(*throttle_keys)
    if wait > 0:
        retry = max(1, math.ceil(wait))
        return _login_page(request, keys, status=429, name=name, next_path=next_path,
                           headers={"Retry-After": str(retry)},
                           error=f"Too many failed attempts: try again in {retry} s.")
    server = server_of(request)
    found = await _stored(server, _login_user, name) if name else None
    if not await _verify(accounts, found, password) or found is None:
        accounts.throttle.failed(*throttle_keys)
        return _login_page(request, keys, status=401, name=name, next_path=next_path,
                           error="Wrong name or password.")
    accounts.throttle.succeeded(*throttle_keys)
    password_hash, generation = found
    if await asyncio.to_thread(account_rules.needs_rehash, password_hash):
        new_hash = await asyncio.to_thread(account_rules.fresh_hash, password)
        await _stored(server, _rehash, name, password_hash, new_hash)
    response = RedirectResponse(next_path, status_code=303)
    response.set_cookie(SESSION_COOKIE, session_cookie(keys, name, generation,
                                                       time.time() + SESSION_S),
                        max_age=SESSION_S, httponly=True, samesite="lax",
                        secure=_secure(request))
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout", include_in_schema=False, dependencies=[Depends(check_csrf)])
async def logout(request: Request) -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, httponly=True, samesite="lax",
                           secure=_secure(request))
    return response


ViewerDep = Annotated[Viewer, Depends(viewer)]
"""For a route's parameter: `who: ViewerDep`."""
