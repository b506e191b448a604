"""Settings: one dataclass, read from environment variables and an optional TOML file.

Environment variables win over the TOML file (``CONFSVC_CONFIG=/etc/confsvc.toml``), which wins
over the defaults. Every value is checked here, so that a bad one is a one-line error before
anything starts.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


# the environment variable of each setting
ENV_VARS: dict[str, str] = {
    "host": "CONFSVC_HOST",
    "port": "CONFSVC_PORT",
    "data_dir": "CONFSVC_DATA_DIR",
    "redis_url": "REDIS_URL",
    "public_url": "CONFSVC_PUBLIC_URL",
    "secret_key": "CONFSVC_SECRET_KEY",
    "timezone": "CONFSVC_TIMEZONE",
    "language": "CONFSVC_LANGUAGE",
    "node_id": "CONFSVC_NODE_ID",
    "ice_addresses": "CONFSVC_ICE_ADDRESSES",
    "stun_urls": "CONFSVC_STUN_URLS",
    "turn_urls": "CONFSVC_TURN_URLS",
    "turn_secret": "CONFSVC_TURN_SECRET",
    "turn_ttl": "CONFSVC_TURN_TTL",
    "admin_password": "CONFSVC_ADMIN_PASSWORD",
    "lobby_minutes": "CONFSVC_LOBBY_MINUTES",
    "log_level": "CONFSVC_LOG_LEVEL",
    "demo_directory": "CONFSVC_DEMO_DIRECTORY",
    "cookie_secure": "CONFSVC_COOKIE_SECURE",
}


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    data_dir: Path = Path("data")
    redis_url: str | None = None
    public_url: str = ""
    secret_key: str | None = None
    timezone: str = "Asia/Ho_Chi_Minh"
    language: str = "vi"
    node_id: str = ""
    # ICE: the addresses the node announces in its candidates (DESIGN §7), and the servers handed to clients.
    ice_addresses: tuple[str, ...] = ("127.0.0.1",)
    stun_urls: tuple[str, ...] = ()
    turn_urls: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl: int = 86400
    admin_password: str | None = None
    lobby_minutes: int = 60
    log_level: str = "INFO"
    demo_directory: bool = True
    cookie_secure: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def node(self) -> str:
        """This node's name: CONFSVC_NODE_ID, else host name and port."""
        return self.node_id or f"{socket.gethostname()}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"

    @property
    def redis_socket(self) -> Path:
        """Unix socket of the embedded Redis."""
        return self.data_dir / "redis" / "redis.sock"

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        toml_path = env.get("CONFSVC_CONFIG")
        if toml_path:
            try:
                with open(toml_path, "rb") as fh:
                    doc = tomllib.load(fh)
            except OSError as exc:
                raise ConfigError(f"CONFSVC_CONFIG: cannot read {toml_path}: {exc.strerror}") from None
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"CONFSVC_CONFIG: {toml_path} is not valid TOML: {exc}") from None
            section = doc.get("confsvc", doc)
            names = {f.name for f in dataclasses.fields(cls)}
            for key, value in section.items():
                if key not in names:
                    raise ConfigError(f"CONFSVC_CONFIG: unknown setting {key!r} in {toml_path}")
                raw[key] = value if not isinstance(value, list) else ",".join(map(str, value))
        for name, var in ENV_VARS.items():
            if env.get(var, "") != "":
                raw[name] = env[var]
        return cls._parse(raw)

    @classmethod
    def _parse(cls, raw: Mapping[str, Any]) -> Settings:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in raw:
                out[f.name] = _convert(f.name, ENV_VARS[f.name], raw[f.name])
        settings = cls(**out)
        settings._check(ENV_VARS)
        return settings

    def _check(self, names: Mapping[str, str]) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{names['port']}: {self.port} is not a port (1-65535)")
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"{names['timezone']}: unknown time zone {self.timezone!r}") from None
        if self.language not in ("vi", "en"):
            raise ConfigError(f"{names['language']}: {self.language!r} is not one of vi, en")
        if self.redis_url is not None:
            scheme = urlparse(self.redis_url).scheme
            if scheme not in ("redis", "rediss", "unix"):
                raise ConfigError(f"REDIS_URL: {self.redis_url!r} is not a redis://, rediss:// or unix:// URL")
        if self.public_url and urlparse(self.public_url).scheme not in ("http", "https"):
            raise ConfigError(f"{names['public_url']}: {self.public_url!r} is not an http(s) URL")
        for addr in self.ice_addresses:
            try:
                ipaddress.ip_address(addr)
            except ValueError:
                raise ConfigError(f"{names['ice_addresses']}: {addr!r} is not an IP address") from None
        for url in self.stun_urls + self.turn_urls:
            if not url.startswith(("stun:", "stuns:", "turn:", "turns:")):
                raise ConfigError(f"ICE server {url!r} must start with stun:, stuns:, turn: or turns:")
        if self.turn_urls and not self.turn_secret:
            raise ConfigError(f"{names['turn_secret']}: required when {names['turn_urls']} is set")
        if self.turn_ttl < 60:
            raise ConfigError(f"{names['turn_ttl']}: {self.turn_ttl} s is too short (at least 60)")
        if not 0 <= self.lobby_minutes <= 24 * 60:
            raise ConfigError(f"{names['lobby_minutes']}: {self.lobby_minutes} is not between 0 and 1440")
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(f"{names['log_level']}: {self.log_level!r} is not DEBUG, INFO, WARNING or ERROR")


_INT = {"port", "turn_ttl", "lobby_minutes"}
_BOOL = {"demo_directory", "cookie_secure"}
_LIST = {"ice_addresses", "stun_urls", "turn_urls"}


def _convert(name: str, var: str, value: Any) -> Any:
    if name in _INT:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{var}: {value!r} is not a whole number") from None
    if name in _BOOL:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{var}: {value!r} is not a yes/no value (1, 0, true, false)")
    if name in _LIST:
        return _split(str(value))
    if name == "data_dir":
        return Path(str(value)).expanduser()
    return str(value)
