"""Attendance: report pages, the JSON/CSV/XLSX API, absence reasons; the node's attendance log.

Admins see every report; an organizer sees the reports of its own briefings; nobody else.
``setup(app)`` starts the node's ``AttendanceLog`` (for signaling) and the report service.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, time, timedelta
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from prometheus_client import Gauge
from redis.exceptions import RedisError

from confsvc.attendance.briefing import BriefingInfo, BriefingSource, StaticBriefings
from confsvc.attendance.events import MAX_TEXT, EventError
from confsvc.attendance.exports import (
    GRADE_VI,
    filename,
    period_csv,
    period_filename,
    period_xlsx,
    to_csv,
    to_xlsx,
)
from confsvc.attendance.log import AttendanceLog
from confsvc.attendance.rollups import GRACE, Status
from confsvc.attendance.service import AttendanceService, NotInvited
from confsvc.attendance.timeline import render as render_timeline
from confsvc.auth.accounts import Role, User
from confsvc.http.authz import BEARER_KEY, Handler, current_user, require_role
from confsvc.http.context import DIRECTORY, METRICS, REDIS, SETTINGS, STATUS
from confsvc.http.errors import ApiError, read_json

routes = web.RouteTableDef()

ATTENDANCE: web.AppKey[AttendanceService] = web.AppKey("attendance", AttendanceService)
ATTENDANCE_LOG: web.AppKey[AttendanceLog] = web.AppKey("attendance_log", AttendanceLog)

DEFAULT_PERIOD_DAYS = 30


def setup(app: web.Application, briefings: BriefingSource | None = None) -> None:
    """Add the attendance service (reports) and, while the app runs, the node's attendance log."""
    settings = app[SETTINGS]
    app[ATTENDANCE] = AttendanceService(app[REDIS], briefings or StaticBriefings(), app[DIRECTORY].tree)
    app.router.add_routes(routes)

    async def attendance_log(app: web.Application) -> AsyncIterator[None]:
        log = AttendanceLog.for_store(
            app[REDIS], settings.data_dir / "attendance" / "spool.log", node=settings.node
        )
        await log.start()
        app[ATTENDANCE_LOG] = log
        app[STATUS]["attendance"] = log.state  # shared dict: /healthz shows it live
        _metrics(app, log)
        yield
        await log.close()

    app.cleanup_ctx.append(attendance_log)


def _metrics(app: web.Application, log: AttendanceLog) -> None:
    registry = app[METRICS]
    st = log.state
    gauges = {
        "confsvc_attendance_spooled_events": ("events waiting in the local spool for Redis", lambda: st["spooled"]),
        "confsvc_attendance_written_events": ("events this node wrote to Redis", lambda: st["written"]),
        "confsvc_attendance_refused_events": ("events refused because the spool was full", lambda: st["refused"]),
        "confsvc_attendance_redis_up": ("1 while the attendance log reaches Redis", lambda: 1 if st["redis"] != "down" else 0),
    }
    for name, (doc, fn) in gauges.items():
        if name in getattr(registry, "_names_to_collectors", {}):
            continue  # the same app started twice (tests)
        Gauge(name, doc, registry=registry).set_function(fn)


def store_errors(handler: Handler) -> Handler:
    """Redis unreachable while reading a report or recording a reason: a clear 503, not a 500."""

    @functools.wraps(handler)
    async def inner(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except (RedisError, OSError) as exc:
            raise ApiError(503, "store_unavailable", f"the store (Redis) cannot be reached: {exc}") from None

    return inner


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False)


def may_see(user: User, briefing: BriefingInfo) -> bool:
    return user.role is Role.ADMIN or (user.role is Role.ORGANIZER and briefing.organizer == user.username)


async def _briefing(request: web.Request) -> BriefingInfo:
    user = current_user(request)
    assert user is not None
    # an occurrence id, or a briefing id standing for its latest occurrence that has started
    bid = request.match_info.get("occ") or request.match_info["id"]
    briefing = await request.app[ATTENDANCE].briefing(bid)
    if briefing is None:
        raise ApiError(404, "unknown_briefing", f"no briefing with id {bid!r}")
    if not may_see(user, briefing):
        raise ApiError(403, "forbidden", "only admins and the briefing's organizer see its attendance")
    return briefing


