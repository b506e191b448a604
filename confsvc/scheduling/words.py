"""Recurrence in plain words: the form's choices <-> an RRULE. Pure logic.

The form offers: no repeat; every day; every N weeks on some weekdays; every month on the same
day; every month on the first/second/third/fourth/last given weekday; and, for anything else,
the rule typed as RFC 5545 text ("custom"). The series ends after a number of times or on a date.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

WEEKDAYS = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")
REPEATS = ("none", "daily", "weekly", "monthly_day", "monthly_nth", "custom")
NTHS = (1, 2, 3, 4, -1)


@dataclass
class Choices:
    repeat: str = "none"
    interval: int = 1
    weekdays: list[str] = field(default_factory=list)
    nth: int = 1
    nth_day: str = "MO"
    ends: str = "count"  # count | until
    count: int = 10
    until: date | None = None
    custom: str = ""

    def to_rule(self, start: date | None = None) -> str | None:
        """The RRULE for these choices (None: no repeat). Values are checked by the service."""
        if self.repeat == "none":
            return None
        if self.repeat == "custom":
            return self.custom.strip() or None
        parts = []
        if self.repeat == "daily":
            parts.append("FREQ=DAILY")
        elif self.repeat == "weekly":
            parts.append("FREQ=WEEKLY")
        else:
            parts.append("FREQ=MONTHLY")
        if self.interval > 1:
            parts.append(f"INTERVAL={self.interval}")
        if self.ends == "until" and self.until is not None:
            parts.append(f"UNTIL={self.until:%Y%m%d}")
        else:
            parts.append(f"COUNT={self.count}")
        if self.repeat == "weekly":
            days = [d for d in WEEKDAYS if d in self.weekdays] or ([WEEKDAYS[start.weekday()]] if start else ["MO"])
            parts.append("BYDAY=" + ",".join(days))
        elif self.repeat == "monthly_day" and start is not None:
            parts.append(f"BYMONTHDAY={start.day}")
        elif self.repeat == "monthly_nth":
            parts.append(f"BYDAY={self.nth}{self.nth_day}")
        return ";".join(parts)


def parse_rule_parts(rule: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in rule.split(";") if "=" in p)


def choices_for(rule: str | None, until_local: date | None = None) -> Choices:
    """The form's choices for a stored rule (``custom`` when the words cannot say it)."""
    if not rule:
        return Choices()
    p = parse_rule_parts(rule)
    c = Choices(custom=rule)
    c.interval = int(p.get("INTERVAL", "1"))
    if "COUNT" in p:
        c.ends, c.count = "count", int(p["COUNT"])
    else:
        c.ends, c.until = "until", until_local
    simple = set(p) - {"FREQ", "INTERVAL", "COUNT", "UNTIL", "WKST"}
    byday = p.get("BYDAY", "")
    if p["FREQ"] == "DAILY" and not simple:
        c.repeat = "daily"
    elif p["FREQ"] == "WEEKLY" and simple <= {"BYDAY"} and all(d in WEEKDAYS for d in byday.split(",") if d):
        c.repeat, c.weekdays = "weekly", [d for d in byday.split(",") if d]
    elif p["FREQ"] == "MONTHLY" and simple == {"BYMONTHDAY"} and p["BYMONTHDAY"].isdigit():
        c.repeat = "monthly_day"
    elif p["FREQ"] == "MONTHLY" and simple == {"BYDAY"} and "," not in byday and byday[-2:] in WEEKDAYS:
        try:
            n = int(byday[:-2])
        except ValueError:
            n = 0
        if n in NTHS:
            c.repeat, c.nth, c.nth_day = "monthly_nth", n, byday[-2:]
        else:
            c.repeat = "custom"
    else:
        c.repeat = "custom"
    return c


def from_form(form: Mapping[str, object], weekdays: list[str]) -> Choices:
    """Choices from form fields (repeat, interval, weekday[], nth, nth_day, ends, count, until, custom).

    Raises ValueError(field) for a number or date that does not parse.
    """

    def num(name: str, default: int) -> int:
        raw = str(form.get(name) or "").strip()
        if not raw:
            return default
        if not raw.lstrip("-").isdigit():
            raise ValueError(name)
        return int(raw)

    repeat = str(form.get("repeat") or "none")
    if repeat not in REPEATS:
        raise ValueError("repeat")
    until = None
    raw_until = str(form.get("until") or "").strip()
    if raw_until:
        try:
            until = date.fromisoformat(raw_until)
        except ValueError:
            raise ValueError("until") from None
    nth_day = str(form.get("nth_day") or "MO")
    if nth_day not in WEEKDAYS:
        raise ValueError("nth_day")
    ends = str(form.get("ends") or "count")
    if ends not in ("count", "until"):
        raise ValueError("ends")
    if ends == "until" and until is None and repeat not in ("none", "custom"):
        raise ValueError("until")
    return Choices(
        repeat=repeat,
        interval=max(1, num("interval", 1)),
        weekdays=[d for d in weekdays if d in WEEKDAYS],
        nth=num("nth", 1) if num("nth", 1) in NTHS else 1,
        nth_day=nth_day,
        ends=ends,
        count=num("count", 10),
        until=until,
        custom=str(form.get("custom") or ""),
    )
