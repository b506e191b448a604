"""Secrets that stand for someone: random tokens stored only as SHA-256 digests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

API_TOKEN_PREFIX = "cst_"


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    """What is stored: a token is high-entropy, so a plain SHA-256 is enough (no slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def derive(secret: str, *parts: str, length: int = 32) -> str:
    """A deterministic, unguessable token from the node secret and some parts (HMAC-SHA256)."""
    mac = hmac.new(secret.encode(), "\x1f".join(parts).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:length]


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
