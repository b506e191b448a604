"""API errors: every 4xx of the JSON API is ``{"error": <code>, "detail": <human text>}``."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class ApiError(Exception):
    """Raised by handlers and services' adapters; rendered as JSON by ``error_middleware``."""

    def __init__(self, status: int, error: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.extra = extra


def json_error(status: int, error: str, detail: str, **extra: Any) -> web.Response:
    body = {"error": error, "detail": detail, **extra}
    return web.json_response(body, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _wants_json(request: web.Request) -> bool:
    return (
        request.path.startswith("/api/")
        or request.path in ("/healthz",)
        or "application/json" in request.headers.get("Accept", "")
        or request.headers.get("Authorization", "").startswith("Bearer ")
    )


_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return json_error(exc.status, exc.error, exc.detail, **exc.extra)
    except (RedisError, OSError) as exc:
        if isinstance(exc, ConnectionResetError):
            raise
        log.warning("store unavailable while serving %s: %s", request.path, exc, exc_info=True)
        return json_error(503, "store_unavailable", "the data store is unreachable; try again in a moment")
    except web.HTTPException as exc:
        if not 400 <= exc.status < 500 or exc.content_type == "application/json":
            raise
        if _wants_json(request):
            return json_error(exc.status, _CODES.get(exc.status, "error"), exc.reason or exc.text or "")
        return await _error_page(request, exc)


async def _error_page(request: web.Request, exc: web.HTTPException) -> web.StreamResponse:
    import aiohttp_jinja2

    if aiohttp_jinja2.get_env(request.app) is None:
        raise exc
    status = exc.status if exc.status in (403, 404, 405, 429) else 404
    try:
        return aiohttp_jinja2.render_template("error.html", request, {"status": status}, status=exc.status)
    except Exception:  # never let an error page hide the error
        log.exception("error page failed")
        raise exc from None


async def read_json(request: web.Request, max_bytes: int = 256 * 1024) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx ApiError naming the problem."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise ApiError(413, "too_large", f"the body is over {max_bytes} bytes")
    raw = await request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise ApiError(413, "too_large", f"the body is over {max_bytes} bytes")
    try:
        body = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    return body
