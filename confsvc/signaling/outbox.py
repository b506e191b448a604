"""What the server sends to one connection, without letting a slow page hold anyone up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any


class Outbox:
    """A bounded queue of encoded messages drained by one writer task.

    ``put`` never waits: a page that stops reading fills its own queue and is cut off
    (``overflowed``), while every other page goes on being served.
    """

    def __init__(self, write: Callable[[str], Awaitable[None]], limit: int = 512) -> None:
        self._write = write
        self._queue: asyncio.Queue[str | None] = asyncio.Queue(limit)
        self.overflowed = False
        self.closed = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="signaling-outbox")

    def put(self, message: dict[str, Any]) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(json.dumps(message, ensure_ascii=False, separators=(",", ":")))
            return True
        except asyncio.QueueFull:
            self.overflowed = True
            self.closed = True
            return False

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            if item is None:
                return
            try:
                await self._write(item)
            except (ConnectionError, RuntimeError):
                self.closed = True
                return

    async def close(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (for a short while), then stop."""
        self.closed = True
        task = self._task
        if task is None:
            return
        try:
            self._queue.put_nowait(None)
            await asyncio.wait_for(asyncio.shield(task), flush_timeout)
        except (asyncio.QueueFull, TimeoutError):
            task.cancel()
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if not task.done():
                task.cancel()
