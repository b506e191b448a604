"""Builds the aiohttp Application: wires the store, the services and the routes."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_session import setup as setup_session
from aiohttp_session.redis_storage import RedisStorage
from prometheus_client import CollectorRegistry

from confsvc.attendance.briefing import OccurrenceSource
from confsvc.auth.accounts import Accounts, Role
from confsvc.auth.sitelinks import SiteLinks
from confsvc.config import Settings
from confsvc.directory.service import Directory
from confsvc.http import admin, api, attendance, chair, i18n, pages, scheduling, site, ws
from confsvc.http.authz import CSRF_NONCE, auth_middleware, csrf_token, current_user
from confsvc.http.context import ACCOUNTS, DIRECTORY, METRICS, REDIS, SECRET, SETTINGS, SITE_LINKS, STATUS
from confsvc.http.errors import error_middleware
from confsvc.store import keys
from confsvc.store.redis import Redis, bytes_client, durability

log = logging.getLogger(__name__)

WEB_DIR = i18n.WEB_DIR
SESSION_MAX_AGE = 12 * 3600


class SecretMismatch(RuntimeError):
    pass


def resolve_secret(settings: Settings) -> str:
    """CONFSVC_SECRET_KEY, else a secret kept in the data folder (made once, mode 0600)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value + "\n")
        return value


async def check_secret(redis: Redis, secret: str) -> None:
    """Every node of one store must share one secret: site links derive from it."""
    fp = hashlib.sha256(("confsvc-fp:" + secret).encode()).hexdigest()[:32]
    if await redis.set(keys.SECRET_FINGERPRINT, fp, nx=True):
        return
    if await redis.get(keys.SECRET_FINGERPRINT) != fp:
        raise SecretMismatch(
            "this node's secret key is not the one this Redis was set up with (site links derive from it): "
            "set CONFSVC_SECRET_KEY to the same value on every node"
        )


@dataclass
class BootstrapResult:
    demo_loaded: bool
    admin_created: bool
    admin_password: str | None
    links_made: int


async def bootstrap(settings: Settings, redis: Redis, secret: str) -> BootstrapResult:
    """First-start work, safe to run on every start: demo directory, site links, the first admin."""
    await check_secret(redis, secret)
    directory = Directory(redis)
    demo = await directory.ensure_demo() if settings.demo_directory else False
    tree = await directory.tree()
    links = await SiteLinks(redis, secret).ensure(list(tree.sites))
    accounts = Accounts(redis)
    created, password = False, None
    if not await accounts.any_admin():
        password = settings.admin_password or secrets.token_urlsafe(12)
        try:
            await accounts.create("admin", Role.ADMIN, password, display_name="Quản trị")
            created = True
        except Exception:  # an "admin" that is disabled, or a race with another node
            log.exception("could not create the first admin account")
            password = None
    return BootstrapResult(demo, created, password if created and not settings.admin_password else None, links)


async def _template_context(request: web.Request) -> dict[str, Any]:
    lang = i18n.request_language(request, request.app[SETTINGS].language)
    catalogues = request.app[CATALOGUES]
    return {
        "_": i18n.Translator(catalogues, lang),
        "lang": lang,
        "user": current_user(request),
        "csrf": csrf_token(request) if CSRF_NONCE in request else "",
        "request": request,
        "base_url": request.app[SETTINGS].base_url,
    }


CATALOGUES: web.AppKey[dict[str, dict[str, str]]] = web.AppKey("catalogues", dict)


def build_app(settings: Settings, redis: Redis, secret: str) -> web.Application:
    app = web.Application(middlewares=[error_middleware], client_max_size=2 * 1024 * 1024)
    app[SETTINGS] = settings
    app[REDIS] = redis
    app[SECRET] = secret
    app[STATUS] = {}
    app[METRICS] = CollectorRegistry(auto_describe=True)
    app[DIRECTORY] = Directory(redis)
    app[ACCOUNTS] = Accounts(redis)
    app[SITE_LINKS] = SiteLinks(redis, secret)
    app[CATALOGUES] = i18n.load_catalogues()
    app[api.FOUNDATION_METRICS] = api.FoundationMetrics(app[METRICS])

    session_redis = bytes_client(redis)
    setup_session(
        app,
        RedisStorage(
            session_redis,
            cookie_name=keys.SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            httponly=True,
            samesite="Lax",
            secure=settings.cookie_secure,
        ),
    )
    app.middlewares.append(auth_middleware)

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        context_processors=[_template_context],
        autoescape=jinja2.select_autoescape(["html", "xml"]),
        undefined=jinja2.StrictUndefined,
    )
    zone = settings.zone
    env.filters["localtime"] = lambda v, fmt="%H:%M %d/%m/%Y": i18n.localtime(v, zone, fmt)

    app.router.add_routes(pages.routes)
    app.router.add_routes(api.routes)
    app.router.add_routes(site.routes)
    app.router.add_routes(admin.routes)
    scheduling.setup(app)  # /api/briefings, /briefings pages, calendars; the lifecycle clock
    attendance.setup(app, OccurrenceSource(app[scheduling.BRIEFINGS]))  # reports, exports, the node's attendance log
    app.router.add_routes(chair.routes)  # the chair's control page
    ws.setup(app)  # /ws: signaling and media (after attendance: the hub writes to its log)
    app.router.add_static("/static/", WEB_DIR / "static", name="static", append_version=True)

    app.on_startup.append(_on_startup)

    async def _close_session_redis(_: web.Application) -> None:
        await session_redis.aclose()

    app.on_cleanup.append(_close_session_redis)
    return app


async def _on_startup(app: web.Application) -> None:
    d = await durability(app[REDIS])
    app[STATUS]["durable"] = d.durable
    if not d.durable:
        app[STATUS]["durability"] = d.detail
        log.warning("Redis is %s", d.detail)
