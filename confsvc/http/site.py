"""The site's permanent link ``/s/<token>``: what a district or commune operator opens.

The page checks the hall's camera, microphone, speakers and network before joining, lists the
site's coming briefings with a countdown, and joins the open one over ``/ws?site=<token>``
(``web/static/live/``). Two small endpoints serve the network check and the page's polling:

- ``GET /s/<token>/probe?bytes=N``: N bytes that do not compress (0..4 MiB), never cached: the
  round trip (N=0) and a rough downlink throughput;
- ``GET /s/<token>/status``: the briefing open now for this site (or null) and the next one.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from confsvc.directory.model import Site
from confsvc.http import i18n
from confsvc.http.context import DIRECTORY, SITE_LINKS
from confsvc.scheduling.model import FINAL, Occurrence

routes = web.RouteTableDef()

PROBE_MAX = 4 * 1024 * 1024
_PROBE_BLOCK = os.urandom(64 * 1024)  # random: no proxy or gzip can shrink it
UPCOMING_SHOWN = 6


def js_keys(area: str) -> list[str]:
    """The catalogue keys the pages' scripts use (``<area>.js.*``), handed to them as JSON."""
    path = i18n.WEB_DIR / "i18n" / "vi" / "live.json"
    return sorted(k for k in json.loads(path.read_text(encoding="utf-8")) if k.startswith(f"{area}.js."))


SITE_JS_KEYS = js_keys("live")


async def site_for_token(request: web.Request) -> Site:
    """The site a link stands for, or a 404 page (an unknown, rotated or revoked link)."""
    code = await request.app[SITE_LINKS].resolve(request.match_info["token"])
    site = await request.app[DIRECTORY].get(code) if code else None
    if site is None:
        raise web.HTTPNotFound(reason="unknown site link")
    return site


def _briefings(request: web.Request) -> Any:
    from confsvc.http.scheduling import BRIEFINGS  # scheduling imports this module (site_for_token)

    return request.app[BRIEFINGS]


async def _upcoming(request: web.Request, code: str) -> tuple[Occurrence | None, list[Occurrence]]:
    """(the occurrence open for this site now, the coming ones in start order)."""
    svc = _briefings(request)
    now = svc.now()
    occs = [o for _, series in await svc.for_site(code) for o in series
            if o.state not in FINAL and o.ends_at > now and code in o.invited_sites]
    occs.sort(key=lambda o: o.starts_at)
    current = await svc.current_for_site(code)
    return current, [o for o in occs if current is None or o.id != current.id][:UPCOMING_SHOWN]


def _occ_json(o: Occurrence | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"id": o.id, "title": o.title, "state": str(o.state), "lobby_opens_at": o.lobby_opens_at.isoformat(),
            "starts_at": o.starts_at.isoformat(), "ends_at": o.ends_at.isoformat()}


@routes.get("/s/{token}", name="site")
@aiohttp_jinja2.template("site.html")
async def site_page(request: web.Request) -> dict[str, Any]:
    site = await site_for_token(request)
    tree = await request.app[DIRECTORY].tree()
    parent = tree.sites.get(site.parent) if site.parent else None
    current, upcoming = await _upcoming(request, site.code)
    now = _briefings(request).now()
    return {"site": site, "parent": parent, "current": current, "upcoming": upcoming, "now": now,
            "token": request.match_info["token"], "js_keys": SITE_JS_KEYS,
            "soon": now + timedelta(hours=24), "chair_name": _chair_names(tree, [current, *upcoming])}


def _chair_names(tree: Any, occs: list[Occurrence | None]) -> dict[str, str]:
    return {o.chair: (tree.sites[o.chair].name if o.chair in tree.sites else o.chair) for o in occs if o is not None}


@routes.get("/s/{token}/status")
async def site_status(request: web.Request) -> web.Response:
    site = await site_for_token(request)
    current, upcoming = await _upcoming(request, site.code)
    now: datetime = _briefings(request).now()
    return web.json_response(
        {"now": now.isoformat(), "current": _occ_json(current), "next": _occ_json(upcoming[0] if upcoming else None)},
        headers={"Cache-Control": "no-store"},
    )


@routes.get("/s/{token}/probe")
async def site_probe(request: web.Request) -> web.StreamResponse:
    await site_for_token(request)
    try:
        size = int(request.query.get("bytes", "0"))
    except ValueError:
        raise web.HTTPBadRequest(text="bytes: a whole number") from None
    if not 0 <= size <= PROBE_MAX:
        raise web.HTTPBadRequest(text=f"bytes: between 0 and {PROBE_MAX}")
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream", "Cache-Control": "no-store",
                                       "Content-Length": str(size)})
    await resp.prepare(request)
    left = size
    while left > 0:
        chunk = _PROBE_BLOCK[: min(left, len(_PROBE_BLOCK))]
        await resp.write(chunk)
        left -= len(chunk)
    await resp.write_eof()
    return resp
