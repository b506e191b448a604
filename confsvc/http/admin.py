"""Admin pages: accounts."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from confsvc.auth.accounts import AccountError, Role
from confsvc.auth.passwords import WeakPassword
from confsvc.http.authz import current_user, require_role
from confsvc.http.context import ACCOUNTS

routes = web.RouteTableDef()


async def _users_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    users = await request.app[ACCOUNTS].all()
    ctx: dict[str, Any] = {"users": users, "roles": [str(r) for r in Role], "error": None, "created": None, "form": {}}
    ctx.update(extra)
    return ctx


@routes.get("/admin/users", name="admin_users")
@require_role(Role.ADMIN)
@aiohttp_jinja2.template("admin/users.html")
async def users_page(request: web.Request) -> dict[str, Any]:
    return await _users_context(request, created=request.query.get("created"))


@routes.post("/admin/users")
@require_role(Role.ADMIN)
async def users_create(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    values = {k: str(form.get(k, "")) for k in ("username", "role", "display_name", "password")}
    try:
        user = await request.app[ACCOUNTS].create(values["username"], values["role"], values["password"], values["display_name"])
    except (AccountError, WeakPassword) as exc:
        values.pop("password")
        ctx = await _users_context(request, error=str(exc), form=values)
        return aiohttp_jinja2.render_template("admin/users.html", request, ctx, status=422)
    raise web.HTTPSeeOther(f"/admin/users?created={user.username}")


@routes.post("/admin/users/{username}/disable")
@require_role(Role.ADMIN)
async def users_toggle(request: web.Request) -> web.StreamResponse:
    username = request.match_info["username"]
    me = current_user(request)
    form = await request.post()
    enable = form.get("enable") == "1"
    if me is not None and me.username == username and not enable:
        raise web.HTTPUnprocessableEntity(text="you cannot disable your own account")
    accounts = request.app[ACCOUNTS]
    try:
        await accounts.set_disabled(username, not enable)
    except AccountError:
        raise web.HTTPNotFound() from None
    if not enable:
        await accounts.revoke_api_tokens(username)
    raise web.HTTPSeeOther("/admin/users")
