"""Briefings in Redis: save with an atomic conflict check, read occurrences, move them through their states.

Read API for the other areas (attendance, signaling)::

    occ = await briefings.get(occurrence_id)        # Occurrence | None
    occ.invited_sites, occ.lobby_opens_at, occ.starts_at, occ.ends_at, occ.state, occ.chair, occ.organizer
    occ = await briefings.current_for_site(code, now) # the open or live occurrence a site belongs in now
    briefings.subscribe(callback)                     # in-process: await callback(StateChange) on this node
    # across nodes: Redis pub/sub channel keys.SCHED_EVENTS, JSON StateChange.to_dict()

``invited_sites`` includes the chair's site and is frozen when the lobby opens (``occ.frozen``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from confsvc.config import Settings
from confsvc.directory.model import Tree
from confsvc.directory.service import Directory
from confsvc.scheduling import input as inp
from confsvc.scheduling import scripts
from confsvc.scheduling.errors import BadTransition, Conflict, Forbidden, Invalid, NotFound, ReadOnly, Stale
from confsvc.scheduling.model import (
    FINAL,
    MAX_DURATION,
    Briefing,
    Occurrence,
    Override,
    State,
    Transition,
    can_move,
    due_transitions,
    iso,
    next_change,
    now_utc,
    occurrence_id,
    split_occurrence_id,
)
from confsvc.scheduling.recurrence import check_series, expand, original_starts
from confsvc.store import keys
from confsvc.store.redis import Redis

log = logging.getLogger(__name__)

MAX_WINDOW = MAX_DURATION + timedelta(minutes=24 * 60)  # the longest window: 12 h + a 24 h lobby
MAX_CONFLICTS = 500
FEED_HISTORY = timedelta(days=92)  # a site's calendar feed keeps briefings that ended this recently
SAVE_RETRIES = 5
ID_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"


def new_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _ in range(10))


def epoch(dt: datetime) -> int:
    return int(dt.timestamp())


@dataclass(frozen=True)
class Actor:
    """Who asks: a username and whether they are an admin (who may change anyone's briefing)."""

    username: str
    admin: bool = False


@dataclass(frozen=True)
class StateChange:
    """One state change of an occurrence (published on ``keys.SCHED_EVENTS`` and to subscribers)."""

    occurrence_id: str
    briefing_id: str
    previous: State
    state: State
    at: datetime  # when it was due (scheduled time) or happened (a person's action)
    applied_at: datetime
    by: str  # "clock" or a username
    catch_up: bool  # applied late, by a clock catching up after a restart
    occurrence: Occurrence

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "briefing.state",
            "id": self.occurrence_id,
            "briefing_id": self.briefing_id,
            "previous": str(self.previous),
            "state": str(self.state),
            "at": iso(self.at),
            "applied_at": iso(self.applied_at),
            "by": self.by,
            "catch_up": self.catch_up,
            "lobby_opens_at": iso(self.occurrence.lobby_opens_at),
            "starts_at": iso(self.occurrence.starts_at),
            "ends_at": iso(self.occurrence.ends_at),
            "chair": self.occurrence.chair,
            "invited_sites": list(self.occurrence.invited_sites),
        }


Subscriber = Callable[[StateChange], Awaitable[None]]


@dataclass
class _Plan:
    """Everything one save writes, prepared in Python and handed to the SAVE script."""

    briefing: Briefing
    expect_seq: int
    expect_states: dict[str, str]
    old_sites: list[str]
    records: dict[str, Occurrence] = field(default_factory=dict)  # frozen records to (re)write
    changes: list[StateChange] = field(default_factory=list)


class NotLeader(Exception):
    """The clock lock is no longer ours: a transition was refused (fencing)."""


