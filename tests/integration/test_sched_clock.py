"""The lifecycle clock on a real Redis, driven by an injected clock (no real waiting)."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from confsvc.config import Settings
from confsvc.directory.service import Directory
from confsvc.scheduling.clock import LifecycleClock
from confsvc.scheduling.model import State
from confsvc.scheduling.service import Actor, Briefings, NotLeader
from confsvc.store import keys

pytestmark = pytest.mark.integration

CREATED = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
LOBBY = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)  # 07:00 local
START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 local
END = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


class Clock:
    def __init__(self, t):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
async def world(redis):
    d = Directory(redis)
    await d.ensure_demo()
    clock = Clock(CREATED)
    svc = Briefings(redis, d, Settings(), now=clock)
    b = await svc.create(
        {"title": "Giao ban", "selection": {"districts": ["YB-NL"]}, "start": "2026-11-23T08:00", "end": "2026-11-23T10:00",
         "rrule": "FREQ=WEEKLY;BYDAY=MO;COUNT=2"},
        Actor("org1"),
    )
    return svc, clock, b


def node(redis, svc, clock, name="n1"):
    return LifecycleClock(redis, svc, name, now=clock)


async def test_clock_moves_an_occurrence_through_its_states_on_time(redis, world):
    svc, clock, b = world
    oid = f"{b.id}-20261123T0100Z"
    seen = []

    async def on_change(change):
        seen.append((change.occurrence_id, str(change.previous), str(change.state), change.catch_up))

    svc.subscribe(on_change)
    c = node(redis, svc, clock)
    for t, want in [
        (LOBBY - timedelta(seconds=1), State.SCHEDULED),
        (LOBBY, State.OPEN),
        (START - timedelta(seconds=1), State.OPEN),
        (START, State.LIVE),
        (END - timedelta(seconds=1), State.LIVE),
        (END, State.ENDED),
    ]:
        clock.t = t
        await c.tick()
        assert (await svc.get(oid)).state is want, t
    assert seen == [(oid, "scheduled", "open", False), (oid, "open", "live", False), (oid, "live", "ended", False)]
    # the next Monday is still scheduled and queued
    nxt = f"{b.id}-20261130T0100Z"
    assert (await svc.get(nxt)).state is State.SCHEDULED
    assert await redis.zscore(keys.SCHED_TIMELINE, nxt) == (LOBBY + timedelta(days=7)).timestamp()
    assert await redis.zscore(keys.SCHED_TIMELINE, oid) is None


async def test_invited_sites_are_frozen_when_the_lobby_opens(redis, world):
    svc, clock, b = world
    oid = f"{b.id}-20261123T0100Z"
    clock.t = LOBBY + timedelta(minutes=5)
    await node(redis, svc, clock).tick()
    opened = await svc.get(oid)
    assert opened.frozen and opened.state is State.OPEN and "YB-NL" in opened.invited_sites
    # the organizer changes the series' sites: this occurrence keeps its list, the next one follows
    await svc.update(b.id, {"selection": {"sites": ["YB-MCC"]}}, Actor("org1"))
    assert (await svc.get(oid)).invited_sites == opened.invited_sites
    assert (await svc.get(f"{b.id}-20261130T0100Z")).invited_sites == ("YB", "YB-MCC")
    assert (await svc.current_for_site("YB-NL", clock.t)).id == oid


async def test_clock_catches_up_after_a_restart(redis, world):
    svc, clock, b = world
    first = node(redis, svc, clock, "n1")
    clock.t = LOBBY + timedelta(minutes=1)
    await first.tick()  # opened; then the node dies without releasing its lock
    assert (await svc.get(f"{b.id}-20261123T0100Z")).state is State.OPEN
    await redis.delete(keys.CLOCK_LOCK)  # its TTL ran out while everything was down
    events = redis.pubsub()
    await events.subscribe(keys.SCHED_EVENTS)
    await events.get_message(timeout=1)
    clock.t = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # a week later, during the second occurrence
    changes = await node(redis, svc, clock, "n2").tick()
    got = [(c.occurrence_id[-14:], str(c.state), c.at, c.catch_up) for c in changes]
    assert got == [
        ("20261123T0100Z", "live", START, True),
        ("20261123T0100Z", "ended", END, True),
        ("20261130T0100Z", "open", LOBBY + timedelta(days=7), True),
        ("20261130T0100Z", "live", START + timedelta(days=7), True),
    ]
    first_occ = await svc.get(f"{b.id}-20261123T0100Z")
    assert [(str(t.state), t.at, t.by) for t in first_occ.transitions] == [
        ("open", LOBBY, "clock"), ("live", START, "clock"), ("ended", END, "clock")]
    published = []
    while (msg := await events.get_message(timeout=0.5)) is not None:
        published.append(json.loads(msg["data"]))
    assert [(m["state"], m["catch_up"]) for m in published] == [("live", True), ("ended", True), ("open", True), ("live", True)]
    await events.aclose()


async def test_one_node_at_a_time_and_fencing(redis, world):
    svc, clock, b = world
    clock.t = LOBBY + timedelta(minutes=1)
    a, z = node(redis, svc, clock, "a"), node(redis, svc, clock, "z")
    assert await a.acquire() and not await z.acquire()
    assert await z.tick() == []  # stands by: nothing applied
    assert (await svc.get(f"{b.id}-20261123T0100Z")).state is State.SCHEDULED
    stale_token = a.token
    # a stalls past its TTL; z takes over with a higher fencing token
    await redis.delete(keys.CLOCK_LOCK)
    assert await z.acquire()
    assert int(z.token.split(":")[1]) > int(stale_token.split(":")[1])
    with pytest.raises(NotLeader):
        await svc.advance(f"{b.id}-20261123T0100Z", clock.t, stale_token)
    assert (await svc.get(f"{b.id}-20261123T0100Z")).state is State.SCHEDULED
    assert not await a.acquire()  # renewal fails: a knows it lost
    assert [str(c.state) for c in await z.tick()] == ["open"]
    await z.release()
    assert await redis.get(keys.CLOCK_LOCK) is None


async def test_a_moved_occurrence_is_opened_at_its_new_time(redis, world):
    svc, clock, b = world
    oid = f"{b.id}-20261123T0100Z"
    await svc.move_occurrence(oid, {"start": "2026-11-23T14:00", "end": "2026-11-23T15:00"}, Actor("org1"))
    c = node(redis, svc, clock)
    clock.t = LOBBY + timedelta(minutes=1)  # the old lobby time
    assert await c.tick() == []
    clock.t = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)  # 13:00 local: the new lobby
    assert [str(x.state) for x in await c.tick()] == ["open"]


async def test_clock_stops_even_when_a_cancel_lands_inside_a_redis_call(redis, world):
    """redis-py can turn a cancellation inside a command into a ConnectionError; shutdown must not hang."""
    import asyncio

    from redis.exceptions import ConnectionError as RedisConnectionError

    svc, clock, b = world
    entered = asyncio.Event()

    async def due(now, limit=200):
        entered.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RedisConnectionError("connection lost while reading") from None
        return []

    svc.due = due
    c = node(redis, svc, clock)

    async def run_and_stop():
        async with c.running():
            await entered.wait()

    await asyncio.wait_for(run_and_stop(), timeout=30)  # a liveness guard, not a timing assert
    assert await redis.get(keys.CLOCK_LOCK) is None  # released on the way out
