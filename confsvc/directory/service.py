"""The directory in Redis: the site tree, loaded whole and replaced whole."""

from __future__ import annotations

import json
from importlib import resources

from redis.exceptions import WatchError

from confsvc.directory.model import Site, Tree, parse_csv
from confsvc.store import keys
from confsvc.store.redis import Redis


def demo_csv() -> str:
    """The demo directory shipped in the package: Yên Bái, 183 sites."""
    return resources.files("confsvc.directory").joinpath("data/yenbai.csv").read_text(encoding="utf-8")


class Directory:
    """Reads the tree from Redis, cached per version; imports replace it atomically."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._cache: tuple[str | None, Tree] | None = None

    async def tree(self) -> Tree:
        version = await self.redis.get(keys.SITES_VERSION)
        if self._cache is not None and self._cache[0] == version and version is not None:
            return self._cache[1]
        # read version and content together so the cache never pairs an old tree with a new version
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.get(keys.SITES_VERSION)
            pipe.hgetall(keys.SITES)
            version, raw = await pipe.execute()
        tree = Tree.build(Site.from_dict(json.loads(v)) for v in raw.values())
        self._cache = (version, tree)
        return tree

    async def get(self, code: str) -> Site | None:
        raw = await self.redis.hget(keys.SITES, code)
        return Site.from_dict(json.loads(raw)) if raw else None

    async def count(self) -> int:
        return int(await self.redis.hlen(keys.SITES))

    async def replace(self, sites: list[Site]) -> int:
        """Replace the whole directory in one MULTI/EXEC: all rows or none."""
        mapping = {s.code: json.dumps(s.to_dict(), ensure_ascii=False) for s in sites}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.SITES)
            if mapping:
                pipe.hset(keys.SITES, mapping=mapping)
            pipe.incr(keys.SITES_VERSION)
            await pipe.execute()
        self._cache = None
        return len(sites)

    async def import_csv(self, text: str) -> int:
        """Validate the whole file (DirectoryError lists every bad row), then replace. Nothing is written on error."""
        return await self.replace(parse_csv(text))

    async def ensure_demo(self) -> bool:
        """Load the demo directory when the store has none. True when it was loaded now."""
        if await self.redis.exists(keys.SITES):
            return False
        sites = parse_csv(demo_csv())
        mapping = {s.code: json.dumps(s.to_dict(), ensure_ascii=False) for s in sites}
        # HSETNX-like guard for two nodes starting at once: only the first writer loads
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                await pipe.watch(keys.SITES)
                if await pipe.exists(keys.SITES):
                    return False
                pipe.multi()
                pipe.hset(keys.SITES, mapping=mapping)
                pipe.incr(keys.SITES_VERSION)
                await pipe.execute()
        except WatchError:
            return False
        self._cache = None
        return True
