"""Scheduling over HTTP: the JSON API (/api/briefings...), the organizers' pages, the iCalendar files.

Thin: parse, call ``Briefings``, render. Service errors carry their HTTP status and the field
they are about; ``_api_errors`` turns them into ``{"error", "detail", "field", ...}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlparse

import aiohttp_jinja2
from aiohttp import web
from prometheus_client import Counter, Gauge

from confsvc.auth.accounts import Role, User
from confsvc.directory.model import Kind
from confsvc.directory.model import Site as DirSite
from confsvc.http.authz import current_user, require_role
from confsvc.http.context import DIRECTORY, METRICS, REDIS, SETTINGS, SITE_LINKS
from confsvc.http.errors import ApiError, read_json
from confsvc.http.site import site_for_token
from confsvc.scheduling import ical, words
from confsvc.scheduling.clock import LifecycleClock
from confsvc.scheduling.errors import BadRequest, NotFound, SchedulingError
from confsvc.scheduling.model import Briefing, Occurrence, Selection, State
from confsvc.scheduling.service import Actor, Briefings

routes = web.RouteTableDef()

BRIEFINGS: web.AppKey[Briefings] = web.AppKey("briefings", Briefings)
CLOCK: web.AppKey[LifecycleClock] = web.AppKey("scheduling_clock", LifecycleClock)
MAX_RANGE = timedelta(days=366)
EDITORS = (Role.ADMIN, Role.ORGANIZER)
CHAIRS = (Role.ADMIN, Role.CHAIR)


def setup(app: web.Application) -> None:
    """Add the Briefings service and run the lifecycle clock for the app's life."""
    settings = app[SETTINGS]
    briefings = Briefings(app[REDIS], app[DIRECTORY], settings, domain=urlparse(settings.base_url).hostname or "confsvc")
    app[BRIEFINGS] = briefings
    clock = app[CLOCK] = LifecycleClock(app[REDIS], briefings, settings.node_id)
    app.router.add_routes(routes)

    leader = Gauge("confsvc_sched_clock_leader", "1 while this node runs the briefing lifecycle clock", registry=app[METRICS])
    leader.set_function(lambda: 1.0 if clock.leading else 0.0)
    changes = Counter("confsvc_sched_transitions", "briefing state changes made on this node", ["state", "by"], registry=app[METRICS])

    async def count(change: Any) -> None:
        changes.labels(str(change.state), "clock" if change.by == "clock" else "person").inc()

    briefings.subscribe(count)

    async def clock_ctx(app: web.Application) -> AsyncIterator[None]:
        async with app[CLOCK].running():
            yield

    app.cleanup_ctx.append(clock_ctx)


def home_links(user: User | None) -> list[dict[str, str]]:
    """The home page's entry points of scheduling, per role."""
    if user is None:
        return []
    if user.role is Role.CHAIR:
        return [{"href": "/briefings", "title": "sched.home.chair.title", "text": "sched.home.chair.text"}]
    return [{"href": "/briefings/week", "title": "sched.home.title", "text": "sched.home.text"}]


def _actor(request: web.Request) -> Actor:
    user = current_user(request)
    assert user is not None
    return Actor(user.username, admin=user.role is Role.ADMIN)


def _api_errors(handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @functools.wraps(handler)
    async def inner(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except SchedulingError as exc:
            extra = {k: v for k, v in exc.body().items() if k not in ("error", "detail")}
            raise ApiError(exc.status, exc.code, exc.detail, **extra) from None

    return inner


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(obj, status=status, headers=headers, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def _briefing_json(b: Briefing, occs: list[Occurrence]) -> dict[str, Any]:
    out = b.to_dict()
    out["booked_sites"] = list(b.booked_sites)
    out["occurrences"] = [o.to_dict() for o in occs]
    out["ics"] = f"/briefings/{b.id}.ics"
    return out


def _range(request: web.Request, default_days: int = 7) -> tuple[datetime, datetime]:
    zone = request.app[SETTINGS].zone
    now = request.app[BRIEFINGS].now()

    def parse(name: str, default: datetime) -> datetime:
        raw = request.query.get(name)
        if not raw:
            return default
        try:
            dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, "bad_query", f"{name} {raw!r} is not a date or date-time (2026-11-23 or 2026-11-23T08:00)", field=name) from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=zone)).astimezone(UTC)

    frm = parse("from", now)
    to = parse("to", frm + timedelta(days=default_days))
    if to <= frm:
        raise ApiError(400, "bad_query", "to must be after from", field="to")
    if to - frm > MAX_RANGE:
        raise ApiError(400, "bad_query", "from..to spans more than a year", field="to")
    return frm, to


