"""OccurrenceSource: scheduling's occurrences seen as attendance briefings (fakes with its fields)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from confsvc.attendance.briefing import OccurrenceSource

T0 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Tr:
    state: str
    at: datetime


@dataclass(frozen=True)
class Occ:
    id: str
    starts_at: datetime
    state: str = "ended"
    title: str = "Giao ban"
    invited_sites: tuple[str, ...] = ("YB", "YB-VY")
    organizer: str = "org1"
    chair: str = "YB"
    transitions: tuple[Tr, ...] = ()
    ends_at: datetime = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.ends_at is None:
            object.__setattr__(self, "ends_at", self.starts_at + timedelta(hours=2))


class FakeBriefings:
    def __init__(self, occs: list[Occ]) -> None:
        self.occs = occs

    async def get(self, occ_id: str):
        return next((o for o in self.occs if o.id == occ_id), None)

    async def occurrences(self, bid: str):
        found = [o for o in self.occs if o.id.rpartition("-")[0] == bid]
        if not found:
            raise LookupError(bid)
        return found

    async def list(self, frm, to):
        return [o for o in self.occs if o.starts_at < to and o.ends_at > frm]


WEEKLY = [Occ(f"w1-{(T0 + timedelta(days=7 * i)):%Y%m%dT%H%MZ}", T0 + timedelta(days=7 * i)) for i in range(4)]


async def test_occurrence_and_series_ids():
    src = OccurrenceSource(FakeBriefings(WEEKLY), clock=lambda: T0 + timedelta(days=15))
    one = await src.get(WEEKLY[1].id)
    assert one is not None and one.id == WEEKLY[1].id and one.invited == ("YB", "YB-VY") and one.organizer == "org1"
    latest = await src.get("w1")  # the series: its latest occurrence that has started
    assert latest is not None and latest.id == WEEKLY[2].id
    assert await src.get("nope") is None


async def test_cancelled_have_no_attendance_and_early_end_cuts_the_window():
    cancelled = Occ("c1-20261116T0100Z", T0, state="cancelled")
    early = Occ("e1-20261116T0100Z", T0, transitions=(Tr("live", T0), Tr("ended", T0 + timedelta(minutes=80))))
    src = OccurrenceSource(FakeBriefings([cancelled, early]), clock=lambda: T0 + timedelta(days=1))
    assert await src.get(cancelled.id) is None
    e = await src.get("e1")  # a one-off briefing: its only occurrence
    assert e is not None and e.ends_at == T0 + timedelta(minutes=80)
    listed = await src.between(T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert [b.id for b in listed] == [early.id]


async def test_early_start_opens_the_window_when_the_chair_started():
    lobby = T0 - timedelta(minutes=60)
    early = Occ("s1-20261116T0100Z", T0, transitions=(Tr("open", lobby), Tr("live", T0 - timedelta(minutes=20))))
    object.__setattr__(early, "lobby_opens_at", lobby)
    before_lobby = Occ("s2-20261116T0100Z", T0, transitions=(Tr("live", lobby - timedelta(minutes=5)),))
    object.__setattr__(before_lobby, "lobby_opens_at", lobby)
    src = OccurrenceSource(FakeBriefings([early, before_lobby]), clock=lambda: T0 + timedelta(days=1))
    got = await src.get(early.id)
    assert got is not None and got.starts_at == T0 - timedelta(minutes=20)
    assert (await src.get(before_lobby.id)).starts_at == T0  # a stray time outside the lobby is ignored
