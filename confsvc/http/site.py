"""The site's permanent link ``/s/<token>``: what a district or commune operator opens."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from confsvc.directory.model import Site
from confsvc.http.context import DIRECTORY, SITE_LINKS

routes = web.RouteTableDef()


async def site_for_token(request: web.Request) -> Site:
    """The site a link stands for, or a 404 page (an unknown, rotated or revoked link)."""
    code = await request.app[SITE_LINKS].resolve(request.match_info["token"])
    site = await request.app[DIRECTORY].get(code) if code else None
    if site is None:
        raise web.HTTPNotFound(reason="unknown site link")
    return site


@routes.get("/s/{token}", name="site")
@aiohttp_jinja2.template("site.html")
async def site_page(request: web.Request) -> dict[str, Any]:
    site = await site_for_token(request)
    tree = await request.app[DIRECTORY].tree()
    parent = tree.sites.get(site.parent) if site.parent else None
    return {"site": site, "parent": parent}