# --- JSON API ---------------------------------------------------------------------------------
@routes.post("/api/briefings")
@require_role(*EDITORS)
@_api_errors
async def api_create(request: web.Request) -> web.Response:
    body = await read_json(request)
    dry = request.query.get("dry_run") in ("1", "true")
    b = await request.app[BRIEFINGS].create(body, _actor(request), dry_run=dry)
    if dry:
        return _json({"ok": True, "conflicts": []})
    occs = await request.app[BRIEFINGS].occurrences(b.id)
    return _json(_briefing_json(b, occs), status=201, headers={"Location": f"/api/briefings/{b.id}"})


@routes.get("/api/briefings")
@require_role()
@_api_errors
async def api_list(request: web.Request) -> web.Response:
    frm, to = _range(request)
    occs = await request.app[BRIEFINGS].list(frm, to)
    site = request.query.get("site")
    if site:
        occs = [o for o in occs if site in o.invited_sites]
    return _json({"from": frm.isoformat(), "to": to.isoformat(), "count": len(occs), "occurrences": [o.to_dict() for o in occs]})


async def _briefing_or_404(request: web.Request) -> Briefing:
    b = await request.app[BRIEFINGS].briefing(request.match_info["id"])
    if b is None:
        raise NotFound(f"no briefing {request.match_info['id']!r}")
    return b


@routes.get("/api/briefings/{id}")
@require_role()
@_api_errors
async def api_get(request: web.Request) -> web.Response:
    b = await _briefing_or_404(request)
    return _json(_briefing_json(b, await request.app[BRIEFINGS].occurrences(b.id)))


@routes.patch("/api/briefings/{id}")
@require_role(*EDITORS)
@_api_errors
async def api_update(request: web.Request) -> web.Response:
    body = await read_json(request)
    dry = request.query.get("dry_run") in ("1", "true")
    b = await request.app[BRIEFINGS].update(request.match_info["id"], body, _actor(request), dry_run=dry)
    if dry:
        return _json({"ok": True, "conflicts": []})
    return _json(_briefing_json(b, await request.app[BRIEFINGS].occurrences(b.id)))


@routes.delete("/api/briefings/{id}")
@require_role(*EDITORS)
@_api_errors
async def api_cancel(request: web.Request) -> web.Response:
    b = await request.app[BRIEFINGS].cancel(request.match_info["id"], _actor(request))
    return _json(_briefing_json(b, await request.app[BRIEFINGS].occurrences(b.id)))


@routes.get("/api/briefings/{id}/occurrences")
@require_role()
@_api_errors
async def api_occurrences(request: web.Request) -> web.Response:
    b = await _briefing_or_404(request)
    occs = await request.app[BRIEFINGS].occurrences(b.id)
    return _json({"briefing_id": b.id, "count": len(occs), "occurrences": [o.to_dict() for o in occs]})


def _occ_id(request: web.Request) -> str:
    bid, occ = request.match_info["id"], request.match_info["occ"]
    if not occ.startswith(bid + "-"):
        raise NotFound(f"no occurrence {occ!r} in briefing {bid!r}")
    return occ


