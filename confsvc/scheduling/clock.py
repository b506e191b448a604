"""The lifecycle clock: opens lobbies, starts and ends briefings on time, on one node at a time.

Leadership is a Redis lock (``keys.CLOCK_LOCK``, SET NX PX with a TTL) whose value carries a
fencing token (``keys.CLOCK_FENCE``, raised on every acquisition). The leader renews it on every
tick; every transition it writes is checked inside the TRANSITION script against the lock's
current value, so a node that stalled past its TTL and lost the lock cannot write a stale state.

Catching up: the queue (``keys.SCHED_TIMELINE``) holds each unfinished occurrence under the time
of its next change; whoever leads after a restart finds everything overdue and applies the owed
transitions in order, stamped with when they were due (``catch_up`` in the event).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime

from redis.exceptions import RedisError

from confsvc.scheduling import scripts
from confsvc.scheduling.model import now_utc
from confsvc.scheduling.service import Briefings, NotLeader, StateChange
from confsvc.store import keys
from confsvc.store.redis import Redis

log = logging.getLogger(__name__)


class LifecycleClock:
    def __init__(
        self,
        redis: Redis,
        briefings: Briefings,
        node_id: str = "",
        *,
        now: Callable[[], datetime] = now_utc,
        interval: float = 1.0,
        ttl: float = 15.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        batch: int = 200,
    ) -> None:
        self.redis = redis
        self.briefings = briefings
        self.node_id = node_id or secrets.token_hex(4)
        self.now = now
        self.interval = interval
        self.ttl_ms = int(ttl * 1000)
        self.sleep = sleep
        self.batch = batch
        self.token: str | None = None  # "<node>:<fence>" while this node leads
        self._stop = asyncio.Event()
        self._renew = redis.register_script(scripts.RENEW)
        self._release = redis.register_script(scripts.RELEASE)

    @property
    def leading(self) -> bool:
        return self.token is not None

    async def acquire(self) -> bool:
        """Take the lock if it is free; True while this node leads (renewing when it already does)."""
        if self.token is not None:
            if await self._renew(keys=[keys.CLOCK_LOCK], args=[self.token, self.ttl_ms]):
                return True
            log.warning("clock: lost the lock %s", self.token)
            self.token = None
        if await self.redis.exists(keys.CLOCK_LOCK):
            return False
        fence = await self.redis.incr(keys.CLOCK_FENCE)
        token = f"{self.node_id}:{fence}"
        if await self.redis.set(keys.CLOCK_LOCK, token, nx=True, px=self.ttl_ms):
            self.token = token
            log.info("clock: leading as %s", token)
            return True
        return False

    async def release(self) -> None:
        if self.token is not None:
            await self._release(keys=[keys.CLOCK_LOCK], args=[self.token])
            self.token = None

    async def tick(self) -> list[StateChange]:
        """One pass: lead or stand by; when leading, apply every transition due now (catching up)."""
        if not await self.acquire():
            return []
        assert self.token is not None
        now = self.now()
        done: list[StateChange] = []
        seen: set[str] = set()
        while True:
            due = [oid for oid in await self.briefings.due(now, self.batch) if oid not in seen]
            if not due:
                break
            for oid in due:
                seen.add(oid)
                try:
                    done.extend(await self.briefings.advance(oid, now, self.token))
                except NotLeader:
                    log.warning("clock: fenced off while advancing %s (lock %s lost)", oid, self.token)
                    self.token = None
                    return done
                except Exception:  # one bad record must not stop every other briefing
                    log.exception("clock: could not advance %s", oid)
            if len(due) < self.batch:
                break
        return done

    async def run(self) -> None:
        self._stop = asyncio.Event()
        me = asyncio.current_task()
        while not self._stop.is_set():
            try:
                await self.tick()
            except (RedisError, OSError) as exc:
                log.warning("clock: store unavailable (%s); retrying", exc)
            except Exception:
                log.exception("clock: tick failed")
            # redis-py may turn a cancellation that lands inside a command into a connection
            # error: never let that swallow the cancel (shutdown would wait for ever)
            if me is not None and me.cancelling():
                raise asyncio.CancelledError()
            await self.sleep(self.interval)

    @contextlib.asynccontextmanager
    async def running(self, stop_timeout: float = 5.0):  # type: ignore[no-untyped-def]
        """Run in the background for the life of the block; stop it and release the lock on the way out."""
        self._stop = asyncio.Event()
        task = asyncio.create_task(self.run(), name="scheduling-clock")
        try:
            yield self
        finally:
            self._stop.set()
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=stop_timeout)
            if not done:
                log.error("clock: did not stop within %.0f s; leaving it", stop_timeout)
            elif not task.cancelled() and task.exception() is not None:
                log.error("clock: stopped with %r", task.exception())
            with contextlib.suppress(RedisError, OSError):
                await asyncio.wait_for(self.release(), stop_timeout)
