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
from confsvc.store.redis import Redis
from confsvc.store.redis import client as redis_client


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
    r = redis_client(redis_url)
    await r.flushdb()
    try:
        yield r
    finally:
        await r.aclose()


# --- HTTP ---------------------------------------------------------------------------------------
TEST_SECRET = "test-secret-key-0123456789abcdef"
PASSWORD = "correct horse battery"


@pytest.fixture
def settings(tmp_path: Path, redis_url: str):
    from confsvc.config import Settings

    return Settings(data_dir=tmp_path / "data", redis_url=redis_url, secret_key=TEST_SECRET, admin_password=PASSWORD)


@pytest.fixture
async def app(settings, redis: Redis):
    """The whole application on the test Redis, bootstrapped (demo directory, links, admin)."""
    from confsvc.app import bootstrap, build_app

    await bootstrap(settings, redis, TEST_SECRET)
    return build_app(settings, redis, TEST_SECRET)


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)


@pytest.fixture
def login(redis: Redis):
    """``await login(client, role)``: create a user of that role (once) and sign the client in.

    Returns the username. The client keeps the session cookie; ``client.csrf`` holds the CSRF
    token to send with state-changing requests (form field ``_csrf`` or header ``X-CSRF-Token``).
    """
    import re

    from confsvc.auth.accounts import Accounts, UserExists

    async def do(client, role: str, username: str | None = None) -> str:
        username = username or f"{role}1"
        try:
            await Accounts(redis).create(username, role, PASSWORD)
        except UserExists:
            pass
        page = await client.get("/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', await page.text()).group(1)
        resp = await client.post(
            "/login", data={"username": username, "password": PASSWORD, "_csrf": token}, allow_redirects=False
        )
        assert resp.status == 303, await resp.text()
        home = await client.get("/")
        client.csrf = re.search(r'name="_csrf" value="([^"]+)"', await home.text()).group(1)
        return username

    return do


@pytest.fixture
def api_token(redis: Redis):
    """``await api_token(role)``: a Bearer token of a new user of that role."""
    from confsvc.auth.accounts import Accounts, UserExists

    async def do(role: str, username: str | None = None) -> str:
        username = username or f"{role}-bot"
        accounts = Accounts(redis)
        try:
            await accounts.create(username, role, PASSWORD)
        except UserExists:
            pass
        return await accounts.create_api_token(username)

    return do
