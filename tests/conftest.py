"""Shared fixtures: a real Redis for the whole test session.

With TEST_REDIS_URL set, that server is used (database 15 by default, flushed before each test).
Otherwise a private redis-server is started on a unix socket in a temporary folder, with AOF on as
in production, and stopped at the end: tests never touch a Redis they did not make or were given.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis as syncredis

from confsvc.store.embedded import find_redis_server
from confsvc.store.redis import Redis, client


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    given = os.environ.get("TEST_REDIS_URL")
    if given:
        yield given
        return
    tmp = Path(tempfile.mkdtemp(prefix="confsvc-test-redis-"))
    sock = tmp / "redis.sock"
    proc = subprocess.Popen(
        [
            find_redis_server(),
            "--port", "0",
            "--unixsocket", str(sock),
            "--dir", str(tmp),
            "--appendonly", "yes",
            "--appendfsync", "always",
            "--save", "",
            "--databases", "16",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"unix://{sock}?db=15"
    deadline = time.monotonic() + 10
    while True:
        try:
            syncredis.Redis.from_url(url).ping()
            break
        except (syncredis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the test redis-server did not start") from None
            time.sleep(0.02)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    r = client(redis_url)
    await r.flushdb()
    try:
        yield r
    finally:
        await r.aclose()
