"""RFC 5545 recurrence: checking a rule and expanding a briefing into occurrences. Pure logic.

Rules are expanded with dateutil in the province's wall-clock time: "weekly on Monday at 08:00"
stays at 08:00 local even across a DST change (Vietnam has none, but the zone is a setting).
A rule must end (COUNT or UNTIL) within a year of the first occurrence, repeat at most daily,
and take its time of day from the start (no BYHOUR/BYMINUTE/BYSECOND).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from dateutil.rrule import rrule, rrulestr

from confsvc.scheduling.errors import Invalid
from confsvc.scheduling.model import (
    FINAL,
    MAX_SERIES_SPAN,
    Briefing,
    Occurrence,
    State,
    occurrence_id,
)

FREQS = ("DAILY", "WEEKLY", "MONTHLY", "YEARLY")
ALLOWED_PARTS = {"FREQ", "INTERVAL", "COUNT", "UNTIL", "BYDAY", "BYMONTHDAY", "BYMONTH", "BYSETPOS", "WKST", "BYYEARDAY", "BYWEEKNO"}
MAX_COUNT = 366
FIELD = "rrule"


def _parts(text: str) -> dict[str, str]:
    text = text.strip()
    if text.upper().startswith("RRULE:"):
        text = text[6:]
    if not text or len(text) > 500:
        raise Invalid("the recurrence rule is empty or longer than 500 characters", field=FIELD)
    parts: dict[str, str] = {}
    for chunk in text.split(";"):
        if not chunk:
            continue
        name, eq, value = chunk.partition("=")
        name = name.strip().upper()
        if not eq or not value.strip():
            raise Invalid(f"rule part {chunk!r} must be NAME=VALUE", field=FIELD)
        if name not in ALLOWED_PARTS:
            if name in ("BYHOUR", "BYMINUTE", "BYSECOND"):
                raise Invalid(f"{name} is not allowed: the time of day comes from the start", field=FIELD)
            raise Invalid(f"unknown or unsupported rule part {name!r}", field=FIELD)
        if name in parts:
            raise Invalid(f"rule part {name} is given twice", field=FIELD)
        parts[name] = value.strip().upper()
    if "FREQ" not in parts:
        raise Invalid("the rule needs FREQ (DAILY, WEEKLY, MONTHLY or YEARLY)", field=FIELD)
    if parts["FREQ"] not in FREQS:
        raise Invalid(f"FREQ={parts['FREQ']} is not allowed: use DAILY, WEEKLY, MONTHLY or YEARLY", field=FIELD)
    if "COUNT" in parts and "UNTIL" in parts:
        raise Invalid("give COUNT or UNTIL, not both", field=FIELD)
    if "COUNT" not in parts and "UNTIL" not in parts:
        raise Invalid("the series must end: add COUNT=n or UNTIL=date (at most a year)", field=FIELD, key="rule_unbounded")
    if "COUNT" in parts:
        if not parts["COUNT"].isdigit() or not 1 <= int(parts["COUNT"]) <= MAX_COUNT:
            raise Invalid(f"COUNT must be a whole number from 1 to {MAX_COUNT}", field=FIELD, key="rule_count", params={"n": MAX_COUNT})
    if "INTERVAL" in parts and (not parts["INTERVAL"].isdigit() or not 1 <= int(parts["INTERVAL"]) <= 366):
        raise Invalid("INTERVAL must be a whole number from 1 to 366", field=FIELD)
    return parts


def _until_utc(value: str, zone: ZoneInfo) -> datetime:
    """UNTIL as UTC: a UTC stamp as given; a local date or date-time in the province's zone (a date: that whole day)."""
    try:
        if value.endswith("Z"):
            return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        if "T" in value:
            return datetime.strptime(value, "%Y%m%dT%H%M%S").replace(tzinfo=zone).astimezone(UTC)
        day = datetime.strptime(value, "%Y%m%d").date()
    except ValueError:
        raise Invalid(f"UNTIL={value} is not a date (YYYYMMDD) or a UTC time (YYYYMMDDTHHMMSSZ)", field=FIELD) from None
    return datetime.combine(day, time(23, 59, 59), tzinfo=zone).astimezone(UTC)


def normalize_rule(text: str, zone: ZoneInfo) -> str:
    """The rule in canonical form (parts in a fixed order, UNTIL in UTC), or Invalid naming the problem."""
    parts = _parts(text)
    if "UNTIL" in parts:
        parts["UNTIL"] = _until_utc(parts["UNTIL"], zone).strftime("%Y%m%dT%H%M%SZ")
    order = ["FREQ", "INTERVAL", "COUNT", "UNTIL", "BYMONTH", "BYWEEKNO", "BYYEARDAY", "BYMONTHDAY", "BYDAY", "BYSETPOS", "WKST"]
    canon = ";".join(f"{k}={parts[k]}" for k in order if k in parts)
    # let dateutil judge the values (BYDAY=XX, BYMONTHDAY=40, ...)
    try:
        rrulestr("RRULE:" + canon, dtstart=datetime(2026, 1, 5, 8, 0, tzinfo=UTC))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise Invalid(f"invalid recurrence rule: {exc}", field=FIELD) from None
    return canon


