"""Checking what a caller asks for (JSON body or form), before anything is written. Pure logic.

Malformed input (a missing field, a wrong type, an unknown field) is a ``BadRequest`` (400);
well-formed but unacceptable values are ``Invalid`` (422). Both name the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from confsvc.directory.model import Tree
from confsvc.scheduling.errors import BadRequest, Invalid
from confsvc.scheduling.model import MAX_AGENDA, MAX_DURATION, MAX_TITLE, Selection
from confsvc.scheduling.recurrence import normalize_rule

BRIEFING_FIELDS = {"title", "agenda", "chair", "selection", "start", "end", "lobby_minutes", "rrule", "seq"}
OCCURRENCE_FIELDS = {"start", "end", "seq"}


def _str(body: Mapping[str, Any], name: str, *, required: bool, max_len: int, allow_empty: bool = False) -> str | None:
    if name not in body or body[name] is None:
        if required:
            raise BadRequest(f"{name} is required", field=name, key="required")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string", field=name)
    value = value.strip()
    if not value and not allow_empty:
        raise Invalid(f"{name} must not be empty", field=name, key="required")
    if len(value) > max_len:
        raise Invalid(f"{name} is longer than {max_len} characters", field=name, key="too_long", params={"n": max_len})
    return value


def parse_time(value: Any, name: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date-time; without an offset it is the province's local time. Returns UTC."""
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a date-time string such as 2026-11-23T08:00", field=name)
    text = value.strip().replace("Z", "+00:00").replace(" ", "T", 1)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(f"{name} {value!r} is not a date-time such as 2026-11-23T08:00", field=name, key="bad_time") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=zone)
    return dt.astimezone(UTC)


def _unknown(body: Mapping[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise BadRequest(f"unknown field {extra[0]!r}", field=extra[0])


def parse_selection(value: Any) -> Selection:
    if not isinstance(value, Mapping):
        raise BadRequest("selection must be an object {province, districts, sites}", field="selection")
    _unknown(value, {"province", "districts", "sites"})
    province = value.get("province", False)
    if not isinstance(province, bool):
        raise BadRequest("selection.province must be true or false", field="selection.province")
    lists: dict[str, tuple[str, ...]] = {}
    for name in ("districts", "sites"):
        raw = value.get(name) or []
        if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
            raise BadRequest(f"selection.{name} must be a list of site codes", field=f"selection.{name}")
        if len(raw) > 5000:
            raise Invalid(f"selection.{name} has too many entries", field=f"selection.{name}")
        lists[name] = tuple(dict.fromkeys(c.strip() for c in raw if c.strip()))
    return Selection(province, lists["districts"], lists["sites"])


@dataclass(frozen=True)
class Draft:
    """The checked fields of a create or a change (None: not given)."""

    title: str | None = None
    agenda: str | None = None
    chair: str | None = None
    selection: Selection | None = None
    sites: tuple[str, ...] | None = None  # resolved from selection
    start: datetime | None = None
    end: datetime | None = None
    lobby_minutes: int | None = None
    rrule: str | None = None
    rrule_given: bool = False
    seq: int | None = None


def parse_briefing(
    body: Mapping[str, Any], tree: Tree, zone: ZoneInfo, now: datetime, *, partial: bool = False
) -> Draft:
    """Check a create (``partial=False``: title, selection, start and end required) or a change."""
    _unknown(body, BRIEFING_FIELDS)
    title = _str(body, "title", required=not partial, max_len=MAX_TITLE)
    agenda = _str(body, "agenda", required=False, max_len=MAX_AGENDA, allow_empty=True)
    chair = _str(body, "chair", required=False, max_len=64)
    if chair is not None and chair not in tree.sites:
        raise Invalid(f"unknown chair site {chair!r}", field="chair", key="unknown_site", params={"code": chair})
    selection = sites = None
    if "selection" in body or not partial:
        if body.get("selection") is None:
            raise BadRequest("selection is required", field="selection", key="selection_empty")
        selection = parse_selection(body["selection"])
        sites = tuple(selection.resolve(tree))
    start = end = None
    for name in ("start", "end"):
        if name in body and body[name] is not None:
            value = parse_time(body[name], name, zone)
            if name == "start":
                start = value
            else:
                end = value
        elif not partial:
            raise BadRequest(f"{name} is required", field=name, key="required")
    if start is not None and start < now:
        raise Invalid("start is in the past", field="start", key="past_start")
    if start is not None and end is not None:
        check_span(start, end)
    lobby = None
    if "lobby_minutes" in body and body["lobby_minutes"] is not None:
        lobby = body["lobby_minutes"]
        if not isinstance(lobby, int) or isinstance(lobby, bool):
            raise BadRequest("lobby_minutes must be a whole number", field="lobby_minutes")
        if not 0 <= lobby <= 24 * 60:
            raise Invalid("lobby_minutes must be between 0 and 1440", field="lobby_minutes", key="lobby_range")
    rrule = None
    rrule_given = "rrule" in body
    if rrule_given and body["rrule"] not in (None, ""):
        if not isinstance(body["rrule"], str):
            raise BadRequest("rrule must be a string such as FREQ=WEEKLY;BYDAY=MO;COUNT=10, or null", field="rrule")
        rrule = normalize_rule(body["rrule"], zone)
    seq = _seq(body)
    return Draft(title, agenda, chair, selection, sites, start, end, lobby, rrule, rrule_given, seq)


def check_span(start: datetime, end: datetime, field: str = "end") -> None:
    if end <= start:
        raise Invalid("end must be after start", field=field, key="end_before_start")
    if end - start > MAX_DURATION:
        raise Invalid(f"a briefing lasts at most {MAX_DURATION // timedelta(hours=1)} hours", field=field, key="too_long_duration", params={"n": MAX_DURATION // timedelta(hours=1)})


def _seq(body: Mapping[str, Any]) -> int | None:
    if body.get("seq") is None:
        return None
    if not isinstance(body["seq"], int) or isinstance(body["seq"], bool):
        raise BadRequest("seq must be a whole number (the seq you read)", field="seq")
    return int(body["seq"])


def parse_occurrence_change(body: Mapping[str, Any], zone: ZoneInfo, now: datetime) -> Draft:
    """Moving one occurrence: a new start and/or end."""
    _unknown(body, OCCURRENCE_FIELDS)
    start = parse_time(body["start"], "start", zone) if body.get("start") is not None else None
    end = parse_time(body["end"], "end", zone) if body.get("end") is not None else None
    if start is None and end is None:
        raise BadRequest("give start and/or end to move the occurrence", field="start")
    if start is not None and start < now:
        raise Invalid("start is in the past", field="start", key="past_start")
    return Draft(start=start, end=end, seq=_seq(body))
