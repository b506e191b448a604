"""JSON API of the foundation: health, metrics, the directory, site links, the current user."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, generate_latest
from redis.exceptions import RedisError

from confsvc.auth.accounts import Role
from confsvc.http.authz import current_user, is_api, require_role
from confsvc.http.context import DIRECTORY, METRICS, REDIS, SETTINGS, SITE_LINKS, STATUS
from confsvc.http.errors import ApiError

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    status: dict[str, Any] = {"status": "ok", "node": request.app[SETTINGS].node}
    status.update(request.app[STATUS])
    try:
        t0 = time.perf_counter()
        await request.app[REDIS].ping()
        status["redis"] = "ok"
        status["redis_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    except (RedisError, OSError) as exc:
        status["status"] = "unavailable"
        status["redis"] = "down"
        status["reason"] = f"Redis unreachable: {exc}"
        return web.json_response(status, status=503)
    return web.json_response(status)


class FoundationMetrics:
    """The foundation's gauges, in the app's own registry (one per app: tests and apps do not collide)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("confsvc_up", "1 while the node serves", registry=registry)
        self.up.set(1)
        self.sites = Gauge("confsvc_directory_sites", "sites in the directory (-1: store unreachable)", registry=registry)
        self.redis_up = Gauge("confsvc_redis_up", "1 when Redis answers", registry=registry)


FOUNDATION_METRICS: web.AppKey[FoundationMetrics] = web.AppKey("foundation_metrics", FoundationMetrics)


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    m = request.app[FOUNDATION_METRICS]
    try:
        m.sites.set(await request.app[DIRECTORY].count())
        m.redis_up.set(1)
    except (RedisError, OSError):
        m.sites.set(-1)
        m.redis_up.set(0)
    body = generate_latest(request.app[METRICS])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


@routes.get("/api/me")
@require_role()
async def me(request: web.Request) -> web.Response:
    user = current_user(request)
    assert user is not None
    return web.json_response(user.public())


@routes.get("/api/sites")
@require_role()
async def api_sites(request: web.Request) -> web.Response:
    tree = await request.app[DIRECTORY].tree()
    q = request.query.get("q", "")
    if len(q) > 100:
        raise ApiError(400, "bad_query", "q is longer than 100 characters")
    kind = request.query.get("kind")
    if kind is not None and kind not in ("province", "district", "commune"):
        raise ApiError(400, "bad_query", f"kind {kind!r} must be province, district or commune")
    sites = [s.to_dict() for s in tree.search(q) if kind is None or str(s.kind) == kind]
    return web.json_response({"count": len(sites), "sites": sites}, dumps=_dumps)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


async def _site_code(request: web.Request) -> str:
    code = request.match_info["code"]
    if await request.app[DIRECTORY].get(code) is None:
        raise ApiError(404, "unknown_site", f"no site with code {code!r}")
    return code


@routes.get("/api/sites/{code}/link")
@require_role(Role.ADMIN, Role.ORGANIZER)
async def site_link(request: web.Request) -> web.Response:
    code = await _site_code(request)
    token = await request.app[SITE_LINKS].token(code)
    base = request.app[SETTINGS].base_url
    return web.json_response({"site": code, "url": f"{base}/s/{token}" if token else None, "revoked": token is None})


@routes.post("/api/sites/{code}/link/rotate")
@require_role(Role.ADMIN)
async def rotate_site_link(request: web.Request) -> web.StreamResponse:
    code = await _site_code(request)
    token = await request.app[SITE_LINKS].rotate(code)
    if not is_api(request) and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(f"/directory#site-{code}")
    return web.json_response({"site": code, "url": f"{request.app[SETTINGS].base_url}/s/{token}"})


@routes.post("/api/sites/{code}/link/revoke")
@require_role(Role.ADMIN)
async def revoke_site_link(request: web.Request) -> web.StreamResponse:
    code = await _site_code(request)
    await request.app[SITE_LINKS].revoke(code)
    if not is_api(request) and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(f"/directory#site-{code}")
    return web.json_response({"site": code, "url": None, "revoked": True})