@routes.get("/api/briefings/{id}/occurrences/{occ}")
@require_role()
@_api_errors
async def api_occurrence(request: web.Request) -> web.Response:
    occ = await request.app[BRIEFINGS].get(_occ_id(request))
    if occ is None:
        raise NotFound(f"no occurrence {request.match_info['occ']!r}")
    return _json(occ.to_dict())


@routes.patch("/api/briefings/{id}/occurrences/{occ}")
@require_role(*EDITORS)
@_api_errors
async def api_move_occurrence(request: web.Request) -> web.Response:
    body = await read_json(request)
    occ = await request.app[BRIEFINGS].move_occurrence(_occ_id(request), body, _actor(request))
    return _json(occ.to_dict())


@routes.delete("/api/briefings/{id}/occurrences/{occ}")
@require_role(*EDITORS)
@_api_errors
async def api_cancel_occurrence(request: web.Request) -> web.Response:
    occ = await request.app[BRIEFINGS].cancel_occurrence(_occ_id(request), _actor(request))
    return _json(occ.to_dict())


@routes.post("/api/briefings/{id}/occurrences/{occ}/start")
@require_role(*CHAIRS)
@_api_errors
async def api_start(request: web.Request) -> web.Response:
    occ = await request.app[BRIEFINGS].start_now(_occ_id(request), _actor(request))
    return _json(occ.to_dict())


@routes.post("/api/briefings/{id}/occurrences/{occ}/end")
@require_role(*CHAIRS)
@_api_errors
async def api_end(request: web.Request) -> web.Response:
    occ = await request.app[BRIEFINGS].end_now(_occ_id(request), _actor(request))
    return _json(occ.to_dict())


# --- iCalendar --------------------------------------------------------------------------------
def _ics(body: bytes, filename: str) -> web.Response:
    return web.Response(
        body=body,
        headers={"Content-Type": "text/calendar; charset=utf-8", "Content-Disposition": f'attachment; filename="{filename}"'},
    )


def _briefing_url(request: web.Request, b: Briefing) -> str:
    return f"{request.app[SETTINGS].base_url}/briefings/{b.id}"


@routes.get("/briefings/{id}.ics")
@require_role()
async def briefing_ics(request: web.Request) -> web.Response:
    svc = request.app[BRIEFINGS]
    b = await svc.briefing(request.match_info["id"])
    if b is None:
        raise web.HTTPNotFound()
    body = ical.briefing_ics(b, await svc.occurrences(b.id), svc.zone, svc.domain, _briefing_url(request, b))
    return _ics(body, f"{b.id}.ics")


@routes.get("/briefings/{id}/occurrences/{occ}.ics")
@require_role()
async def occurrence_ics(request: web.Request) -> web.Response:
    svc = request.app[BRIEFINGS]
    b = await svc.briefing(request.match_info["id"])
    occ = await svc.get(request.match_info["occ"]) if b else None
    if b is None or occ is None or occ.briefing_id != b.id:
        raise web.HTTPNotFound()
    return _ics(ical.occurrence_ics(b, occ, svc.zone, svc.domain, _briefing_url(request, b)), f"{occ.id}.ics")


@routes.get("/s/{token}/calendar.ics")
async def site_feed(request: web.Request) -> web.Response:
    site = await site_for_token(request)
    svc = request.app[BRIEFINGS]
    base = request.app[SETTINGS].base_url
    page = f"{base}/s/{request.match_info['token']}"
    items = [(b, occs, page) for b, occs in await svc.for_site(site.code)]
    return _ics(ical.feed_ics(site.name, items, svc.zone, svc.domain), f"{site.code}.ics")


# --- pages ------------------------------------------------------------------------------------
def _local(request: web.Request, dt: datetime) -> datetime:
    return dt.astimezone(request.app[SETTINGS].zone)


