"""Who is asking: web sessions, API tokens, roles, CSRF.

``auth_middleware`` puts the ``User`` (or None) at ``request["user"]``, from a Bearer API token or
the web session; handlers declare who may call them with ``@require_role(...)``. Every state
changing request made with a session cookie must carry the session's CSRF token (form field
``_csrf`` or header ``X-CSRF-Token``); Bearer requests and site links (``/s/...``, where the token
in the path is the credential) need none.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web
from aiohttp_session import get_session, new_session

from confsvc.auth.accounts import Role, User
from confsvc.auth.tokens import same
from confsvc.http.context import ACCOUNTS
from confsvc.http.errors import ApiError

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


async def csrf_token(request: web.Request) -> str:
    session = await get_session(request)
    token = session.get("csrf")
    if not token:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return str(token)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    accounts = request.app[ACCOUNTS]
    user: User | None = None
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
        session = await get_session(request)
        username = session.get("username")
        if username:
            user = await accounts.get(username)
            if user is None or user.disabled or session.get("pw") != user.password_hash[-16:]:
                session.invalidate()  # account removed, disabled, or its password changed since login
                user = None
        if request.method not in SAFE_METHODS and not request.path.startswith(CSRF_EXEMPT_PREFIXES):
            await _check_csrf(request, session)
    request[USER_KEY] = user
    return await handler(request)


async def _check_csrf(request: web.Request, session: Any) -> None:
    expected = session.get("csrf")
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        given = form.get(CSRF_FIELD)  # type: ignore[assignment]
    if not expected or not isinstance(given, str) or not same(given, str(expected)):
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
    session["csrf"] = secrets.token_urlsafe(32)
