"""Time-limited TURN credentials for coturn's ``use-auth-secret`` (the TURN REST API scheme)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time


def turn_credentials(secret: str, name: str, ttl: int, now: float | None = None) -> tuple[str, str]:
    """(username, credential): username is '<expiry unix time>:<name>', credential base64(HMAC-SHA1)."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{name}"
    credential = base64.b64encode(hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()).decode()
    return username, credential


def ice_servers(stun_urls: tuple[str, ...], turn_urls: tuple[str, ...], secret: str | None, ttl: int, name: str) -> list[dict[str, object]]:
    """The RTCIceServer list handed to a client."""
    servers: list[dict[str, object]] = []
    if stun_urls:
        servers.append({"urls": list(stun_urls)})
    if turn_urls and secret:
        username, credential = turn_credentials(secret, name, ttl)
        servers.append({"urls": list(turn_urls), "username": username, "credential": credential})
    return servers
