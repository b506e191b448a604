"""The Redis connection: the one store of confsvc (DESIGN §2)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from confsvc.config import Settings
from confsvc.store.embedded import DataDirBusy, EmbeddedRedis

log = logging.getLogger(__name__)

Redis = aioredis.Redis


class StoreUnavailable(RuntimeError):
    """Redis cannot be reached; the message says where and why."""


def client(url: str) -> Redis:
    return aioredis.Redis.from_url(url, decode_responses=True, health_check_interval=15)


async def connect(url: str) -> Redis:
    r = client(url)
    try:
        await r.ping()
    except (RedisError, OSError) as exc:
        await r.aclose()
        raise StoreUnavailable(f"cannot reach Redis at {url}: {exc}") from None
    return r


@dataclass
class Durability:
    appendonly: bool
    appendfsync: str

    @property
    def durable(self) -> bool:
        return self.appendonly and self.appendfsync == "always"

    @property
    def detail(self) -> str:
        if self.durable:
            return "AOF with appendfsync always"
        return (
            f"not durable: appendonly={'yes' if self.appendonly else 'no'}, appendfsync={self.appendfsync}; "
            "acknowledged attendance events may be lost if Redis crashes (set appendonly yes, appendfsync always)"
        )


async def durability(r: Redis) -> Durability:
    try:
        conf = await r.config_get("append*")
    except RedisError:  # CONFIG may be renamed or forbidden on a managed Redis
        return Durability(appendonly=False, appendfsync="unknown")
    return Durability(appendonly=conf.get("appendonly") == "yes", appendfsync=conf.get("appendfsync", "?"))


@contextlib.asynccontextmanager
async def open_store(settings: Settings, *, own: bool = True) -> AsyncIterator[Redis]:
    """Yield a connected Redis for ``settings``.

    With REDIS_URL: that server, or StoreUnavailable. Without: the data folder's embedded Redis;
    when another confsvc process owns the folder it is used as it is, else it is started here and
    stopped on exit (``own=False`` refuses to share: serve must own its Redis).
    """
    if settings.redis_url:
        r = await connect(settings.redis_url)
        try:
            yield r
        finally:
            await r.aclose()
        return
    emb = EmbeddedRedis(settings.data_dir)
    if not emb.try_lock():
        if own:
            raise DataDirBusy(
                f"the data folder {settings.data_dir} is in use by another confsvc process "
                f"(pid {emb.owner_pid()}); stop it first or choose another CONFSVC_DATA_DIR"
            )
        r = await connect(emb.url)
        try:
            yield r
        finally:
            await r.aclose()
        return
    emb.start()
    try:
        r = await connect(emb.url)
        try:
            yield r
        finally:
            await r.aclose()
    finally:
        emb.stop()


def bytes_client(r: Redis) -> Redis:
    """A client on the same server that returns bytes (for libraries that decode themselves)."""
    pool = r.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs["decode_responses"] = False
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
