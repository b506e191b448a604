"""The chair's control page: ``/briefings/<occurrence id>/control`` (chair or admin).

The page is rendered with every invited site's row already in place (grouped by district), then
kept live by the signaling socket ``/ws?briefing=<occurrence id>`` (``web/static/live/chair.js``).
``/control`` sends a chair to the briefing that is open now (or the next one today).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from confsvc.auth.accounts import Role, User
from confsvc.http.authz import require_role
from confsvc.http.context import DIRECTORY
from confsvc.http.scheduling import BRIEFINGS
from confsvc.http.site import js_keys
from confsvc.scheduling.model import FINAL, State

routes = web.RouteTableDef()
CHAIRS = (Role.CHAIR, Role.ADMIN)
CHAIR_JS_KEYS = js_keys("live")


def home_links(user: User | None) -> list[dict[str, str]]:
    if user is None or user.role not in CHAIRS:
        return []
    return [{"href": "/control", "title": "chair.home.title", "text": "chair.home.text"}]


@routes.get("/control", name="control_now")
@require_role(*CHAIRS)
async def control_now(request: web.Request) -> web.StreamResponse:
    svc = request.app[BRIEFINGS]
    now = svc.now()
    occs = [o for o in await svc.list(now - timedelta(hours=12), now + timedelta(hours=24)) if o.state not in FINAL and o.ends_at > now]
    live = [o for o in occs if o.state in (State.LIVE, State.OPEN) or o.lobby_opens_at <= now]
    pick = (live or occs or [None])[0]
    if pick is None:
        raise web.HTTPSeeOther("/briefings")
    raise web.HTTPSeeOther(f"/briefings/{pick.id}/control")


@routes.get("/briefings/{occ}/control", name="control")
@require_role(*CHAIRS)
@aiohttp_jinja2.template("chair/control.html")
async def control_page(request: web.Request) -> dict[str, Any]:
    svc = request.app[BRIEFINGS]
    occ = await svc.get(request.match_info["occ"])
    if occ is None:
        raise web.HTTPNotFound()
    tree = await request.app[DIRECTORY].tree()
    invited = set(occ.invited_sites)
    groups = []
    loose = [c for c in occ.invited_sites if c != occ.chair and tree.district_of(c) is None]
    if loose:
        groups.append({"code": "", "name": "", "sites": [tree.sites.get(c) or _Unknown(c) for c in loose]})
    for d in tree.districts:
        members = [s for s in [d, *tree.communes_of(d.code)] if s.code in invited and s.code != occ.chair]
        if members:
            groups.append({"code": d.code, "name": d.name, "sites": members})
    chair = tree.sites.get(occ.chair)
    return {"occ": occ, "groups": groups, "chair_name": chair.name if chair else occ.chair,
            "total": sum(len(g["sites"]) for g in groups), "js_keys": CHAIR_JS_KEYS,
            "now": svc.now()}


class _Unknown:
    """A site invited when the occurrence froze that has since left the directory."""

    def __init__(self, code: str) -> None:
        self.code = code
        self.name = code
        self.kind = "commune"
