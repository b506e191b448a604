"""Accounts (admin, organizer, chair) and their API tokens, in Redis."""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from redis.exceptions import WatchError

from confsvc.auth import passwords, tokens
from confsvc.store import keys
from confsvc.store.redis import Redis


class Role(StrEnum):
    ADMIN = "admin"
    ORGANIZER = "organizer"
    CHAIR = "chair"


USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


class AccountError(ValueError):
    """Bad input for an account operation; the message says what."""


class UserExists(AccountError):
    pass


class NoSuchUser(AccountError):
    pass


@dataclass(frozen=True)
class User:
    username: str
    role: Role
    display_name: str = ""
    password_hash: str = field(default="", repr=False)
    created: str = ""
    disabled: bool = False

    @property
    def label(self) -> str:
        return self.display_name or self.username

    def to_json(self) -> str:
        d = asdict(self)
        d["role"] = str(self.role)
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: str) -> User:
        d = json.loads(raw)
        d["role"] = Role(d["role"])
        return cls(**d)

    def public(self) -> dict[str, object]:
        return {"username": self.username, "role": str(self.role), "display_name": self.display_name, "disabled": self.disabled}


def check_username(username: str) -> str:
    name = username.strip().lower()
    if not USERNAME_RE.match(name):
        raise AccountError(
            f"username {username!r} must be 2-64 characters: lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


def check_role(role: str) -> Role:
    try:
        return Role(role)
    except ValueError:
        raise AccountError(f"role {role!r} must be one of admin, organizer, chair") from None


class Accounts:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis

    async def get(self, username: str) -> User | None:
        raw = await self.redis.hget(keys.USERS, username)
        return User.from_json(raw) if raw else None

    async def all(self) -> list[User]:
        raw = await self.redis.hgetall(keys.USERS)
        return sorted((User.from_json(v) for v in raw.values()), key=lambda u: u.username)

    async def any_admin(self) -> bool:
        return any(u.role is Role.ADMIN and not u.disabled for u in await self.all())

    async def create(self, username: str, role: str, password: str, display_name: str = "") -> User:
        name = check_username(username)
        r = check_role(role)
        passwords.check_strength(password)
        user = User(
            username=name,
            role=r,
            display_name=display_name.strip()[:100],
            password_hash=passwords.hash_password(password),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        if not await self.redis.hsetnx(keys.USERS, name, user.to_json()):
            raise UserExists(f"user {name!r} already exists")
        return user

    async def _update(self, username: str, **changes: object) -> User:
        async with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(keys.USERS)
                    raw = await pipe.hget(keys.USERS, username)
                    if raw is None:
                        raise NoSuchUser(f"no user {username!r}")
                    d = json.loads(raw)
                    d.update(changes)
                    pipe.multi()
                    pipe.hset(keys.USERS, username, json.dumps(d, ensure_ascii=False))
                    await pipe.execute()
                    d["role"] = Role(d["role"])
                    return User(**d)
                except WatchError:
                    continue

    async def set_password(self, username: str, password: str) -> User:
        passwords.check_strength(password)
        return await self._update(username, password_hash=passwords.hash_password(password))

    async def set_disabled(self, username: str, disabled: bool) -> User:
        return await self._update(username, disabled=disabled)

    async def authenticate(self, username: str, password: str) -> User | None:
        """The user when the password is right and the account enabled; None otherwise (same cost either way)."""
        try:
            name = check_username(username)
        except AccountError:
            passwords.verify_password(passwords.DUMMY_HASH, password)
            return None
        user = await self.get(name)
        if user is None:
            passwords.verify_password(passwords.DUMMY_HASH, password)
            return None
        if not passwords.verify_password(user.password_hash, password) or user.disabled:
            return None
        if passwords.needs_rehash(user.password_hash):
            user = await self._update(name, password_hash=passwords.hash_password(password))
        return user

    # -- API tokens -----------------------------------------------------------------------------
    async def create_api_token(self, username: str, label: str = "") -> str:
        """A new token for scripts; printed once, stored only as its digest."""
        if await self.get(username) is None:
            raise NoSuchUser(f"no user {username!r}")
        token = tokens.API_TOKEN_PREFIX + tokens.new_token()
        h = tokens.digest(token)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.api_token(h), mapping={"username": username, "label": label[:100], "created": now})
            pipe.sadd(keys.user_api_tokens(username), h)
            await pipe.execute()
        return token

    async def user_for_api_token(self, token: str) -> User | None:
        if not token.startswith(tokens.API_TOKEN_PREFIX) or len(token) > 200:
            return None
        username = await self.redis.hget(keys.api_token(tokens.digest(token)), "username")
        if not username:
            return None
        user = await self.get(username)
        return None if user is None or user.disabled else user

    async def revoke_api_tokens(self, username: str) -> int:
        hashes = await self.redis.smembers(keys.user_api_tokens(username))
        async with self.redis.pipeline(transaction=True) as pipe:
            for h in hashes:
                pipe.delete(keys.api_token(h))
            pipe.delete(keys.user_api_tokens(username))
            await pipe.execute()
        return len(hashes)