class Briefings:
    def __init__(
        self,
        redis: Redis,
        directory: Directory,
        settings: Settings,
        *,
        now: Callable[[], datetime] = now_utc,
        domain: str = "confsvc",
    ) -> None:
        self.redis = redis
        self.directory = directory
        self.settings = settings
        self.zone = settings.zone
        self.now = now
        self.domain = domain
        self._subscribers: list[Subscriber] = []
        self._save = redis.register_script(scripts.SAVE)
        self._transition = redis.register_script(scripts.TRANSITION)

    # -- subscribers ------------------------------------------------------------------------------
    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``await callback(change)`` after each state change made on this node; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    async def _notify(self, changes: Iterable[StateChange]) -> None:
        for change in changes:
            for cb in list(self._subscribers):
                try:
                    await cb(change)
                except Exception:  # one bad subscriber must not stop the clock
                    log.exception("briefing state subscriber failed")

    # -- reading ----------------------------------------------------------------------------------
    async def briefing(self, briefing_id: str) -> Briefing | None:
        raw = await self.redis.hget(keys.briefing(briefing_id), "json")
        return Briefing.from_dict(json.loads(raw)) if raw else None

    async def _load(self, briefing_id: str) -> tuple[Briefing, dict[str, Occurrence]]:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(keys.briefing(briefing_id), "json")
            pipe.hgetall(keys.briefing_occurrences(briefing_id))
            raw, recs = await pipe.execute()
        if not raw:
            raise NotFound(f"no briefing {briefing_id!r}")
        return Briefing.from_dict(json.loads(raw)), {k: Occurrence.from_dict(json.loads(v)) for k, v in recs.items()}

    async def occurrences(
        self, briefing_id: str, frm: datetime | None = None, to: datetime | None = None
    ) -> list[Occurrence]:
        b, recs = await self._load(briefing_id)
        return list(expand(b, self.zone, recs, frm, to))

    async def get(self, occurrence_id: str) -> Occurrence | None:
        """One occurrence by id (``<briefing id>-<YYYYMMDDTHHMMZ>``), or None."""
        try:
            bid, _ = split_occurrence_id(occurrence_id)
            b, recs = await self._load(bid)
        except (ValueError, NotFound):
            return None
        if occurrence_id in recs and recs[occurrence_id].frozen:
            return recs[occurrence_id]
        return next((o for o in expand(b, self.zone, recs) if o.id == occurrence_id), None)

    async def list(self, frm: datetime, to: datetime) -> list[Occurrence]:
        """Every occurrence whose window meets [frm, to), in start order."""
        ids = await self.redis.zrangebyscore(keys.BRIEFING_IDS, epoch(frm), "+inf")
        return sorted(
            (o for b, recs in await self._load_many(ids) for o in expand(b, self.zone, recs, frm, to)),
            key=lambda o: (o.starts_at, o.id),
        )

    async def _load_many(self, ids: list[str]) -> list[tuple[Briefing, dict[str, Occurrence]]]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for bid in ids:
                pipe.hget(keys.briefing(bid), "json")
                pipe.hgetall(keys.briefing_occurrences(bid))
            res = await pipe.execute()
        out = []
        for raw, recs in zip(res[::2], res[1::2], strict=True):
            if raw:
                b = Briefing.from_dict(json.loads(raw))
                out.append((b, {k: Occurrence.from_dict(json.loads(v)) for k, v in recs.items()}))
        return out

    async def for_site(self, code: str, history: timedelta = FEED_HISTORY) -> list[tuple[Briefing, list[Occurrence]]]:
        """The briefings a site is invited to or chairs, with their occurrences (its calendar feed).

        Only briefings whose last occurrence ended less than ``history`` ago: a feed does not grow for ever.
        """
        ids = sorted(await self.redis.smembers(keys.site_briefings(code)))
        if ids:
            ends = await self.redis.zmscore(keys.BRIEFING_IDS, ids)
            oldest = epoch(self.now() - history)
            ids = [i for i, end in zip(ids, ends, strict=True) if end is not None and end >= oldest]
        return [(b, list(expand(b, self.zone, recs))) for b, recs in await self._load_many(ids)]

    async def current_for_site(self, code: str, now: datetime | None = None) -> Occurrence | None:
        """The occurrence a site belongs in at ``now``: the one whose window holds now, lobby open or live.

        Bookings never overlap, so there is at most one; an occurrence the clock has not opened yet
        (it runs about once a second) still counts while its window holds ``now``.
        """
        now = now or self.now()
        t = epoch(now)
        members = await self.redis.zrangebyscore(keys.site_bookings(code), t - int(MAX_WINDOW.total_seconds()), t)
        for m in members:
            oid, _, end = m.rpartition("|")
            if int(end) <= t:
                continue
            occ = await self.get(oid)
            if occ is not None and occ.state not in FINAL and occ.lobby_opens_at <= now < occ.ends_at:
                if code in occ.invited_sites:
                    return occ
        return None

    # -- permissions -----------------------------------------------------------------------------
    @staticmethod
    def _check_owner(b: Briefing, actor: Actor) -> None:
        if not actor.admin and b.organizer != actor.username:
            raise Forbidden(f"briefing {b.id} belongs to {b.organizer}: only its organizer or an admin may change it")

    # -- creating and changing ---------------------------------------------------------------------
    async def _tree(self) -> Tree:
        return await self.directory.tree()

    def _default_chair(self, tree: Tree) -> str:
        p = tree.province
        if p is None:
            raise Invalid("the directory has no province: import the site directory first", field="chair")
        return p.code

    async def create(self, body: dict[str, Any], actor: Actor, *, dry_run: bool = False) -> Briefing:
        """Check and save a new briefing; Conflict (409) lists every clash, nothing is written then."""
        now = self.now()
        tree = await self._tree()
        d = inp.parse_briefing(body, tree, self.zone, now)
        assert d.title is not None and d.start is not None and d.end is not None and d.sites is not None
        b = Briefing(
            id=new_id(),
            title=d.title,
            agenda=d.agenda or "",
            chair=d.chair or self._default_chair(tree),
            selection=d.selection,  # type: ignore[arg-type]
            sites=d.sites,
            start=d.start,
            end=d.end,
            lobby_minutes=self.settings.lobby_minutes if d.lobby_minutes is None else d.lobby_minutes,
            organizer=actor.username,
            rrule=d.rrule,
            created=now,
            updated=now,
            seq=0,
        )
        b = self._with_rule_checked(b)
        for _ in range(SAVE_RETRIES):
            try:
                await self._write(_Plan(b, expect_seq=-1, expect_states={}, old_sites=[]), now, dry_run=dry_run)
            except _Retry:  # an id already taken (1 in 10^14): draw another
                b = b.evolve(id=new_id())
                continue
            return b
        raise RuntimeError("could not draw a free briefing id")

    def _with_rule_checked(self, b: Briefing) -> Briefing:
        if not b.rrule:
            return b
        check = check_series(b.rrule, b.start, b.duration, b.lobby, self.zone)
        if check.first_start != b.start:  # the series begins at the rule's first instance on/after the asked start
            b = b.evolve(start=check.first_start, end=check.first_start + b.duration)
        return b

    async def update(self, briefing_id: str, body: dict[str, Any], actor: Actor, *, dry_run: bool = False) -> Briefing:
        """Change a briefing (any field of create; omitted fields keep their value; ``start`` alone keeps the duration)."""
        for _ in range(SAVE_RETRIES):
            now = self.now()
            b, recs = await self._load(briefing_id)
            self._check_owner(b, actor)
            if b.cancelled:
                raise ReadOnly(f"briefing {b.id} is cancelled")
            tree = await self._tree()
            d = inp.parse_briefing(body, tree, self.zone, now, partial=True)
            if d.seq is not None and d.seq != b.seq:
                raise Stale(f"briefing {b.id} changed since you read it (seq {b.seq}, you sent {d.seq}): reload", field="seq")
            plan = self._freeze_due(b, recs, now)
            occs = list(expand(b, self.zone, {**recs, **plan.records}))
            if not b.rrule and any(o.state is not State.SCHEDULED for o in occs):
                raise ReadOnly(f"briefing {b.id} has already opened: it can no longer be changed", field="start")
            if occs and all(o.state in FINAL for o in occs):
                raise ReadOnly(f"briefing {b.id} is over: an ended briefing is read-only")
            new_dates = d.start is not None or d.rrule_given
            start = d.start or b.start
            if d.end is not None:
                end = d.end
            elif d.start is not None:
                end = start + b.duration
            else:
                end = b.end
            inp.check_span(start, end)
            new = b.evolve(
                title=d.title if d.title is not None else b.title,
                agenda=d.agenda if d.agenda is not None else b.agenda,
                chair=d.chair or b.chair,
                selection=d.selection or b.selection,
                sites=d.sites if d.sites is not None else b.sites,
                start=start,
                end=end,
                lobby_minutes=b.lobby_minutes if d.lobby_minutes is None else d.lobby_minutes,
                rrule=d.rrule if d.rrule_given else b.rrule,
                overrides=b.overrides,
                updated=now,
                fixed_before=now if (recs or plan.records) else b.fixed_before,
                seq=b.seq + 1,
            )
            new = self._with_rule_checked(new)
            if new_dates:  # occurrence ids follow the dates: carry each cancel/move over to the new one of that day
                new = new.evolve(overrides=self._carry_overrides(b, new))
            plan.briefing = new
            try:
                await self._write(plan, now, dry_run=dry_run)
            except _Retry:
                continue
            return new
        raise Stale(f"briefing {briefing_id} is changing too often right now: try again")

    def _carry_overrides(self, old: Briefing, new: Briefing) -> dict[str, Override]:
        """Overrides re-keyed for a series whose dates changed: matched by the local day of the original start."""
        by_day = {}
        for oid, ov in old.overrides.items():
            try:
                _, original = split_occurrence_id(oid)
            except ValueError:
                continue
            by_day[original.astimezone(self.zone).date()] = ov
        out: dict[str, Override] = {}
        if by_day:
            for original in original_starts(new, self.zone):
                ov = by_day.get(original.astimezone(self.zone).date())
                if ov is not None:
                    out[occurrence_id(new.id, original)] = ov
        return out

    async def cancel(self, briefing_id: str, actor: Actor) -> Briefing:
        """Cancel the whole briefing: every occurrence not yet live is cancelled, its halls released."""
        for _ in range(SAVE_RETRIES):
            now = self.now()
            b, recs = await self._load(briefing_id)
            self._check_owner(b, actor)
            if b.cancelled:
                return b
            plan = self._freeze_due(b, recs, now)
            recs = {**recs, **plan.records}
            live = [o for o in expand(b, self.zone, recs) if o.state is State.LIVE]
            if live:
                raise BadTransition(f"occurrence {live[0].id} is live: the chair must end it before the briefing is cancelled")
            for oid, rec in recs.items():
                if rec.state is State.OPEN:
                    plan.records[oid], change = self._moved(rec, State.CANCELLED, now, now, actor.username)
                    plan.changes.append(change)
            new = b.evolve(cancelled=True, updated=now, seq=b.seq + 1)
            for occ in expand(b, self.zone, recs):
                if occ.state is State.SCHEDULED and occ.id not in plan.records:
                    plan.changes.append(self._change(occ, State.CANCELLED, now, now, actor.username))
            plan.briefing = new
            try:
                await self._write(plan, now)
            except _Retry:
                continue
            return new
        raise Stale(f"briefing {briefing_id} is changing too often right now: try again")

    async def _occurrence_for_change(self, occurrence_id: str, actor: Actor | None) -> tuple[Briefing, dict[str, Occurrence], Occurrence]:
        try:
            bid, _ = split_occurrence_id(occurrence_id)
        except ValueError:
            raise NotFound(f"no occurrence {occurrence_id!r}") from None
        b, recs = await self._load(bid)
        if actor is not None:
            self._check_owner(b, actor)
        occ = recs.get(occurrence_id) if occurrence_id in recs and recs[occurrence_id].frozen else None
        occ = occ or next((o for o in expand(b, self.zone, recs) if o.id == occurrence_id), None)
        if occ is None:
            raise NotFound(f"no occurrence {occurrence_id!r}")
        return b, recs, occ

    async def move_occurrence(self, occurrence_id: str, body: dict[str, Any], actor: Actor) -> Occurrence:
        """Move one occurrence (new start and/or end) without touching the series."""
        for _ in range(SAVE_RETRIES):
            now = self.now()
            b, recs, occ = await self._occurrence_for_change(occurrence_id, actor)
            d = inp.parse_occurrence_change(body, self.zone, now)
            if d.seq is not None and d.seq != b.seq:
                raise Stale(f"briefing {b.id} changed since you read it (seq {b.seq}, you sent {d.seq}): reload", field="seq")
            if occ.state is not State.SCHEDULED or occ.frozen:
                raise ReadOnly(f"occurrence {occ.id} is {occ.state}: only a scheduled occurrence can be moved")
            if b.cancelled:
                raise ReadOnly(f"briefing {b.id} is cancelled")
            start = d.start or occ.starts_at
            end = d.end or (start + (occ.ends_at - occ.starts_at))
            inp.check_span(start, end)
            overrides = dict(b.overrides)
            overrides[occ.id] = Override(start=start, end=end)
            new = b.evolve(overrides=overrides, updated=now, seq=b.seq + 1)
            if not b.rrule:  # a one-off: moving its only occurrence is moving the briefing
                new = b.evolve(start=start, end=end, updated=now, seq=b.seq + 1)
            mine = [o for o in expand(new, self.zone, recs) if o.state not in FINAL]
            for x, y in zip(mine, mine[1:], strict=False):
                if x.window.overlaps(y.window):
                    raise Invalid("the moved occurrence would overlap another occurrence of the same series", field="start")
            plan = self._freeze_due(b, recs, now)
            plan.briefing = new
            try:
                await self._write(plan, now)
            except _Retry:
                continue
            if not b.rrule:
                got = await self.occurrences(b.id)
                return got[0]
            result = await self.get(occ.id)
            assert result is not None
            return result
        raise Stale(f"occurrence {occurrence_id} is changing too often right now: try again")

    async def cancel_occurrence(self, occurrence_id: str, actor: Actor) -> Occurrence:
        """Cancel one occurrence (scheduled or in its lobby); the series goes on."""
        for _ in range(SAVE_RETRIES):
            now = self.now()
            b, recs, occ = await self._occurrence_for_change(occurrence_id, actor)
            if occ.state is State.CANCELLED:
                return occ
            if occ.state in (State.LIVE, State.ENDED):
                raise BadTransition(f"occurrence {occ.id} is {occ.state}: it cannot be cancelled")
            plan = self._freeze_due(b, recs, now)
            cur = plan.records.get(occ.id) or occ
            if cur.state is State.LIVE:
                raise BadTransition(f"occurrence {occ.id} is live: it cannot be cancelled")
            if not b.rrule:
                return_b = await self.cancel(b.id, actor)
                got = await self.occurrences(return_b.id)
                return got[0]
            overrides = dict(b.overrides)
            overrides[occ.id] = Override(cancelled=True)
            if cur.frozen:
                plan.records[occ.id], change = self._moved(cur, State.CANCELLED, now, now, actor.username)
            else:
                change = self._change(cur, State.CANCELLED, now, now, actor.username)
            plan.changes.append(change)
            plan.briefing = b.evolve(overrides=overrides, updated=now, seq=b.seq + 1)
            try:
                await self._write(plan, now)
            except _Retry:
                continue
            result = await self.get(occ.id)
            assert result is not None
            return result
        raise Stale(f"occurrence {occurrence_id} is changing too often right now: try again")

    # -- the chair's actions ---------------------------------------------------------------------
    async def start_now(self, occurrence_id: str, actor: Actor) -> Occurrence:
        """The chair starts early (from scheduled or the lobby)."""
        return await self._act(occurrence_id, State.LIVE, actor)

    async def end_now(self, occurrence_id: str, actor: Actor) -> Occurrence:
        """The chair ends early (from the lobby or live); an ended occurrence is read-only."""
        return await self._act(occurrence_id, State.ENDED, actor)

    async def _act(self, occurrence_id: str, target: State, actor: Actor) -> Occurrence:
        for _ in range(SAVE_RETRIES):
            now = self.now()
            b, recs, occ = await self._occurrence_for_change(occurrence_id, None)
            if occ.state in FINAL:
                raise ReadOnly(f"occurrence {occ.id} is {occ.state}")
            if target is State.LIVE and occ.state is State.LIVE:
                return occ
            if target is State.ENDED and occ.state is State.SCHEDULED:
                raise BadTransition(f"occurrence {occ.id} has not opened yet: cancel it instead")
            if target is State.LIVE and now < occ.lobby_opens_at - timedelta(hours=24):
                raise BadTransition(f"occurrence {occ.id} is more than a day away: it cannot be started now")
            steps = [(State.OPEN, now)] if occ.state is State.SCHEDULED else []
            steps.append((target, now))
            try:
                rec, _ = await self._apply(b, occ, steps, now, actor.username, lock_token="")
                return rec
            except _Retry:
                continue
        raise Stale(f"occurrence {occurrence_id} is changing too often right now: try again")

    # -- the clock's side --------------------------------------------------------------------------
    async def due(self, now: datetime, limit: int = 200) -> list[str]:
        """Occurrence ids whose next state change is due at ``now`` (oldest first)."""
        return await self.redis.zrangebyscore(keys.SCHED_TIMELINE, "-inf", epoch(now), start=0, num=limit)

    async def advance(self, occurrence_id: str, now: datetime, lock_token: str) -> list[StateChange]:
        """Apply every transition due at ``now`` (catching up if late), only while ``lock_token`` holds the lock."""
        for _ in range(SAVE_RETRIES):
            occ = None
            try:
                b, recs, occ = await self._occurrence_for_change(occurrence_id, None)
            except NotFound:
                occ = None
            if occ is None:
                await self.redis.zrem(keys.SCHED_TIMELINE, occurrence_id)  # gone (moved, or series edited)
                return []
            steps = due_transitions(occ, now)
            if not steps:
                nxt = next_change(occ)
                if nxt is None:
                    await self.redis.zrem(keys.SCHED_TIMELINE, occurrence_id)
                else:
                    await self.redis.zadd(keys.SCHED_TIMELINE, {occurrence_id: epoch(nxt)}, xx=True)
                return []
            try:
                _, changes = await self._apply(b, occ, steps, now, "clock", lock_token=lock_token)
            except _Retry:
                continue
            return changes
        return []

    async def _apply(
        self, b: Briefing, occ: Occurrence, steps: list[tuple[State, datetime]], now: datetime, by: str, lock_token: str
    ) -> tuple[Occurrence, list[StateChange]]:
        rec = occ
        changes: list[StateChange] = []
        for state, at in steps:
            if not can_move(rec.state, state):
                raise BadTransition(f"occurrence {occ.id} cannot go from {rec.state} to {state}")
            rec, change = self._moved(rec, state, at, now, by)
            changes.append(change)
        nxt = next_change(rec)
        release = list(occ.invited_sites) if rec.state in FINAL else []
        payload = {
            "occ_id": occ.id,
            "expect_state": str(occ.state),
            "expect_seq": b.seq,
            "record": json.dumps(rec.to_dict(), ensure_ascii=False),
            "next": epoch(nxt) if nxt else None,
            "lock_token": lock_token,
            "events": [[keys.SCHED_EVENTS, json.dumps(c.to_dict(), ensure_ascii=False)] for c in changes],
            "release_sites": release,
            "release_member": f"{occ.id}|{epoch(occ.ends_at)}",
        }
        status, _ = await self._transition(
            keys=[
                keys.briefing_occurrences(b.id), keys.SCHED_TIMELINE, keys.CLOCK_LOCK, keys.briefing(b.id),
                keys.briefing_bookings(b.id), *(keys.site_bookings(c) for c in release),
            ],
            args=[json.dumps(payload)],
        )
        if status == "not_leader":
            raise NotLeader("the clock lock is held by another node")
        if status != "ok":
            raise _Retry(status)
        await self._notify(changes)
        return rec, changes

    def _moved(self, occ: Occurrence, state: State, at: datetime, now: datetime, by: str) -> tuple[Occurrence, StateChange]:
        """The occurrence's record after one transition (frozen: its window and invited sites no longer follow the series)."""
        t = Transition(state, at, now, by)
        rec = Occurrence(**{**occ.__dict__, "state": state, "frozen": True, "transitions": (*occ.transitions, t)})
        return rec, StateChange(occ.id, occ.briefing_id, occ.state, state, at, now, by, at < now - timedelta(seconds=60), rec)

    def _change(self, occ: Occurrence, state: State, at: datetime, now: datetime, by: str) -> StateChange:
        rec = Occurrence(**{**occ.__dict__, "state": state})
        return StateChange(occ.id, occ.briefing_id, occ.state, state, at, now, by, False, rec)

    def _freeze_due(self, b: Briefing, recs: dict[str, Occurrence], now: datetime) -> _Plan:
        """Before a change: every occurrence whose lobby has opened gets its frozen record (as the clock would)."""
        plan = _Plan(b, expect_seq=b.seq, expect_states={k: str(v.state) for k, v in recs.items()}, old_sites=list(b.booked_sites))
        for occ in expand(b, self.zone, recs, to=now + timedelta(seconds=1)):
            rec = occ
            for state, at in due_transitions(occ, now):
                rec, change = self._moved(rec, state, at, now, "clock")
                plan.changes.append(change)
            if rec is not occ:
                plan.records[occ.id] = rec
        return plan

    # -- the write ---------------------------------------------------------------------------------
    async def _write(self, plan: _Plan, now: datetime, *, dry_run: bool = False) -> None:
        b = plan.briefing
        recs = await self._records_after(plan)
        occs = list(expand(b, self.zone, recs))
        groups: dict[tuple[str, ...], list[tuple[int, int, str]]] = {}
        timeline: list[tuple[str, int]] = []
        last_end = epoch(b.end)
        for o in occs:
            last_end = max(last_end, epoch(o.ends_at))
            if o.state in FINAL or o.ends_at <= now:
                continue
            groups.setdefault(o.invited_sites, []).append((epoch(o.lobby_opens_at), epoch(o.ends_at), o.id))
            nxt = next_change(o)
            if nxt is not None:
                timeline.append((o.id, epoch(nxt)))
        for windows in groups.values():
            windows.sort()
            for x, y in zip(windows, windows[1:], strict=False):
                if y[0] < x[1]:  # a hall cannot be in one briefing twice at once
                    raise Invalid(f"occurrences {x[2]} and {y[2]} of this briefing would overlap", field="start")
        sites = list(dict.fromkeys([*b.booked_sites, *(s for g in groups for s in g)]))
        # every site the briefing may still hold a booking at: its old sites and its frozen occurrences'
        frozen_sites = (c for r in recs.values() for c in r.invited_sites)
        all_sites = list(dict.fromkeys([*sites, *plan.old_sites, *frozen_sites]))
        key_list = [keys.briefing(b.id), keys.briefing_bookings(b.id), keys.BRIEFING_IDS, keys.SCHED_TIMELINE, keys.briefing_occurrences(b.id)]
        index: dict[str, int] = {}
        for code in all_sites:
            key_list.append(keys.site_bookings(code))
            index[code] = len(key_list)  # Lua is 1-based: KEYS[index] is the bookings zset, KEYS[index+1] the set
            key_list.append(keys.site_briefings(code))
        stored = b.to_dict()
        events = [[keys.SCHED_EVENTS, json.dumps(c.to_dict(), ensure_ascii=False)] for c in plan.changes]
        events.append([keys.SCHED_CHANGES, json.dumps({"type": "briefing.cancelled" if b.cancelled else "briefing.saved", "id": b.id, "seq": b.seq})])
        payload = {
            "id": b.id,
            "expect_seq": plan.expect_seq,
            "expect_states": plan.expect_states,
            "groups": [{"sites": list(g), "windows": w} for g, w in groups.items()],
            "keys": index,
            "maxwin": int(MAX_WINDOW.total_seconds()),
            "max_conflicts": MAX_CONFLICTS,
            "dry_run": dry_run,
            "old_sites": [s for s in plan.old_sites if s not in sites],
            "sites": sites,  # a cancelled briefing stays in its sites' feeds, as STATUS:CANCELLED
            "timeline": timeline,
            "timeline_remove": [o.id for o in occs if o.state in FINAL],
            "records": {k: json.dumps(v.to_dict(), ensure_ascii=False) for k, v in plan.records.items()},
            "json": json.dumps(stored, ensure_ascii=False),
            "seq": b.seq,
            "last_end": last_end,
            "events": events,
        }
        raw = json.dumps(payload, ensure_ascii=False)
        result = await self._save(keys=key_list, args=[raw])
        status = result[0]
        if status == "conflict":
            raise Conflict(await self._describe(json.loads(result[1]), b, int(result[2])))
        if status in ("stale", "stale_records"):
            raise _Retry(status)
        if status == "exists":
            raise _Retry(status)
        if status != "ok":
            raise RuntimeError(f"unexpected answer from the save script: {result!r}")
        if not dry_run:
            await self._notify(plan.changes)

    async def _records_after(self, plan: _Plan) -> dict[str, Occurrence]:
        if plan.expect_seq < 0:
            return dict(plan.records)
        raw = await self.redis.hgetall(keys.briefing_occurrences(plan.briefing.id))
        recs = {k: Occurrence.from_dict(json.loads(v)) for k, v in raw.items()}
        recs.update(plan.records)
        return recs

    async def _describe(self, hits: list[list[str]], b: Briefing, total: int) -> list[dict[str, Any]]:
        """Group raw clashes by (other occurrence, our occurrence): which briefing, when, which sites."""
        grouped: dict[tuple[str, str], list[str]] = {}
        for code, other, mine in hits:
            grouped.setdefault((other, mine), []).append(code)
        bids = sorted({other.rpartition("-")[0] for other, _ in grouped})
        others = {o.id: o for ob, recs in await self._load_many(bids) for o in expand(ob, self.zone, recs)}
        tree = await self._tree()
        out = []
        for (other, mine), codes in sorted(grouped.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            o = others.get(other)
            try:
                _, mine_start = split_occurrence_id(mine)
            except ValueError:
                mine_start = None
            out.append(
                {
                    "briefing_id": o.briefing_id if o else other.rpartition("-")[0],
                    "occurrence_id": other,
                    "title": o.title if o else "",
                    "organizer": o.organizer if o else "",
                    "lobby_opens_at": iso(o.lobby_opens_at) if o else None,
                    "starts_at": iso(o.starts_at) if o else None,
                    "ends_at": iso(o.ends_at) if o else None,
                    "sites": sorted(codes),
                    "site_names": [tree.sites[c].name if c in tree.sites else c for c in sorted(codes)],
                    "clashes_with_occurrence": mine,
                    "clashes_with_start": iso(mine_start) if mine_start else None,
                }
            )
        if total > len(hits):
            log.info("conflict list for %s cut to %d of %d clashes", b.id, len(hits), total)
        return out


class _Retry(Exception):
    """The store moved on between the read and the write (optimistic concurrency): read again."""