# --- API ---------------------------------------------------------------------------------------
@routes.get("/api/briefings/{id}/attendance")
@routes.get("/api/briefings/{id}/occurrences/{occ}/attendance")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_report(request: web.Request) -> web.Response:
    briefing = await _briefing(request)
    report = await request.app[ATTENDANCE].report(briefing)
    return web.json_response(report.to_dict(), dumps=_dumps)


@routes.get("/api/briefings/{id}/attendance.csv")
@routes.get("/api/briefings/{id}/occurrences/{occ}/attendance.csv")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_csv(request: web.Request) -> web.Response:
    briefing = await _briefing(request)
    report = await request.app[ATTENDANCE].report(briefing)
    zone = request.app[SETTINGS].zone
    return _download(to_csv(report, zone), filename(report, zone, "csv"))


XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _download(body: bytes | str, name: str) -> web.Response:
    """An export as a file to save: CSV (UTF-8) or XLSX, by the name's extension."""
    if name.endswith(".xlsx"):
        resp = web.Response(body=body, content_type=XLSX_TYPE)
    else:
        resp = web.Response(body=body, content_type="text/csv", charset="utf-8")
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return resp


@routes.get("/api/briefings/{id}/attendance.xlsx")
@routes.get("/api/briefings/{id}/occurrences/{occ}/attendance.xlsx")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_xlsx(request: web.Request) -> web.Response:
    briefing = await _briefing(request)
    report = await request.app[ATTENDANCE].report(briefing)
    zone = request.app[SETTINGS].zone
    return _download(to_xlsx(report, zone), filename(report, zone, "xlsx"))


@routes.post("/api/briefings/{id}/attendance/{site}/reason")
@routes.post("/api/briefings/{id}/occurrences/{occ}/attendance/{site}/reason")
@require_role(Role.ADMIN)
@store_errors
async def record_reason(request: web.Request) -> web.StreamResponse:
    briefing = await _briefing(request)
    site = request.match_info["site"]
    form_post = request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
    if form_post:
        form = await request.post()
        reason = form.get("reason", "")
    else:
        body = await read_json(request)
        reason = body.get("reason", "")
    if not isinstance(reason, str):
        raise ApiError(400, "bad_reason", "reason must be text (empty to withdraw it)")
    if len(reason) > MAX_TEXT:
        raise ApiError(400, "bad_reason", f"reason is longer than {MAX_TEXT} characters")
    user = current_user(request)
    assert user is not None
    try:
        await request.app[ATTENDANCE].record_reason(briefing, site, reason, user.username)
    except NotInvited as exc:
        raise ApiError(404, "not_invited", str(exc)) from None
    except EventError as exc:
        raise ApiError(400, "bad_reason", str(exc)) from None
    if form_post and not request.get(BEARER_KEY, False) and "application/json" not in request.headers.get("Accept", ""):
        raise web.HTTPSeeOther(f"/briefings/{briefing.id}/attendance#site-{site}")
    report = await request.app[ATTENDANCE].report(briefing)
    row = report.row(site)
    return web.json_response(row.to_dict() if row else {}, dumps=_dumps)


def _period(request: web.Request) -> tuple[date, date, datetime, datetime]:
    """from/to (YYYY-MM-DD, local dates, both included) as UTC bounds [start, end)."""
    zone = request.app[SETTINGS].zone
    today = datetime.now(zone).date()
    try:
        d_to = date.fromisoformat(request.query["to"]) if request.query.get("to") else today
        d_from = (
            date.fromisoformat(request.query["from"])
            if request.query.get("from")
            else d_to - timedelta(days=DEFAULT_PERIOD_DAYS - 1)
        )
    except ValueError:
        raise ApiError(400, "bad_period", "from and to must be dates YYYY-MM-DD") from None
    if d_to < d_from:
        raise ApiError(400, "bad_period", "to must not be before from")
    if (d_to - d_from).days > 400:
        raise ApiError(400, "bad_period", "a period is at most 400 days")
    start = datetime.combine(d_from, time(0), zone)
    end = datetime.combine(d_to + timedelta(days=1), time(0), zone)
    return d_from, d_to, start, end


async def _site_period(request: web.Request) -> tuple[Any, date, date]:
    code = request.match_info["code"]
    if await request.app[DIRECTORY].get(code) is None:
        raise ApiError(404, "unknown_site", f"no site with code {code!r}")
    d_from, d_to, start, end = _period(request)
    user = current_user(request)
    assert user is not None
    organizer = None if user.role is Role.ADMIN else user.username
    period = await request.app[ATTENDANCE].site_period(code, start, end, organizer=organizer)
    return period, d_from, d_to


