"""Who is asking: web sessions, API tokens, roles, CSRF.

``auth_middleware`` puts the ``User`` (or None) at ``request[USER_KEY]``, from a Bearer API token
or the web session; handlers declare who may call them with ``@require_role(...)``.

CSRF: every browser gets a random ``csrf`` cookie (HttpOnly, SameSite=Lax); the token its forms
carry is HMAC(node secret, that cookie), so it needs no server state and no Redis round trip.
Every state-changing request without a Bearer token must carry it (form field ``_csrf`` or header
``X-CSRF-Token``), the log-in form included; Bearer requests and site links (``/s/...``, where the
token in the path is the credential) need none.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from aiohttp import web
from aiohttp_session import get_session, new_session

from confsvc.auth.accounts import Role, User
from confsvc.auth.tokens import derive, same
from confsvc.http.context import ACCOUNTS, SECRET, SETTINGS
from confsvc.http.errors import ApiError
from confsvc.store.keys import SESSION_COOKIE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

USER_KEY: web.RequestKey[User | None] = web.RequestKey("user", object)  # type: ignore[arg-type]
BEARER_KEY: web.RequestKey[bool] = web.RequestKey("bearer", bool)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_EXEMPT_PREFIXES = ("/s/", "/ws")


def current_user(request: web.Request) -> User | None:
    return request.get(USER_KEY)


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.get(BEARER_KEY, False)


CSRF_COOKIE = "csrf"
CSRF_NONCE: web.RequestKey[str] = web.RequestKey("csrf_nonce", str)


def csrf_token(request: web.Request) -> str:
    """The token for this browser's forms."""
    return derive(request.app[SECRET], "csrf", request[CSRF_NONCE])


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    user: User | None = None
    cookie_nonce = request.cookies.get(CSRF_COOKIE, "")
    fresh = len(cookie_nonce) < 20 or len(cookie_nonce) > 100
    request[CSRF_NONCE] = secrets.token_urlsafe(24) if fresh else cookie_nonce
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(401, "unauthorized", "the Authorization header must be 'Bearer <API token>'")
        user = await accounts.user_for_api_token(value.strip())
        if user is None:
            raise ApiError(401, "unauthorized", "the API token is unknown, revoked, or its account is disabled")
        request[BEARER_KEY] = True
    else:
        if request.method not in SAFE_METHODS and not request.path.startswith(CSRF_EXEMPT_PREFIXES):
            await _check_csrf(request, "" if fresh else cookie_nonce)
        if SESSION_COOKIE in request.cookies:  # no cookie: no session to load (no Redis round trip)
            session = await get_session(request)
            username = session.get("username")
            if username:
                user = await accounts.get(username)
                if user is None or user.disabled or session.get("pw") != user.password_hash[-16:]:
                    session.invalidate()  # account removed, disabled, or its password changed since login
                    user = None
    request[USER_KEY] = user
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if fresh or request[CSRF_NONCE] != cookie_nonce:
            _set_csrf_cookie(request, exc)
        raise
    if (fresh or request[CSRF_NONCE] != cookie_nonce) and not response.prepared:
        _set_csrf_cookie(request, response)
    return response


def _set_csrf_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.set_cookie(
        CSRF_COOKIE, request[CSRF_NONCE], httponly=True, samesite="Lax", path="/",
        secure=request.app[SETTINGS].cookie_secure,
    )


async def _check_csrf(request: web.Request, nonce: str) -> None:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        given = form.get(CSRF_FIELD)  # type: ignore[assignment]
    if not nonce or not isinstance(given, str) or not same(given, derive(request.app[SECRET], "csrf", nonce)):
        raise ApiError(403, "csrf", "the form's security token is missing or out of date: reload the page and try again")


def require_role(*roles: Role | str) -> Callable[[Handler], Handler]:
    """Only signed-in users with one of ``roles`` (an empty list: any signed-in user)."""
    allowed = {Role(r) for r in roles}

    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def inner(request: web.Request) -> web.StreamResponse:
            user = current_user(request)
            if user is None:
                if is_api(request):
                    raise ApiError(401, "unauthorized", "sign in or send 'Authorization: Bearer <API token>'")
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs)}")
            if allowed and user.role not in allowed:
                if is_api(request):
                    raise ApiError(403, "forbidden", f"the {user.role} role may not do this")
                raise web.HTTPForbidden(text="forbidden")
            return await handler(request)

        inner.__confsvc_roles__ = allowed  # type: ignore[attr-defined]
        return inner

    return wrap


async def log_in(request: web.Request, user: User) -> None:
    session = await new_session(request)  # a fresh session id on login (no fixation)
    session["username"] = user.username
    session["pw"] = user.password_hash[-16:]
    request[CSRF_NONCE] = secrets.token_urlsafe(24)  # and a new CSRF token