def _rule(canon: str, first_local: datetime) -> rrule:
    r = rrulestr("RRULE:" + canon, dtstart=first_local)
    assert isinstance(r, rrule)
    return r


def rule_starts(canon: str, start: datetime, zone: ZoneInfo, limit: int = MAX_COUNT + 1) -> list[datetime]:
    """The UTC starts a rule gives from ``start`` (its local wall time), at most ``limit``."""
    local = start.astimezone(zone)
    out: list[datetime] = []
    for dt in _rule(canon, local):
        out.append(dt.astimezone(UTC))
        if len(out) >= limit:
            break
    return out


@dataclass(frozen=True)
class SeriesCheck:
    first_start: datetime  # the first occurrence (the first instance of the rule on or after the asked start)
    starts: list[datetime]


def check_series(canon: str, start: datetime, duration: timedelta, lobby: timedelta, zone: ZoneInfo) -> SeriesCheck:
    """Expand a new or changed rule and check it: not empty, within a year, no self-overlap."""
    starts = rule_starts(canon, start, zone)
    if not starts:
        raise Invalid("the rule gives no occurrence on or after the start (check UNTIL and BYDAY)", field=FIELD, key="rule_empty")
    if len(starts) > MAX_COUNT or starts[-1] - starts[0] > MAX_SERIES_SPAN:
        raise Invalid("the series runs over a year: end it within a year of its first occurrence (COUNT or UNTIL)", field=FIELD, key="rule_over_year")
    for a, b in zip(starts, starts[1:], strict=False):
        if b - lobby < a + duration:
            raise Invalid("occurrences of the series overlap one another (with the lobby time): repeat less often", field=FIELD, key="rule_overlap")
    return SeriesCheck(starts[0], starts)


def original_starts(b: Briefing, zone: ZoneInfo) -> list[datetime]:
    """Every original start of the briefing's occurrences (one for a one-off)."""
    if not b.rrule:
        return [b.start]
    return rule_starts(b.rrule, b.start, zone)


def expand(
    b: Briefing,
    zone: ZoneInfo,
    records: dict[str, Occurrence] | None = None,
    frm: datetime | None = None,
    to: datetime | None = None,
) -> Iterator[Occurrence]:
    """The briefing's occurrences whose window meets ``[frm, to)``, in start order.

    ``records``: the stored state records by occurrence id (state, and the frozen copy once the
    lobby opened). Overrides move or cancel single occurrences; a cancelled briefing's unfinished
    occurrences are cancelled. Occurrences starting before ``b.fixed_before`` exist only
    as their records (history does not change when the series is edited): the service freezes every
occurrence whose lobby has opened before it saves an edit, and sets ``fixed_before`` to the edit
time, so rule instances starting before it are never re-derived.
    """
    records = records or {}
    seen: set[str] = set()
    out: list[Occurrence] = []
    for original in original_starts(b, zone):
        oid = occurrence_id(b.id, original)
        rec = records.get(oid)
        if rec is not None and rec.frozen:
            continue  # added from the records below
        ov = b.overrides.get(oid)
        start = ov.start if ov and ov.start else original
        end = ov.end if ov and ov.end else original + b.duration
        lobby = start - b.lobby
        if b.fixed_before is not None and start < b.fixed_before:
            continue
        state = rec.state if rec is not None else State.SCHEDULED
        if (b.cancelled or (ov and ov.cancelled)) and state not in FINAL:
            state = State.CANCELLED
        occ = Occurrence(
            id=oid,
            briefing_id=b.id,
            title=b.title,
            agenda=b.agenda,
            chair=b.chair,
            invited_sites=b.booked_sites,
            lobby_opens_at=lobby,
            starts_at=start,
            ends_at=end,
            state=state,
            organizer=b.organizer,
            original_start=original,
            recurring=bool(b.rrule),
            moved=bool(ov and ov.start),
            seq=b.seq,
            transitions=rec.transitions if rec is not None else (),
        )
        seen.add(oid)
        out.append(occ)
    for oid, rec in records.items():
        if rec.frozen and oid not in seen:
            out.append(rec)
    out.sort(key=lambda o: (o.starts_at, o.id))
    for occ in out:
        if frm is not None and occ.ends_at <= frm:
            continue
        if to is not None and occ.lobby_opens_at >= to and occ.starts_at >= to:
            continue
        yield occ