@routes.get("/api/sites/{code}/attendance")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_site_period(request: web.Request) -> web.Response:
    period, _, _ = await _site_period(request)
    return web.json_response(period.to_dict(), dumps=_dumps)


@routes.get("/api/sites/{code}/attendance.csv")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_site_period_csv(request: web.Request) -> web.Response:
    period, d_from, d_to = await _site_period(request)
    name = period_filename(period, d_from.isoformat(), d_to.isoformat(), "csv")
    return _download(period_csv(period, request.app[SETTINGS].zone), name)


@routes.get("/api/sites/{code}/attendance.xlsx")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def api_site_period_xlsx(request: web.Request) -> web.Response:
    period, d_from, d_to = await _site_period(request)
    name = period_filename(period, d_from.isoformat(), d_to.isoformat(), "xlsx")
    body = period_xlsx(period, request.app[SETTINGS].zone, d_from.strftime("%d/%m/%Y"), d_to.strftime("%d/%m/%Y"))
    return _download(body, name)


# --- pages -------------------------------------------------------------------------------------
@routes.get("/briefings/{id}/attendance", name="attendance_report")
@routes.get("/briefings/{id}/occurrences/{occ}/attendance")
@require_role(Role.ADMIN, Role.ORGANIZER)
@aiohttp_jinja2.template("attendance/report.html")
@store_errors
async def report_page(request: web.Request) -> dict[str, Any]:
    briefing = await _briefing(request)
    report = await request.app[ATTENDANCE].report(briefing)
    zone = request.app[SETTINGS].zone
    user = current_user(request)
    assert user is not None
    return {
        "report": report,
        "briefing": briefing,
        # the template passes the labels in the page's language
        "timeline": lambda labels: render_timeline(report, zone, labels),
        "is_admin": user.role is Role.ADMIN,
        "grace": int(GRACE.total_seconds() // 60),
        "Status": Status,
        "grade_vi": GRADE_VI,
    }


@routes.get("/attendance/sites/{code}", name="attendance_site")
@require_role(Role.ADMIN, Role.ORGANIZER)
@aiohttp_jinja2.template("attendance/site.html")
@store_errors
async def site_page(request: web.Request) -> dict[str, Any]:
    period, d_from, d_to = await _site_period(request)
    return {
        "period": period,
        "d_from": d_from.isoformat(),
        "d_to": d_to.isoformat(),
        "shown_from": d_from.strftime("%d/%m/%Y"),
        "shown_to": d_to.strftime("%d/%m/%Y"),
        "Status": Status,
    }


@routes.get("/attendance", name="attendance_index")
@require_role(Role.ADMIN, Role.ORGANIZER)
@aiohttp_jinja2.template("attendance/index.html")
@store_errors
async def index_page(request: web.Request) -> dict[str, Any]:
    d_from, d_to, start, end = _period(request)
    user = current_user(request)
    assert user is not None
    found = await request.app[ATTENDANCE].briefings.between(start, end)
    briefings = [b for b in found if may_see(user, b)]
    tree = await request.app[DIRECTORY].tree()
    return {
        "briefings": list(reversed(briefings)),
        "d_from": d_from.isoformat(),
        "d_to": d_to.isoformat(),
        "sites": list(tree.ordered()),
    }


@routes.get("/attendance/site")
@require_role(Role.ADMIN, Role.ORGANIZER)
@store_errors
async def site_pick(request: web.Request) -> web.StreamResponse:
    """The index page's site picker (a plain GET form) lands here."""
    code = request.query.get("code", "")
    if await request.app[DIRECTORY].get(code) is None:
        raise web.HTTPNotFound()
    query = "&".join(f"{k}={request.query[k]}" for k in ("from", "to") if request.query.get(k, "").replace("-", "").isdigit())
    raise web.HTTPSeeOther(f"/attendance/sites/{code}" + (f"?{query}" if query else ""))


def home_links(user: User | None) -> list[dict[str, str]]:
    """The home page's card for attendance (admins and organizers), for pages.home's ``home_links``."""
    if user is None or user.role not in (Role.ADMIN, Role.ORGANIZER):
        return []
    return [{"href": "/attendance", "title": "nav.attendance", "text": "attendance.home.text"}]
