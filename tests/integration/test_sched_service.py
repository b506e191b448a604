"""Scheduling on a real Redis: atomic booking, conflicts, edits, cancellations, the read API."""

import asyncio
import json
from datetime import UTC, datetime

import pytest

from confsvc.config import Settings
from confsvc.directory.service import Directory
from confsvc.scheduling.errors import BadTransition, Conflict, Forbidden, ReadOnly, Stale
from confsvc.scheduling.model import State
from confsvc.scheduling.service import Actor, Briefings
from confsvc.store import keys

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # Friday 08:00 in Vietnam
ORG = Actor("org1")


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
async def svc(redis):
    d = Directory(redis)
    await d.ensure_demo()
    return Briefings(redis, d, Settings(), now=Clock(NOW))


def body(**kw):
    out = {"title": "Giao ban", "selection": {"sites": ["YB-MCC"]}, "start": "2026-11-23T08:00", "end": "2026-11-23T10:00"}
    out.update(kw)
    return out


async def snapshot(redis):
    """Every scheduling key and its content: to prove a refused request wrote nothing."""
    out = {}
    for k in sorted(await redis.keys(keys.PREFIX + "sched:*")):
        t = await redis.type(k)
        if t == "hash":
            out[k] = await redis.hgetall(k)
        elif t == "zset":
            out[k] = await redis.zrange(k, 0, -1, withscores=True)
        elif t == "set":
            out[k] = sorted(await redis.smembers(k))
        else:
            out[k] = await redis.get(k)
    return out


async def test_twenty_concurrent_bookings_of_one_hall_exactly_one_wins(redis, svc):
    async def book(i):
        try:
            return await svc.create(body(title=f"Họp {i}", selection={"sites": ["YB-NL"]}, chair="YB-NL"), Actor(f"org{i}"))
        except Conflict as exc:
            return exc

    results = await asyncio.gather(*(book(i) for i in range(20)))
    winners = [r for r in results if not isinstance(r, Conflict)]
    losers = [r for r in results if isinstance(r, Conflict)]
    assert len(winners) == 1 and len(losers) == 19
    assert all(c.conflicts[0]["briefing_id"] == winners[0].id and c.conflicts[0]["sites"] == ["YB-NL"] for c in losers)
    assert await redis.zcard(keys.BRIEFING_IDS) == 1
    assert await redis.zcard(keys.site_bookings("YB-NL")) == 1


