"""Site join links ``/s/<token>``: unguessable, long-lived, revocable, rotatable; stored hashed.

A site's token is HMAC(node secret, code, nonce): Redis keeps only the nonce and the token's
digest, so a copy of the store alone gives no link, while an admin (whose node holds the secret)
can always show a site its current link. Rotating draws a new nonce (the old link stops working at
once); revoking removes the digest until the next rotation.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime

from confsvc.auth import tokens
from confsvc.store import keys
from confsvc.store.redis import Redis


class SiteLinks:
    def __init__(self, redis: Redis, secret: str) -> None:
        self.redis = redis
        self.secret = secret

    def _token(self, code: str, nonce: str) -> str:
        return tokens.derive(self.secret, "site-link", code, nonce, length=32)

    async def ensure(self, codes: list[str]) -> int:
        """Give every listed site that has none a link; returns how many were made."""
        have = set(await self.redis.hkeys(keys.SITE_LINKS))
        missing = [c for c in codes if c not in have]
        for code in missing:
            await self._set(code, only_if_missing=True)
        return len(missing)

    async def _set(self, code: str, *, only_if_missing: bool = False) -> str:
        nonce = secrets.token_hex(8)
        token = self._token(code, nonce)
        entry = {"nonce": nonce, "hash": tokens.digest(token), "rotated_at": datetime.now(UTC).isoformat(timespec="seconds"), "revoked": False}
        old_raw = await self.redis.hget(keys.SITE_LINKS, code)
        if only_if_missing and old_raw:
            return ""
        async with self.redis.pipeline(transaction=True) as pipe:
            if old_raw:
                pipe.delete(keys.site_token(json.loads(old_raw)["hash"]))
            pipe.hset(keys.SITE_LINKS, code, json.dumps(entry))
            pipe.set(keys.site_token(entry["hash"]), code)
            await pipe.execute()
        return token

    async def rotate(self, code: str) -> str:
        """A new link for the site; the old one stops working now."""
        return await self._set(code)

    async def revoke(self, code: str) -> bool:
        raw = await self.redis.hget(keys.SITE_LINKS, code)
        if not raw:
            return False
        entry = json.loads(raw)
        entry["revoked"] = True
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.site_token(entry["hash"]))
            pipe.hset(keys.SITE_LINKS, code, json.dumps(entry))
            await pipe.execute()
        return True

    async def token(self, code: str) -> str | None:
        """The site's current token, or None when it has none or it is revoked."""
        raw = await self.redis.hget(keys.SITE_LINKS, code)
        if not raw:
            return None
        entry = json.loads(raw)
        if entry.get("revoked"):
            return None
        return self._token(code, entry["nonce"])

    async def tokens_for(self, codes: list[str]) -> dict[str, str | None]:
        raws = await self.redis.hmget(keys.SITE_LINKS, codes) if codes else []
        out: dict[str, str | None] = {}
        for code, raw in zip(codes, raws, strict=True):
            entry = json.loads(raw) if raw else None
            out[code] = None if not entry or entry.get("revoked") else self._token(code, entry["nonce"])
        return out

    async def resolve(self, token: str) -> str | None:
        """The site code a link token stands for, or None."""
        if not token or len(token) > 100:
            return None
        return await self.redis.get(keys.site_token(tokens.digest(token)))
