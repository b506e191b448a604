"""Briefings, occurrences, site selections and the state machine. Pure logic, no I/O.

A **briefing** is what an organizer saves: a one-off or a recurring series (an RFC 5545 RRULE).
Each of its dates is an **occurrence**, which has its own state and its own window. Occurrence
ids are ``<briefing id>-<original start in UTC as YYYYMMDDTHHMMZ>`` (the iCalendar RECURRENCE-ID):
they stay the same when one occurrence is moved.

Window of an occurrence: ``[lobby_opens_at, ends_at)`` (half-open: a briefing may begin the minute
the previous one ends). All datetimes here are timezone-aware UTC.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from confsvc.directory.model import Kind, Tree
from confsvc.scheduling.errors import Invalid

MAX_DURATION = timedelta(hours=12)
MAX_SERIES_SPAN = timedelta(days=366)  # "up to a year ahead"
MAX_TITLE = 200
MAX_AGENDA = 5000


class State(StrEnum):
    SCHEDULED = "scheduled"
    OPEN = "open"  # the lobby: halls join early to test, microphones off
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


# scheduled -> open (lobby) -> live -> ended, or cancelled before it goes live
TRANSITIONS: dict[State, frozenset[State]] = {
    State.SCHEDULED: frozenset({State.OPEN, State.LIVE, State.CANCELLED}),
    State.OPEN: frozenset({State.LIVE, State.ENDED, State.CANCELLED}),
    State.LIVE: frozenset({State.ENDED}),
    State.ENDED: frozenset(),
    State.CANCELLED: frozenset(),
}
FINAL = frozenset({State.ENDED, State.CANCELLED})
ACTIVE = frozenset({State.OPEN, State.LIVE})


def can_move(src: State, dst: State) -> bool:
    return dst in TRANSITIONS[src]


def utc(dt: datetime) -> datetime:
    if dt.tzinfo is None:
        raise ValueError("naive datetime")
    return dt.astimezone(UTC)


def iso(dt: datetime | None) -> str | None:
    return dt.astimezone(UTC).isoformat().replace("+00:00", "Z") if dt else None


def parse_iso(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def occurrence_id(briefing_id: str, original_start: datetime) -> str:
    return f"{briefing_id}-{original_start.astimezone(UTC):%Y%m%dT%H%MZ}"


def split_occurrence_id(occ_id: str) -> tuple[str, datetime]:
    """(briefing id, original start); ValueError when the id is malformed."""
    bid, sep, stamp = occ_id.rpartition("-")
    if not sep or not bid:
        raise ValueError(f"not an occurrence id: {occ_id!r}")
    return bid, datetime.strptime(stamp, "%Y%m%dT%H%MZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    """[opens, ends): from the lobby opening to the end."""

    opens: datetime
    ends: datetime

    def overlaps(self, other: Window) -> bool:
        return self.opens < other.ends and other.opens < self.ends


# --- selection -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Selection:
    """Which sites are invited, as the organizer chose them.

    ``province``: every site of the tree. ``districts``: each a district hall with all its
    communes. ``sites``: hand-picked sites of any level (a district code here is the district hall
    alone, without its communes). Resolved against the tree at each save; the resolved list is
    kept with the briefing, and frozen per occurrence when its lobby opens.
    """

    province: bool = False
    districts: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"province": self.province, "districts": list(self.districts), "sites": list(self.sites)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Selection:
        return cls(bool(d.get("province")), tuple(d.get("districts") or ()), tuple(d.get("sites") or ()))

    @property
    def empty(self) -> bool:
        return not (self.province or self.districts or self.sites)

    def resolve(self, tree: Tree) -> list[str]:
        """The invited site codes in tree order; Invalid naming the field for an unknown code or an empty choice."""
        if self.empty:
            raise Invalid("choose at least one site: the whole province, a district or a site", field="selection", key="selection_empty")
        chosen: set[str] = set()
        if self.province:
            chosen.update(tree.sites)
        for code in self.districts:
            site = tree.sites.get(code)
            if site is None:
                raise Invalid(f"unknown district {code!r}", field="selection.districts", key="unknown_site", params={"code": code})
            if site.kind is not Kind.DISTRICT:
                raise Invalid(f"{code!r} is a {site.kind}, not a district", field="selection.districts")
            chosen.add(code)
            chosen.update(tree.descendants(code))
        for code in self.sites:
            if code not in tree.sites:
                raise Invalid(f"unknown site {code!r}", field="selection.sites", key="unknown_site", params={"code": code})
            chosen.add(code)
        return [s.code for s in tree.ordered() if s.code in chosen]

    @classmethod
    def compress(cls, ticked: Iterable[str], tree: Tree) -> Selection:
        """The shortest selection for a set of ticked sites (what the tree picker sends).

        Every site ticked: the province. A district ticked with all its communes: that district.
        Anything else: hand-picked sites. Unknown codes are kept so that resolving names them.
        """
        ticked = set(ticked)
        if tree.sites and set(tree.sites) <= ticked:
            return cls(province=True, sites=tuple(sorted(ticked - set(tree.sites))))
        districts: list[str] = []
        covered: set[str] = set()
        for d in tree.districts:
            family = {d.code, *tree.descendants(d.code)}
            if tree.descendants(d.code) and family <= ticked:
                districts.append(d.code)
                covered |= family
        order = {s.code: i for i, s in enumerate(tree.ordered())}
        rest = sorted(ticked - covered, key=lambda c: (order.get(c, len(order)), c))
        return cls(districts=tuple(districts), sites=tuple(rest))


# --- briefing ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Override:
    """One occurrence changed without touching the series: cancelled, or moved (new start and end)."""

    cancelled: bool = False
    start: datetime | None = None
    end: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cancelled": self.cancelled, "start": iso(self.start), "end": iso(self.end)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Override:
        return cls(bool(d.get("cancelled")), parse_iso(d.get("start")), parse_iso(d.get("end")))


@dataclass(frozen=True)
class Briefing:
    """A one-off or recurring briefing, as saved (UTC times; ``start``/``end`` are the first occurrence's)."""

    id: str
    title: str
    chair: str
    selection: Selection
    sites: tuple[str, ...]  # the resolved invited sites (the chair not necessarily among them)
    start: datetime
    end: datetime
    lobby_minutes: int
    organizer: str
    agenda: str = ""
    rrule: str | None = None  # RFC 5545 RRULE value, UNTIL normalised to UTC
    overrides: Mapping[str, Override] = field(default_factory=dict)  # occurrence id -> override
    cancelled: bool = False
    created: datetime | None = None
    updated: datetime | None = None
    # occurrences whose lobby opened before this instant are history: they come from their frozen
    # records, not from the (possibly since edited) rule
    fixed_before: datetime | None = None
    seq: int = 0  # the iCalendar SEQUENCE: raised on every change

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    @property
    def lobby(self) -> timedelta:
        return timedelta(minutes=self.lobby_minutes)

    @property
    def booked_sites(self) -> tuple[str, ...]:
        """Every hall the briefing occupies: the invited sites and the chair's."""
        return self.sites if self.chair in self.sites else (self.chair, *self.sites)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "agenda": self.agenda,
            "chair": self.chair,
            "selection": self.selection.to_dict(),
            "sites": list(self.sites),
            "start": iso(self.start),
            "end": iso(self.end),
            "lobby_minutes": self.lobby_minutes,
            "organizer": self.organizer,
            "rrule": self.rrule,
            "overrides": {k: v.to_dict() for k, v in sorted(self.overrides.items())},
            "cancelled": self.cancelled,
            "created": iso(self.created),
            "updated": iso(self.updated),
            "fixed_before": iso(self.fixed_before),
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Briefing:
        start, end = parse_iso(d["start"]), parse_iso(d["end"])
        assert start is not None and end is not None
        return cls(
            id=d["id"],
            title=d["title"],
            agenda=d.get("agenda", ""),
            chair=d["chair"],
            selection=Selection.from_dict(d["selection"]),
            sites=tuple(d["sites"]),
            start=start,
            end=end,
            lobby_minutes=int(d["lobby_minutes"]),
            organizer=d["organizer"],
            rrule=d.get("rrule"),
            overrides={k: Override.from_dict(v) for k, v in (d.get("overrides") or {}).items()},
            cancelled=bool(d.get("cancelled")),
            created=parse_iso(d.get("created")),
            updated=parse_iso(d.get("updated")),
            fixed_before=parse_iso(d.get("fixed_before")),
            seq=int(d.get("seq", 0)),
        )

    def evolve(self, **changes: Any) -> Briefing:
        return replace(self, **changes)


@dataclass(frozen=True)
class Transition:
    state: State
    at: datetime  # when it should have happened (the scheduled time, or the chair's action)
    applied_at: datetime  # when it was applied (later than ``at`` when the clock caught up)
    by: str  # "clock", or the username that acted

    def to_dict(self) -> dict[str, Any]:
        return {"state": str(self.state), "at": iso(self.at), "applied_at": iso(self.applied_at), "by": self.by}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Transition:
        at, applied = parse_iso(d["at"]), parse_iso(d["applied_at"])
        assert at is not None and applied is not None
        return cls(State(d["state"]), at, applied, d["by"])


@dataclass(frozen=True)
class Occurrence:
    """One dated briefing: what attendance and signaling read (``Briefings.get(id)``).

    ``invited_sites`` always includes the chair's site. Once the lobby opens it is frozen: later
    edits of the series or the directory do not change who was invited to this occurrence.
    """

    id: str
    briefing_id: str
    title: str
    agenda: str
    chair: str
    invited_sites: tuple[str, ...]
    lobby_opens_at: datetime
    starts_at: datetime
    ends_at: datetime
    state: State
    organizer: str
    original_start: datetime  # the iCalendar RECURRENCE-ID
    recurring: bool = False
    moved: bool = False
    frozen: bool = False  # True once the lobby opened (the record is no longer derived from the series)
    seq: int = 0
    transitions: tuple[Transition, ...] = ()

    @property
    def window(self) -> Window:
        return Window(self.lobby_opens_at, self.ends_at)

    @property
    def read_only(self) -> bool:
        return self.state in FINAL

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "briefing_id": self.briefing_id,
            "title": self.title,
            "agenda": self.agenda,
            "chair": self.chair,
            "invited_sites": list(self.invited_sites),
            "lobby_opens_at": iso(self.lobby_opens_at),
            "starts_at": iso(self.starts_at),
            "ends_at": iso(self.ends_at),
            "state": str(self.state),
            "organizer": self.organizer,
            "original_start": iso(self.original_start),
            "recurring": self.recurring,
            "moved": self.moved,
            "frozen": self.frozen,
            "seq": self.seq,
            "transitions": [t.to_dict() for t in self.transitions],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Occurrence:
        def t(name: str) -> datetime:
            v = parse_iso(d[name])
            assert v is not None
            return v

        return cls(
            id=d["id"],
            briefing_id=d["briefing_id"],
            title=d["title"],
            agenda=d.get("agenda", ""),
            chair=d["chair"],
            invited_sites=tuple(d["invited_sites"]),
            lobby_opens_at=t("lobby_opens_at"),
            starts_at=t("starts_at"),
            ends_at=t("ends_at"),
            state=State(d["state"]),
            organizer=d["organizer"],
            original_start=t("original_start"),
            recurring=bool(d.get("recurring")),
            moved=bool(d.get("moved")),
            frozen=bool(d.get("frozen")),
            seq=int(d.get("seq", 0)),
            transitions=tuple(Transition.from_dict(x) for x in d.get("transitions", ())),
        )


# --- the clock's rule -------------------------------------------------------------------------
def due_transitions(occ: Occurrence, now: datetime) -> list[tuple[State, datetime]]:
    """The transitions the clock owes an occurrence at ``now``, in order, each with its scheduled time.

    After a restart the clock catches up: an occurrence whose end has passed while nobody ran
    the clock goes scheduled -> open -> live -> ended in one step, each transition stamped with
    when it should have happened. A chair's early start or end is respected (never undone).
    """
    out: list[tuple[State, datetime]] = []
    state = occ.state
    if state in FINAL:
        return out
    if state is State.SCHEDULED and now >= occ.lobby_opens_at:
        state = State.OPEN
        out.append((state, occ.lobby_opens_at))
    if state is State.OPEN and now >= occ.starts_at:
        state = State.LIVE
        out.append((state, occ.starts_at))
    if state is State.LIVE and now >= occ.ends_at:
        state = State.ENDED
        out.append((state, occ.ends_at))
    return out


def next_change(occ: Occurrence) -> datetime | None:
    """When the clock must next look at this occurrence (None: never again)."""
    if occ.state is State.SCHEDULED:
        return occ.lobby_opens_at
    if occ.state is State.OPEN:
        return occ.starts_at
    if occ.state is State.LIVE:
        return occ.ends_at
    return None


def now_utc() -> datetime:
    return datetime.now(UTC)
