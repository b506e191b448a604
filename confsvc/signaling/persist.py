"""The room state that outlives a node, in Redis (one JSON value per live occurrence).

The chair's decisions (floor, lock, open microphones, roll call, removed sites) and the sites'
standing wishes (hands, "low data", pins) must survive a node restart: the pages come back by
themselves, and the briefing must go on as it was, not from a blank room.

One writer task per room keeps the writes in order and never blocks a page's message: a change
marks the room dirty, the writer saves the newest state (coalescing a burst of changes into one
write). A Redis failure is logged and retried on the next change; the live room is unaffected.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from confsvc.store import keys

log = logging.getLogger(__name__)

KEEP_S = 2 * 24 * 3600  # a saved room lives two days past its last change (a briefing is shorter)


class RoomStore:
    def __init__(self, redis: Any, keep_s: int = KEEP_S) -> None:
        self.redis = redis
        self.keep_s = keep_s

    async def load(self, occurrence_id: str) -> dict[str, Any] | None:
        raw = await self.redis.get(keys.live_room(occurrence_id))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            log.warning("saved room of %s is not JSON: ignored", occurrence_id)
            return None
        return value if isinstance(value, dict) else None

    async def save(self, occurrence_id: str, state: dict[str, Any]) -> None:
        await self.redis.set(keys.live_room(occurrence_id), json.dumps(state, separators=(",", ":")), ex=self.keep_s)


class Saver:
    """Writes one room's durable state after each change, in order, never two at a time.

    No long-lived task: a change starts a writer when none runs; the writer saves until the state
    it wrote is the newest, then ends. ``close`` waits for it and writes what is left."""

    def __init__(self, store: RoomStore, occurrence_id: str, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.store = store
        self.id = occurrence_id
        self.snapshot = snapshot
        self._last: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self.failures = 0

    def prime(self, saved: dict[str, Any]) -> None:
        """What Redis holds already (nothing to write until it changes)."""
        self._last = saved

    def changed(self) -> None:
        """Maybe changed: a writer compares and saves when it did."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"room-save-{self.id}")

    async def _run(self) -> None:
        while await self._write():
            pass

    async def _write(self) -> bool:
        """Save the state if it differs from the last saved; True when something was written."""
        state = self.snapshot()
        if state == self._last:
            return False
        try:
            await self.store.save(self.id, state)
        except Exception as exc:  # noqa: BLE001 - Redis down: the live room goes on, the next change retries
            self.failures += 1
            log.warning("room state of %s not saved: %s", self.id, exc)
            return False
        self._last = state
        return True

    async def close(self, timeout: float = 2.0) -> None:  # noqa: ASYNC109
        """Wait for the writer (bounded), then write what is not written yet."""
        task, self._task = self._task, None
        if task is not None and not task.done():
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                task.cancel()
                return
        await self._write()
