"""Pages: log in and out, the home page of each role, the directory, the language switch."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

import aiohttp_jinja2
from aiohttp import web
from aiohttp_session import get_session

from confsvc.auth.accounts import Role
from confsvc.directory.model import Kind
from confsvc.http import attendance, chair, i18n, scheduling
from confsvc.http.authz import current_user, log_in, require_role
from confsvc.http.context import ACCOUNTS, DIRECTORY, REDIS, SITE_LINKS
from confsvc.store import keys

routes = web.RouteTableDef()

LOGIN_WINDOW_S = 15 * 60
LOGIN_MAX_FAILURES = 10


def _safe_next(target: str | None) -> str:
    """Only a local path: no open redirect."""
    if not target:
        return "/"
    parsed = urlparse(target)
    if parsed.scheme or parsed.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


@routes.get("/login", name="login")
@aiohttp_jinja2.template("login.html")
async def login_page(request: web.Request) -> dict[str, Any]:
    if current_user(request) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    return {"next": _safe_next(request.query.get("next")), "error": None, "username": ""}


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", "")).strip().lower()[:64]
    password = str(form.get("password", ""))[:1000]
    nxt = _safe_next(str(form.get("next", "")))
    redis = request.app[REDIS]
    fail_key = keys.login_failures(username or "-")
    failures = int(await redis.get(fail_key) or 0)
    error = None
    if failures >= LOGIN_MAX_FAILURES:
        error = "login.too_many"
        status = 429
    else:
        user = await request.app[ACCOUNTS].authenticate(username, password)
        if user is not None:
            await redis.delete(fail_key)
            await log_in(request, user)
            raise web.HTTPSeeOther(nxt)
        async with redis.pipeline(transaction=True) as pipe:
            pipe.incr(fail_key)
            pipe.expire(fail_key, LOGIN_WINDOW_S)
            await pipe.execute()
        error = "login.wrong"
        status = 401
    response = aiohttp_jinja2.render_template(
        "login.html", request, {"next": nxt, "error": error, "username": username}, status=status
    )
    return response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    session.invalidate()
    raise web.HTTPSeeOther("/login")


@routes.get("/lang/{lang}", name="lang")
async def switch_language(request: web.Request) -> web.StreamResponse:
    lang = request.match_info["lang"]
    if lang not in i18n.LANGUAGES:
        raise web.HTTPNotFound()
    back = _safe_next(request.query.get("next") or urlparse(request.headers.get("Referer", "/")).path)
    resp = web.HTTPSeeOther(back)
    resp.set_cookie(i18n.COOKIE, lang, max_age=365 * 86400, samesite="Lax", httponly=True)
    raise resp


@routes.get("/", name="home")
@require_role()
@aiohttp_jinja2.template("home.html")
async def home(request: web.Request) -> dict[str, Any]:
    user = current_user(request)
    assert user is not None
    directory = request.app[DIRECTORY]
    tree = await directory.tree()
    counts = {k: sum(1 for s in tree.sites.values() if s.kind is k) for k in Kind}
    return {"role": str(user.role), "counts": counts, "total": len(tree.sites), "home_links": chair.home_links(user) + scheduling.home_links(user) + attendance.home_links(user)}


@routes.get("/directory", name="directory")
@require_role(Role.ADMIN, Role.ORGANIZER, Role.CHAIR)
@aiohttp_jinja2.template("directory.html")
async def directory_page(request: web.Request) -> dict[str, Any]:
    user = current_user(request)
    assert user is not None
    tree = await request.app[DIRECTORY].tree()
    query = request.query.get("q", "")[:100]
    matches = {s.code for s in tree.search(query)} if query else None
    links: dict[str, str | None] = {}
    if user.role is Role.ADMIN:
        links = await request.app[SITE_LINKS].tokens_for(list(tree.sites))
    province = tree.province
    groups = []
    for d in tree.districts:
        communes = [c for c in tree.communes_of(d.code) if matches is None or c.code in matches]
        if matches is None or d.code in matches or communes:
            groups.append({"district": d, "communes": communes, "all": len(tree.communes_of(d.code))})
    return {
        "province": province,
        "province_match": matches is None or (province is not None and province.code in matches),
        "groups": groups,
        "query": query,
        "found": len(matches) if matches is not None else len(tree.sites),
        "links": links,
        "is_admin": user.role is Role.ADMIN,
    }