async def test_conflict_lists_the_other_briefing_when_and_which_sites_and_writes_nothing(redis, svc):
    weekly = await svc.create(body(selection={"districts": ["YB-MCC"]}, rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=10"), ORG)
    before = await snapshot(redis)
    commune = "YB-MCC-MODE"
    # 09:30-10:30 on the 4th Monday: lobby from 08:30 overlaps 08:00-10:00 at YB (chair) and the commune
    with pytest.raises(Conflict) as err:
        await svc.create(body(title="Khác", selection={"sites": [commune]}, start="2026-12-14T10:30", end="2026-12-14T11:30"), Actor("org2"))
    (c,) = err.value.conflicts
    assert c["briefing_id"] == weekly.id and c["occurrence_id"] == f"{weekly.id}-20261214T0100Z"
    assert c["title"] == "Giao ban" and c["starts_at"] == "2026-12-14T01:00:00Z" and c["ends_at"] == "2026-12-14T03:00:00Z"
    assert c["sites"] == sorted(["YB", commune])
    assert await snapshot(redis) == before
    # back to back is fine: lobby opens 10:00 exactly when the weekly one ends
    await svc.create(body(title="Sau", selection={"sites": [commune]}, start="2026-12-14T11:00", end="2026-12-14T12:00"), Actor("org2"))


async def test_every_occurrence_up_to_a_year_is_checked(svc):
    await svc.create(body(selection={"sites": ["YB-TT"]}, chair="YB-TT", rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=52"), ORG)
    with pytest.raises(Conflict) as err:  # the 52nd Monday, 2027-11-15
        await svc.create(body(selection={"sites": ["YB-TT"]}, chair="YB-TT", start="2027-11-15T09:00", end="2027-11-15T09:30"), ORG)
    assert err.value.conflicts[0]["starts_at"] == "2027-11-15T01:00:00Z"


async def test_editing_a_briefing_does_not_clash_with_itself_and_releases_old_halls(redis, svc):
    b = await svc.create(body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3"), ORG)
    moved = await svc.update(b.id, {"start": "2026-11-23T09:00", "selection": {"sites": ["YB-NL"]}}, ORG)
    assert moved.seq == 1 and moved.sites == ("YB-NL",)
    assert await redis.zcard(keys.site_bookings("YB-MCC")) == 0
    assert await redis.zcard(keys.site_bookings("YB-NL")) == 3
    assert [o.starts_at.hour for o in await svc.occurrences(b.id)] == [2, 2, 2]  # 09:00 local
    # the freed hall can be booked by someone else now
    await svc.create(body(selection={"sites": ["YB-MCC"]}, chair="YB-MCC"), Actor("org2"))


async def test_stale_seq_is_refused(svc):
    b = await svc.create(body(), ORG)
    await svc.update(b.id, {"title": "Mới"}, ORG)
    with pytest.raises(Stale):
        await svc.update(b.id, {"title": "Cũ", "seq": 0}, ORG)


async def test_only_the_organizer_or_an_admin_may_change(svc):
    b = await svc.create(body(), ORG)
    with pytest.raises(Forbidden):
        await svc.update(b.id, {"title": "x"}, Actor("org2"))
    with pytest.raises(Forbidden):
        await svc.cancel(b.id, Actor("org2"))
    assert (await svc.update(b.id, {"title": "x"}, Actor("root", admin=True))).title == "x"


async def test_cancelling_one_occurrence_frees_only_that_date(redis, svc):
    b = await svc.create(body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3"), ORG)
    second = f"{b.id}-20261130T0100Z"
    occ = await svc.cancel_occurrence(second, ORG)
    assert occ.state is State.CANCELLED
    states = {o.id: o.state for o in await svc.occurrences(b.id)}
    assert list(states.values()) == [State.SCHEDULED, State.CANCELLED, State.SCHEDULED]
    await svc.create(body(selection={"sites": ["YB-MCC"]}, start="2026-11-30T08:00", end="2026-11-30T09:00"), Actor("org2"))
    with pytest.raises(Conflict):
        await svc.create(body(selection={"sites": ["YB-MCC"]}, start="2026-12-07T08:00", end="2026-12-07T09:00"), Actor("org2"))


async def test_moving_one_occurrence(svc):
    b = await svc.create(body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3"), ORG)
    second = f"{b.id}-20261130T0100Z"
    occ = await svc.move_occurrence(second, {"start": "2026-12-01T14:00", "end": "2026-12-01T15:00"}, ORG)
    assert occ.id == second and occ.moved and occ.starts_at == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    assert occ.lobby_opens_at == datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    # the old slot is free, the new one taken
    await svc.create(body(selection={"sites": ["YB-MCC"]}, start="2026-11-30T08:00", end="2026-11-30T09:00"), Actor("org2"))
    with pytest.raises(Conflict):
        await svc.create(body(selection={"sites": ["YB-MCC"]}, start="2026-12-01T15:30", end="2026-12-01T16:00"), Actor("org2"))


async def test_cancel_releases_every_hall_and_publishes(redis, svc):
    b = await svc.create(body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3"), ORG)
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.SCHED_CHANGES)
    await pubsub.get_message(timeout=1)
    done = await svc.cancel(b.id, ORG)
    assert done.cancelled and done.seq == 1
    assert {o.state for o in await svc.occurrences(b.id)} == {State.CANCELLED}
    assert await redis.zcard(keys.site_bookings("YB-MCC")) == 0
    assert await redis.zcard(keys.SCHED_TIMELINE) == 0
    msg = await pubsub.get_message(timeout=2)
    assert json.loads(msg["data"]) == {"type": "briefing.cancelled", "id": b.id, "seq": 1}
    await pubsub.aclose()
    with pytest.raises(ReadOnly):
        await svc.update(b.id, {"title": "x"}, ORG)


async def test_read_api_for_attendance_and_signaling(svc):
    b = await svc.create(body(selection={"districts": ["YB-MCC"]}, chair="YB"), ORG)
    (occ,) = await svc.occurrences(b.id)
    got = await svc.get(occ.id)
    assert got is not None and got.id == f"{b.id}-20261123T0100Z"
    assert got.invited_sites[0] == "YB" and "YB-MCC-MODE" in got.invited_sites
    assert got.lobby_opens_at == datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert got.state is State.SCHEDULED and got.organizer == "org1" and got.chair == "YB"
    assert await svc.get("nope") is None and await svc.get(f"{b.id}-20991231T0000Z") is None
    inside = datetime(2026, 11, 23, 0, 30, tzinfo=UTC)
    assert (await svc.current_for_site("YB-MCC-MODE", inside)).id == got.id
    assert await svc.current_for_site("YB-MCC-MODE", datetime(2026, 11, 22, 23, 59, tzinfo=UTC)) is None
    assert await svc.current_for_site("YB-MCC-MODE", datetime(2026, 11, 23, 3, 0, tzinfo=UTC)) is None  # ended
    assert await svc.current_for_site("YB-NL", inside) is None  # not invited
    listed = await svc.list(datetime(2026, 11, 23, tzinfo=UTC), datetime(2026, 11, 24, tzinfo=UTC))
    assert [o.id for o in listed] == [got.id]
    assert await svc.list(datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC)) == []


async def test_chair_starts_early_and_ends_early_then_read_only(svc):
    svc.now.t = datetime(2026, 11, 23, 0, 10, tzinfo=UTC)  # in the lobby window, before the start
    b = await svc.create(body(start="2026-11-23T08:00"), ORG)
    oid = f"{b.id}-20261123T0100Z"
    chair = Actor("chair1")
    live = await svc.start_now(oid, chair)
    assert live.state is State.LIVE and live.frozen
    assert [t.state for t in live.transitions] == [State.OPEN, State.LIVE]
    ended = await svc.end_now(oid, chair)
    assert ended.state is State.ENDED and ended.transitions[-1].by == "chair1"
    with pytest.raises(ReadOnly):
        await svc.end_now(oid, chair)
    with pytest.raises(ReadOnly):
        await svc.update(b.id, {"title": "x"}, ORG)
    with pytest.raises(BadTransition):
        await svc.cancel_occurrence(oid, ORG)


async def test_changing_the_series_time_keeps_a_cancelled_date_cancelled(svc):
    b = await svc.create(body(rrule="FREQ=WEEKLY;BYDAY=MO;COUNT=3"), ORG)
    await svc.cancel_occurrence(f"{b.id}-20261130T0100Z", ORG)
    await svc.update(b.id, {"start": "2026-11-23T09:00", "end": "2026-11-23T11:00"}, ORG)
    occs = await svc.occurrences(b.id)
    assert [(o.id[-14:], o.state) for o in occs] == [
        ("20261123T0200Z", State.SCHEDULED), ("20261130T0200Z", State.CANCELLED), ("20261207T0200Z", State.SCHEDULED)]


async def test_site_feed_keeps_recent_history_only(svc):
    b = await svc.create(body(), ORG)
    assert [x.id for x, _ in await svc.for_site("YB-MCC")] == [b.id]
    assert [x.id for x, _ in await svc.for_site("YB")] == [b.id]  # the chair's hall too
    assert await svc.for_site("YB-NL") == []
    svc.now.t = datetime(2027, 6, 1, tzinfo=UTC)  # long after it ended
    assert await svc.for_site("YB-MCC") == []


async def test_ending_early_frees_the_halls_for_the_rest_of_the_window(redis, svc):
    svc.now.t = datetime(2026, 11, 23, 0, 10, tzinfo=UTC)
    b = await svc.create(body(start="2026-11-23T08:00", end="2026-11-23T11:00"), ORG)
    oid = f"{b.id}-20261123T0100Z"
    with pytest.raises(Conflict):
        await svc.create(body(title="Sau", start="2026-11-23T10:30", end="2026-11-23T11:30"), Actor("org2"))
    await svc.start_now(oid, Actor("chair1"))
    await svc.end_now(oid, Actor("chair1"))
    assert await svc.current_for_site("YB-MCC", svc.now.t) is None
    assert await redis.zcard(keys.site_bookings("YB-MCC")) == 0 and await redis.scard(keys.briefing_bookings(b.id)) == 0
    await svc.create(body(title="Sau", start="2026-11-23T10:30", end="2026-11-23T11:30"), Actor("org2"))