@routes.get("/briefings", name="briefings")
@require_role()
@aiohttp_jinja2.template("scheduling/list.html")
async def list_page(request: web.Request) -> dict[str, Any]:
    try:
        frm, to = _range(request, default_days=31)
    except ApiError as exc:
        raise web.HTTPBadRequest(reason=exc.detail) from None
    occs = await request.app[BRIEFINGS].list(frm, to)
    tree = await request.app[DIRECTORY].tree()
    state = request.query.get("state", "")
    if state in State.__members__.values():
        occs = [o for o in occs if o.state == state]
    return {"occurrences": occs, "tree": tree, "frm": frm, "to": to, "state_filter": state, "states": [str(s) for s in State],
            "can_edit": _can_edit(request)}


def _can_edit(request: web.Request) -> bool:
    user = current_user(request)
    return user is not None and user.role in EDITORS


@routes.get("/briefings/week", name="briefings_week")
@require_role()
@aiohttp_jinja2.template("scheduling/week.html")
async def week_page(request: web.Request) -> dict[str, Any]:
    zone = request.app[SETTINGS].zone
    today = _local(request, request.app[BRIEFINGS].now()).date()
    try:
        day = date.fromisoformat(request.query["date"]) if request.query.get("date") else today
    except ValueError:
        day = today
    monday = day - timedelta(days=day.weekday())
    frm = datetime.combine(monday, time(0), tzinfo=zone).astimezone(UTC)
    to = datetime.combine(monday + timedelta(days=7), time(0), tzinfo=zone).astimezone(UTC)
    occs = await request.app[BRIEFINGS].list(frm, to)
    days = []
    for i in range(7):
        d = monday + timedelta(days=i)
        days.append({"date": d, "weekday": i, "today": d == today,
                     "items": [o for o in occs if _local(request, o.starts_at).date() == d]})
    return {"days": days, "monday": monday, "prev": monday - timedelta(days=7), "next": monday + timedelta(days=7),
            "today": today, "count": len(occs), "can_edit": _can_edit(request)}


async def _links(request: web.Request, codes: list[str]) -> dict[str, str | None]:
    user = current_user(request)
    if user is None or user.role not in EDITORS:
        return {}
    return await request.app[SITE_LINKS].tokens_for(codes)


@routes.get("/briefings/new", name="briefing_new")
@require_role(*EDITORS)
async def new_page(request: web.Request) -> web.Response:
    tree = await request.app[DIRECTORY].tree()
    now = _local(request, request.app[BRIEFINGS].now())
    start_day = now.date() + timedelta(days=(7 - now.weekday()) % 7 or 7)  # next Monday
    values = {"title": "", "agenda": "", "chair": tree.province.code if tree.province else "", "date": start_day.isoformat(),
              "start_time": "08:00", "end_time": "10:00", "lobby_minutes": request.app[SETTINGS].lobby_minutes,
              "ticked": set(tree.sites), "choices": words.Choices(repeat="weekly", weekdays=["MO"], count=10)}
    return await _render_form(request, tree, values, None)


async def _render_form(request: web.Request, tree: Any, values: dict[str, Any], b: Briefing | None, *,
                       error: SchedulingError | None = None, checked: bool = False, status: int = 200) -> web.Response:
    field_errors = {}
    if error is not None and error.field:
        field_errors[error.field.split(".")[0]] = _error_text(request, error)
    ctx = {
        "tree": tree, "v": values, "briefing": b, "error": error, "field_errors": field_errors,
        "conflicts": _group_conflicts(error.extra.get("conflicts", [])) if error is not None else [],
        "error_text": _error_text(request, error) if error is not None else "",
        "clash_sites": {c for x in (error.extra.get("conflicts", []) if error is not None else []) for c in x["sites"]},
        "checked_ok": checked and error is None, "weekdays": list(words.WEEKDAYS),
    }
    return aiohttp_jinja2.render_template("scheduling/form.html", request, ctx, status=status)


