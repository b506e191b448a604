"""What attendance needs to know about a briefing, and where it gets briefings from.

Scheduling owns briefings; attendance only reads these facts. ``BriefingFacts`` is a plain
implementation used by tests and by adapters; any object with these attributes will do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


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
