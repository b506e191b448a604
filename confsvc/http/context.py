"""Typed keys of the aiohttp Application: how handlers reach settings, the store and the services."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from confsvc.config import Settings

if TYPE_CHECKING:
    from confsvc.auth.accounts import Accounts
    from confsvc.auth.sitelinks import SiteLinks
    from confsvc.directory.service import Directory
    from confsvc.store.redis import Redis

SETTINGS: web.AppKey[Settings] = web.AppKey("settings", Settings)
REDIS: web.AppKey[Redis] = web.AppKey("redis")
DIRECTORY: web.AppKey[Directory] = web.AppKey("directory")
ACCOUNTS: web.AppKey[Accounts] = web.AppKey("accounts")
# status facts filled in at start (durability of Redis, node id, ...) for /healthz
STATUS: web.AppKey[dict[str, Any]] = web.AppKey("status", dict)
SITE_LINKS: web.AppKey[SiteLinks] = web.AppKey("site_links")
# the app's Prometheus registry: every area registers its collectors here
METRICS: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)
# the node secret (site links, CSRF tokens)
SECRET: web.AppKey[str] = web.AppKey("secret", str)