def _group_conflicts(conflicts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For the page: one row per other briefing, with every clashing date and the union of sites."""
    rows: dict[str, dict[str, Any]] = {}
    for c in conflicts:
        row = rows.setdefault(c["briefing_id"], {**c, "occurrences": [], "names": {}})
        row["occurrences"].append(c)
        row["names"].update(zip(c["sites"], c["site_names"], strict=True))
    for row in rows.values():
        row["site_names"] = sorted(row["names"].values())
    return list(rows.values())


def _error_text(request: web.Request, error: SchedulingError) -> str:
    """The error in the reader's language when the catalogue has it, else the service's detail."""
    from confsvc.app import CATALOGUES
    from confsvc.http.i18n import Translator, request_language

    if not error.key:
        return error.detail
    t = Translator(request.app[CATALOGUES], request_language(request, request.app[SETTINGS].language))
    field = (error.field or "").split(".")[0]
    key = f"sched.err.{error.key}"
    text = t(key, field=t(f"sched.field_name.{field}") if field else "", **error.params)
    return error.detail if text == key else text


def _form_values(form: Any, tree: Any) -> dict[str, Any]:
    return {
        "title": str(form.get("title", "")), "agenda": str(form.get("agenda", "")), "chair": str(form.get("chair", "")),
        "date": str(form.get("date", "")), "start_time": str(form.get("start_time", "")), "end_time": str(form.get("end_time", "")),
        "lobby_minutes": str(form.get("lobby_minutes", "")), "ticked": set(form.getall("site", [])),
    }


def _body_from_form(values: dict[str, Any], form: Any, tree: Any) -> dict[str, Any]:
    """The JSON body the API would take, from the form (raises SchedulingError naming the field)."""
    try:
        choices = words.from_form(form, list(form.getall("weekday", [])))
    except ValueError as exc:
        raise BadRequest(f"{exc.args[0]}: not a valid value", field="rrule", key="bad_repeat") from None
    values["choices"] = choices
    day = values["date"]
    body: dict[str, Any] = {
        "title": values["title"], "agenda": values["agenda"], "chair": values["chair"] or None,
        "selection": Selection.compress(values["ticked"], tree).to_dict(),
        "start": f"{day}T{values['start_time']}" if day and values["start_time"] else None,
        "end": f"{day}T{values['end_time']}" if day and values["end_time"] else None,
    }
    if not body["start"]:
        raise BadRequest("give the date and start time", field="start", key="required")
    if not body["end"]:
        raise BadRequest("give the end time", field="end", key="required")
    lobby = values["lobby_minutes"].strip() if isinstance(values["lobby_minutes"], str) else values["lobby_minutes"]
    if lobby not in ("", None):
        try:
            body["lobby_minutes"] = int(lobby)
        except ValueError:
            raise BadRequest("lobby minutes must be a whole number", field="lobby_minutes", key="not_a_number") from None
    try:
        start_day = date.fromisoformat(day)
    except ValueError:
        raise BadRequest(f"date {day!r} is not a date", field="start", key="bad_time") from None
    body["rrule"] = choices.to_rule(start_day)
    return body


@routes.post("/briefings/new")
@require_role(*EDITORS)
async def new_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    tree = await request.app[DIRECTORY].tree()
    values = _form_values(form, tree)
    check_only = form.get("action") == "check"
    try:
        body = _body_from_form(values, form, tree)
        b = await request.app[BRIEFINGS].create(body, _actor(request), dry_run=check_only)
    except SchedulingError as exc:
        values.setdefault("choices", words.Choices())
        return await _render_form(request, tree, values, None, error=exc, status=exc.status)
    if check_only:
        return await _render_form(request, tree, values, None, checked=True)
    raise web.HTTPSeeOther(f"/briefings/{b.id}")


@routes.get("/briefings/{id}/edit", name="briefing_edit")
@require_role(*EDITORS)
async def edit_page(request: web.Request) -> web.Response:
    b = await request.app[BRIEFINGS].briefing(request.match_info["id"])
    if b is None:
        raise web.HTTPNotFound()
    if not _actor(request).admin and b.organizer != _actor(request).username:
        raise web.HTTPForbidden()
    tree = await request.app[DIRECTORY].tree()
    return await _render_form(request, tree, _values_of(request, b), b)


def _values_of(request: web.Request, b: Briefing) -> dict[str, Any]:
    zone = request.app[SETTINGS].zone
    s, e = b.start.astimezone(zone), b.end.astimezone(zone)
    until = None
    if b.rrule and "UNTIL=" in b.rrule:
        stamp = words.parse_rule_parts(b.rrule)["UNTIL"]
        until = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).astimezone(zone).date()
    return {"title": b.title, "agenda": b.agenda, "chair": b.chair, "date": s.date().isoformat(),
            "start_time": s.strftime("%H:%M"), "end_time": e.strftime("%H:%M"), "lobby_minutes": b.lobby_minutes,
            "ticked": set(b.sites), "choices": words.choices_for(b.rrule, until)}


@routes.post("/briefings/{id}/edit")
@require_role(*EDITORS)
async def edit_submit(request: web.Request) -> web.StreamResponse:
    svc = request.app[BRIEFINGS]
    b = await svc.briefing(request.match_info["id"])
    if b is None:
        raise web.HTTPNotFound()
    form = await request.post()
    tree = await request.app[DIRECTORY].tree()
    values = _form_values(form, tree)
    try:
        body = _body_from_form(values, form, tree)
        old = _values_of(request, b)
        # unchanged dates are not sent: a series that has begun keeps its (past) first date
        if values["date"] == old["date"] and values["start_time"] == old["start_time"]:
            body.pop("start")
            if body.get("rrule") == b.rrule or (body.get("rrule") and _same_rule(body["rrule"], b.rrule, svc)):
                body.pop("rrule")
        if values["end_time"] == old["end_time"] and "start" not in body:
            body.pop("end")
        if "seq" in form:
            body["seq"] = int(str(form["seq"])) if str(form["seq"]).isdigit() else None
        if form.get("action") == "check":
            await svc.update(b.id, body, _actor(request), dry_run=True)
            return await _render_form(request, tree, values, b, checked=True)
        await svc.update(b.id, body, _actor(request))
    except SchedulingError as exc:
        values.setdefault("choices", words.Choices())
        return await _render_form(request, tree, values, b, error=exc, status=exc.status)
    raise web.HTTPSeeOther(f"/briefings/{b.id}")


def _same_rule(a: str, b: str | None, svc: Briefings) -> bool:
    from confsvc.scheduling.recurrence import normalize_rule

    try:
        return b is not None and normalize_rule(a, svc.zone) == b
    except SchedulingError:
        return False


@routes.get("/briefings/{id}", name="briefing")
@require_role()
@aiohttp_jinja2.template("scheduling/briefing.html")
async def briefing_page(request: web.Request) -> dict[str, Any]:
    svc = request.app[BRIEFINGS]
    b = await svc.briefing(request.match_info["id"])
    if b is None:
        raise web.HTTPNotFound()
    occs = await svc.occurrences(b.id)
    tree = await request.app[DIRECTORY].tree()
    now = svc.now()
    current = next((o for o in occs if o.state in (State.OPEN, State.LIVE)), None)
    upcoming = next((o for o in occs if o.state is State.SCHEDULED and o.ends_at > now), None)
    focus = current or upcoming or (occs[-1] if occs else None)
    invited = list(focus.invited_sites) if focus else list(b.booked_sites)
    user = current_user(request)
    assert user is not None
    return {
        "b": b, "occs": occs, "tree": tree, "focus": focus, "invited": invited,
        "presence": live_presence(request.app, focus.id) if focus is not None else {},
        "links": await _links(request, invited),
        "groups": _site_groups(tree, invited),
        "can_edit": user.role is Role.ADMIN or (user.role is Role.ORGANIZER and user.username == b.organizer),
        "can_chair": user.role in CHAIRS, "now": now,
        # the chair may start within a day of the lobby opening (the service refuses earlier)
        "startable": {o.id for o in occs if o.state in (State.SCHEDULED, State.OPEN) and o.ends_at > now
                      and o.lobby_opens_at - now <= timedelta(hours=24)},
        "rule_choices": words.choices_for(b.rrule, None) if b.rrule else None,
        "error_code": request.query.get("error", "") if request.query.get("error", "") in _ACTION_ERRORS else "",
    }


PRESENCE: web.AppKey[Any] = web.AppKey("live_presence")


def live_presence(app: web.Application, occurrence_id: str) -> dict[str, str]:
    """Each invited site's live state (connected, dropped, ...) while the occurrence runs on this
    node; empty otherwise. The signaling layer registers the reader (``PRESENCE``)."""
    reader = app.get(PRESENCE)
    return reader(occurrence_id) if reader is not None else {}


_ACTION_ERRORS = ("read_only", "bad_state", "stale", "conflict", "invalid", "bad_request")


def _site_groups(tree: Any, codes: list[str]) -> list[dict[str, Any]]:
    """Invited sites grouped by district for display (the province and unknown codes first)."""
    chosen = set(codes)
    # the province (and any site no longer in the directory, shown by its code)
    head = [tree.sites.get(c) or DirSite(c, c, Kind.COMMUNE) for c in codes if tree.district_of(c) is None]
    groups = [{"district": None, "sites": head}] if head else []
    for d in tree.districts:
        members = [s for s in [d, *tree.communes_of(d.code)] if s.code in chosen]
        if members:
            groups.append({"district": d, "sites": members, "all": 1 + len(tree.communes_of(d.code))})
    return groups


def _back(request: web.Request, b_id: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(f"/briefings/{b_id}")


@routes.post("/briefings/{id}/cancel")
@require_role(*EDITORS)
async def cancel_submit(request: web.Request) -> web.StreamResponse:
    await _form_action(request, lambda svc, actor: svc.cancel(request.match_info["id"], actor))
    raise _back(request, request.match_info["id"])


@routes.post("/briefings/{id}/occurrences/{occ}/cancel")
@require_role(*EDITORS)
async def cancel_occurrence_submit(request: web.Request) -> web.StreamResponse:
    await _form_action(request, lambda svc, actor: svc.cancel_occurrence(request.match_info["occ"], actor))
    raise _back(request, request.match_info["id"])


@routes.post("/briefings/{id}/occurrences/{occ}/move")
@require_role(*EDITORS)
async def move_occurrence_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    day, start, end = (str(form.get(k, "")).strip() for k in ("date", "start_time", "end_time"))
    body = {"start": f"{day}T{start}" if day and start else None, "end": f"{day}T{end}" if day and end else None}
    await _form_action(request, lambda svc, actor: svc.move_occurrence(request.match_info["occ"], body, actor))
    raise _back(request, request.match_info["id"])


@routes.post("/briefings/{id}/occurrences/{occ}/start")
@require_role(*CHAIRS)
async def start_submit(request: web.Request) -> web.StreamResponse:
    await _form_action(request, lambda svc, actor: svc.start_now(request.match_info["occ"], actor))
    raise _back(request, request.match_info["id"])


@routes.post("/briefings/{id}/occurrences/{occ}/end")
@require_role(*CHAIRS)
async def end_submit(request: web.Request) -> web.StreamResponse:
    await _form_action(request, lambda svc, actor: svc.end_now(request.match_info["occ"], actor))
    raise _back(request, request.match_info["id"])


async def _form_action(request: web.Request, action: Callable[[Briefings, Actor], Awaitable[Any]]) -> None:
    if not request.match_info.get("occ", request.match_info["id"] + "-").startswith(request.match_info["id"] + "-"):
        raise web.HTTPNotFound()
    try:
        await action(request.app[BRIEFINGS], _actor(request))
    except SchedulingError as exc:
        if exc.status == 404:
            raise web.HTTPNotFound() from None
        if exc.status == 403:
            raise web.HTTPForbidden() from None
        # back to the page, which says why in the reader's language
        raise web.HTTPSeeOther(f"/briefings/{request.match_info['id']}?error={exc.code}") from None
