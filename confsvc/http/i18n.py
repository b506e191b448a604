"""The message catalogue: Vietnamese by default, English on a switch.

Catalogue files are ``web/i18n/<lang>/<area>.json`` (flat key -> text), merged per language at
start. Templates call ``_("key", name=...)``; a key missing from a language falls back to
Vietnamese, then to the key itself (and a test checks that no key is missing).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from aiohttp import web

LANGUAGES = ("vi", "en")
DEFAULT = "vi"
COOKIE = "lang"

WEB_DIR = Path(__file__).resolve().parent.parent.parent / "web"


def load_catalogues(root: Path = WEB_DIR / "i18n") -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for lang in LANGUAGES:
        merged: dict[str, str] = {}
        for f in sorted((root / lang).glob("*.json")):
            merged.update(json.loads(f.read_text(encoding="utf-8")))
        out[lang] = merged
    return out


class Translator:
    def __init__(self, catalogues: dict[str, dict[str, str]], lang: str) -> None:
        self.lang = lang if lang in catalogues else DEFAULT
        self._primary = catalogues.get(self.lang, {})
        self._fallback = catalogues.get(DEFAULT, {})

    def __call__(self, key: str, **kwargs: object) -> str:
        text = self._primary.get(key) or self._fallback.get(key) or key
        return text.format(**kwargs) if kwargs else text


def request_language(request: web.Request, default: str = DEFAULT) -> str:
    lang = request.query.get("lang") or request.cookies.get(COOKIE) or default
    return lang if lang in LANGUAGES else default


def localtime(value: datetime | str | None, zone: ZoneInfo, fmt: str = "%H:%M %d/%m/%Y") -> str:
    """A UTC time (datetime or ISO string) shown in the site's zone."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(zone).strftime(fmt)
