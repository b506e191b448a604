"""The attendance log: one Redis Stream per briefing, written by the node that sees the events.

Writer API (for signaling and media, which call it; see also ``confsvc.attendance`` docstring)::

    log = AttendanceLog.for_store(redis, spool_path=data_dir / "attendance" / "spool.log", node="n1")
    await log.start()                       # opens the spool, flushes what a crash left, checks durability
    event_id = await log.append(briefing_id, Joined(site="HUYEN_VY", conn=conn_id, node="n1"))
    fut = log.submit(briefing_id, QualitySample(...))   # no waiting: a future that resolves when durable
    await log.close()                       # writes what is queued; unflushed events stay in the spool

``append`` returns only once the event is durable: written to Redis (whose reply, with AOF and
``appendfsync always``, comes after the fsync), or, while Redis is unreachable, written and fsynced
to the local spool. A bad event raises ``EventError`` at once and is never queued. With a full
spool ``SpoolFull`` is raised (quality samples are refused first, at 90 % of the spool, so that
joins and leaves still fit).

One writer task per log writes events in the order they were submitted. Each event gets a stable
id ``<writer>:<seq>``; a Lua script appends it only if ``seq`` is above the last sequence number
this writer appended to that stream (``keys.attendance_writers``), so a batch that is written again
(a reply lost when Redis died, a spool flush cut short by a crash) never doubles an event.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from confsvc.attendance.events import Event, QualitySample, event_id
from confsvc.attendance.spool import DEFAULT_MAX_BYTES, Spool, SpoolFull
from confsvc.store import keys
from confsvc.store.redis import Redis, durability

log = logging.getLogger(__name__)

# KEYS: stream, writers hash. ARGV: writer, seq, packed event
APPEND_ONCE = """
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq <= last then return 0 end
redis.call('XADD', KEYS[1], '*', 'e', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""

UNAVAILABLE = (RedisError, OSError, asyncio.TimeoutError)


def writer_client(redis: Redis, timeout: float = 5.0) -> Redis:
    """A client on the same server for the writer: short timeouts, no silent retries."""
    pool = redis.connection_pool
    kwargs = dict(pool.connection_kwargs)
    kwargs.update(socket_timeout=timeout, socket_connect_timeout=min(timeout, 2.0), retry=Retry(NoBackoff(), 0))
    kwargs["decode_responses"] = True
    return aioredis.Redis(connection_pool=aioredis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def split_id(event_id: str) -> tuple[str, int]:
    writer, _, seq = event_id.rpartition(":")
    return writer, int(seq)


class LogClosed(RuntimeError):
    pass


_Item = tuple[str, str, bool, "asyncio.Future[str]"]  # briefing, packed event, is a sample, ack


class AttendanceLog:
    def __init__(
        self,
        redis: Redis,
        spool_path: Path,
        *,
        node: str = "",
        spool_max_bytes: int = DEFAULT_MAX_BYTES,
        batch_max: int = 256,
        retry_min: float = 0.2,
        retry_max: float = 5.0,
        writer_id: str | None = None,
    ) -> None:
        self.redis = redis
        self._owns_client = False
        self.node = node
        self.writer = writer_id or f"{node or 'node'}.{secrets.token_hex(4)}"
        self.spool = Spool(spool_path, spool_max_bytes)
        self.batch_max = batch_max
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._seq = 0
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._script = redis.register_script(APPEND_ONCE)
        self._delay = retry_min
        self._next_try = 0.0
        self._idle = asyncio.Event()
        # live status, shown on /healthz (the dict is shared: keep its identity)
        self.state: dict[str, Any] = {
            "writer": self.writer,
            "redis": "unknown",
            "durable": None,
            "spooled": 0,  # waiting in the spool now
            "spooled_total": 0,  # ever written to the spool by this process
            "written": 0,
            "refused": 0,
            "last_error": None,
        }

    @classmethod
    def for_store(cls, redis: Redis, spool_path: Path, **kwargs: Any) -> AttendanceLog:
        """A log with its own connection to ``redis``'s server (short timeouts), closed with the log."""
        log = cls(writer_client(redis), spool_path, **kwargs)
        log._owns_client = True
        return log

    # -- life cycle -----------------------------------------------------------------------------
    async def start(self) -> None:
        self.spool.open()
        self.state["spooled"] = self.spool.pending
        try:
            d = await durability(self.redis)
            self.state["durable"] = d.durable
            if not d.durable:
                log.warning("attendance log: Redis is %s", d.detail)
        except UNAVAILABLE as exc:
            log.warning("attendance log: Redis unreachable at start (%s); events go to the spool", exc)
        self._task = asyncio.create_task(self._run(), name=f"attendance-log-{self.writer}")

    async def close(self, grace: float = 5.0) -> None:
        """Write what is queued (to Redis or the spool) and stop; spooled events wait for the next start."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), grace)
        except TimeoutError:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._task = None
        # whatever is still queued (cancelled mid-write) is failed loudly, never silently
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if not item[3].done():
                item[3].set_exception(LogClosed("the attendance log closed before the event was written"))
        self.spool.close()
        if self._owns_client:
            with contextlib.suppress(Exception):
                await self.redis.aclose()

    # -- writing --------------------------------------------------------------------------------
    def submit(self, briefing_id: str, event: Event) -> asyncio.Future[str]:
        """Queue an event; the future gives its id once it is durable. Raises EventError for a bad event."""
        if self._closing or self._task is None:
            raise LogClosed("the attendance log is not running")
        if not briefing_id or len(briefing_id) > 128:
            raise ValueError("briefing id must be 1-128 characters")
        event.check()
        self._seq += 1
        event = replace(event, id=f"{self.writer}:{self._seq}", node=event.node or self.node)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._idle.clear()
        self._queue.put_nowait((briefing_id, event.encode(), isinstance(event, QualitySample), fut))
        self._wake.set()
        return fut

    async def append(self, briefing_id: str, event: Event) -> str:
        """Append an event and return its id once it is durable (in Redis, or in the local spool)."""
        return await self.submit(briefing_id, event)

    async def wait_idle(self, within: float = 10.0) -> bool:
        """True once nothing is queued and the spool is empty (everything is in Redis)."""
        try:
            await asyncio.wait_for(self._idle.wait(), within)
            return True
        except TimeoutError:
            return False

    # -- the writer task ------------------------------------------------------------------------
    def _drain(self) -> list[_Item]:
        batch: list[_Item] = []
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        return batch

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            batch = self._drain()
            if batch:
                await self._take(batch)
            if self.spool.pending and time.monotonic() >= self._next_try:
                await self._flush_some()
            if not self._queue.empty():
                continue
            if self.spool.pending:
                wait = self._next_try - time.monotonic()
                if wait > 0:
                    if self._closing:
                        return  # closing while Redis is down: the spool keeps the rest for the next start
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
                continue
            if self._closing:
                return
            self._idle.set()
            await self._wake.wait()

    async def _take(self, batch: list[_Item]) -> None:
        try:
            await self._take_inner(batch)
        except asyncio.CancelledError:
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(LogClosed("the attendance log stopped while writing this event"))
            raise

    async def _take_inner(self, batch: list[_Item]) -> None:
        if not self.spool.pending:
            try:
                await self._write([(b, f) for b, f, _, _ in batch])
            except UNAVAILABLE as exc:
                self._down(exc)
            else:
                self._up()
                self.state["written"] += len(batch)
                for _, packed, _, fut in batch:
                    if not fut.done():
                        fut.set_result(event_id(packed))
                return
        # Redis down, or older events still waiting in the spool: keep the order, spool these too
        try:
            kept = await asyncio.to_thread(self.spool.append, [(b, f) for b, f, _, _ in batch], [s for _, _, s, _ in batch])
        except OSError as exc:
            log.error("attendance spool write failed: %s", exc)
            for *_, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.state["spooled"] = self.spool.pending
        self.state["spooled_total"] += sum(kept)
        for (_, packed, _, fut), ok in zip(batch, kept, strict=True):
            if fut.done():
                continue
            if ok:
                fut.set_result(event_id(packed))
            else:
                self.state["refused"] += 1
                fut.set_exception(
                    SpoolFull(f"the attendance spool {self.spool.path} is full; event {event_id(packed)} was not kept")
                )

    async def _write(self, items: list[tuple[str, str]]) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            for briefing, packed in items:
                writer, seq = split_id(event_id(packed))
                args = [writer, str(seq), packed]
                await self._script(
                    keys=[keys.attendance_log(briefing), keys.attendance_writers(briefing)], args=args, client=pipe
                )
            await pipe.execute()

    async def _flush_some(self) -> None:
        events = await asyncio.to_thread(self.spool.read, self.batch_max)
        if not events:
            await asyncio.to_thread(self.spool.advance, self.spool.size, self.spool.pending)
            return
        try:
            await self._write([(e.briefing, e.event) for e in events])
        except UNAVAILABLE as exc:
            self._down(exc)
            return
        await asyncio.to_thread(self.spool.advance, events[-1].end, len(events))
        self.state["written"] += len(events)
        self.state["spooled"] = self.spool.pending
        if not self.spool.pending:
            log.info("attendance spool flushed: every event is in Redis")
        self._up()

    def _down(self, exc: BaseException) -> None:
        if self.state["redis"] != "down":
            log.warning("attendance log: Redis unreachable (%s); events go to the spool %s", exc, self.spool.path)
        self.state["redis"] = "down"
        self.state["last_error"] = str(exc)[:200]
        self._next_try = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max)

    def _up(self) -> None:
        self.state["redis"] = "up"
        self._delay = self.retry_min
        self._next_try = 0.0
