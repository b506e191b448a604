"""Which pages a node holds, so that a node that crashed is seen to have dropped them.

The node records each connected page (``opened``/``closed``) and beats every few seconds. When it
starts again under the same name, ``recover()`` closes what its previous run left open with a
``left`` event of reason ``dropped`` at the previous run's last heartbeat: the report shows the
drop at once, instead of after the rollups' slack.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import UTC, datetime
from typing import Any

from redis.exceptions import RedisError

from confsvc.attendance.events import LeaveReason, Left
from confsvc.store import keys
from confsvc.store.redis import Redis

log = logging.getLogger(__name__)

HEARTBEAT_S = 2.0


class Presence:
    def __init__(self, redis: Redis, node: str, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.redis = redis
        self.node = node
        self.heartbeat_s = heartbeat_s
        self._task: asyncio.Task[None] | None = None

    async def opened(self, conn: str, briefing: str, site: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.hset(keys.node_open_connections(self.node), conn, f"{briefing}|{site}|{int(time.time() * 1000)}")

    async def closed(self, conn: str) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.hdel(keys.node_open_connections(self.node), conn)

    async def recover(self, log_: Any) -> int:
        """Write ``left: dropped`` for the connections this node's previous run left open."""
        held = await self.redis.hgetall(keys.node_open_connections(self.node))
        if not held:
            return 0
        alive = await self.redis.get(keys.node_alive(self.node))
        alive_ms = int(alive) if alive else int(time.time() * 1000)
        for conn, value in held.items():
            briefing, site, opened_ms = (value.split("|") + ["0"])[:3]
            # the previous run was last seen alive then (and the page was there at least since it opened)
            at = datetime.fromtimestamp(max(alive_ms, int(opened_ms or 0)) / 1000, UTC)
            await log_.append(briefing, Left(site=site, conn=conn, reason=LeaveReason.DROPPED, at=at))
            await self.redis.hdel(keys.node_open_connections(self.node), conn)
        log.warning("closed %d connections left open by this node's previous run", len(held))
        return len(held)

    async def beat(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.redis.set(keys.node_alive(self.node), int(time.time() * 1000))

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await self.beat()
                await asyncio.sleep(self.heartbeat_s)

        self._task = asyncio.create_task(loop(), name="presence-heartbeat")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
