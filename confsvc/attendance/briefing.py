"""What attendance needs to know about a briefing, and where it gets briefings from.

Scheduling owns briefings; attendance only reads these facts. ``BriefingFacts`` is a plain
implementation used by tests and by adapters; any object with these attributes will do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class BriefingInfo(Protocol):
    """A briefing as attendance sees it: the scheduled window (UTC) and who was invited."""

    @property
    def id(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def starts_at(self) -> datetime: ...
    @property
    def ends_at(self) -> datetime: ...
    @property
    def invited(self) -> Sequence[str]:
        """Site codes invited (frozen when the briefing started)."""
        ...
    @property
    def organizer(self) -> str:
        """Username of the organizer who owns the briefing."""
        ...


class BriefingSource(Protocol):
    """Where attendance looks briefings up (the scheduling service, through an adapter)."""

    async def get(self, briefing_id: str) -> BriefingInfo | None: ...

    async def between(self, start: datetime, end: datetime) -> Sequence[BriefingInfo]:
        """Briefings whose scheduled start lies in [start, end), oldest first."""
        ...


@dataclass(frozen=True)
class BriefingFacts:
    id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    invited: tuple[str, ...] = ()
    organizer: str = ""
    chair_site: str = ""
    extra: dict[str, str] = field(default_factory=dict, compare=False)


class StaticBriefings:
    """A BriefingSource over a fixed set of briefings (tests, and until scheduling is wired)."""

    def __init__(self, briefings: Sequence[BriefingInfo] = ()) -> None:
        self._by_id: dict[str, BriefingInfo] = {b.id: b for b in briefings}

    def add(self, briefing: BriefingInfo) -> None:
        self._by_id[briefing.id] = briefing

    async def get(self, briefing_id: str) -> BriefingInfo | None:
        return self._by_id.get(briefing_id)

    async def between(self, start: datetime, end: datetime) -> list[BriefingInfo]:
        found = [b for b in self._by_id.values() if start <= b.starts_at < end]
        return sorted(found, key=lambda b: (b.starts_at, b.id))


class OccurrenceSource:
    """A BriefingSource over the scheduling service (``confsvc.scheduling.service.Briefings``).

    Attendance is per *occurrence* (one dated briefing, one log). Scheduling's ids:
    ``<briefing id>`` for a series and ``<briefing id>-<YYYYMMDDTHHMMZ>`` for an occurrence. ``get``
    takes either: a series id stands for its latest occurrence that has started (a one-off
    briefing has exactly one). Cancelled occurrences have no attendance. The report window is the
    scheduled one, cut at the chair's early end when the briefing ended before its time.

    Duck-typed (the service needs ``get(occurrence_id)``, ``occurrences(briefing_id)`` and
    ``list(frm, to)`` returning objects with scheduling's ``Occurrence`` fields), so attendance
    does not import scheduling.
    """

    def __init__(self, briefings: Any, clock: Callable[[], datetime] | None = None) -> None:
        self.service = briefings
        self.clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def facts(occ: Any) -> BriefingFacts | None:
        if str(occ.state) == "cancelled":
            return None
        start, end = occ.starts_at, occ.ends_at
        lobby = getattr(occ, "lobby_opens_at", None) or start
        for t in getattr(occ, "transitions", ()):
            if str(t.state) == "live" and lobby <= t.at < start:
                start = t.at  # the chair started early: the briefing ran from then
            if str(t.state) == "ended" and occ.starts_at < t.at < end:
                end = t.at  # the chair ended it early
        return BriefingFacts(
            id=occ.id,
            title=occ.title,
            starts_at=start,
            ends_at=end,
            invited=tuple(occ.invited_sites),
            organizer=occ.organizer,
            chair_site=getattr(occ, "chair", ""),
        )

    async def get(self, briefing_id: str) -> BriefingInfo | None:
        occ = await self.service.get(briefing_id)
        if occ is None:
            try:
                occs = await self.service.occurrences(briefing_id)
            except Exception:  # scheduling's NotFound: no such series
                return None
            now = self.clock()
            started = [o for o in occs if o.starts_at <= now and str(o.state) != "cancelled"]
            live = [o for o in occs if str(o.state) != "cancelled"]
            pick = started[-1] if started else (live[0] if len(live) == 1 else None)
            if pick is None:
                return None
            occ = pick
        return self.facts(occ)

    async def between(self, start: datetime, end: datetime) -> list[BriefingInfo]:
        out: list[BriefingInfo] = []
        for occ in await self.service.list(start, end):
            f = self.facts(occ)
            if f is not None and start <= f.starts_at < end:
                out.append(f)
        return out
