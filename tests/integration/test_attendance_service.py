"""The report service on a real Redis: chunked reads, the live (incremental) and finished (stored) caches."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from confsvc.attendance.briefing import BriefingFacts, StaticBriefings
from confsvc.attendance.events import Joined, Left, QualitySample
from confsvc.attendance.service import AttendanceService
from confsvc.directory.service import Directory
from confsvc.store import keys

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 16, 1, 0, tzinfo=UTC)
B = BriefingFacts("svc-1", "Giao ban", T0, T0 + timedelta(hours=1), ("YB", "YB-VY"), "org1")


async def put(redis, bid, events, start=0):
    for i, e in enumerate(events, start=start):
        await redis.xadd(keys.attendance_log(bid), {"e": replace(e, id=f"t:{i + 1}").encode()})


@pytest.fixture
async def directory(redis):
    d = Directory(redis)
    await d.ensure_demo()
    return d


async def test_live_report_reads_only_new_entries_and_matches_a_fresh_one(redis, directory):
    clock = {"now": T0 + timedelta(minutes=20)}
    svc = AttendanceService(redis, StaticBriefings([B]), directory.tree, clock=lambda: clock["now"], chunk=7)
    samples = [QualitySample(site="YB", conn="a", at=T0 + timedelta(seconds=10 * i), rtt_ms=i, loss=0.01) for i in range(1, 100)]
    await put(redis, B.id, [Joined(site="YB", conn="a", at=T0), *samples[:50]])
    first = await svc.report(B)
    assert first.row("YB").samples == 50 and first.events == 51
    await put(redis, B.id, samples[50:], start=51)
    clock["now"] = T0 + timedelta(minutes=17)
    again = await svc.report(B)
    fresh = await AttendanceService(redis, StaticBriefings([B]), directory.tree, clock=lambda: clock["now"]).report(B)
    assert again.to_dict() == fresh.to_dict()
    assert again.row("YB").samples == 99 and again.events == 100


async def test_a_finished_report_is_stored_and_recomputed_when_the_log_grows(redis, directory):
    after = T0 + timedelta(hours=2)
    svc = AttendanceService(redis, StaticBriefings([B]), directory.tree, clock=lambda: after)
    await put(redis, B.id, [Joined(site="YB", conn="a", at=T0), Left(site="YB", conn="a", at=T0 + timedelta(minutes=30))])
    rep = await svc.report(B)
    stored = json.loads(await redis.get(keys.attendance_report_cache(B.id)))
    assert stored["report"] == rep.to_dict()
    # a second process (no in-memory state) answers from the stored report
    other = AttendanceService(redis, StaticBriefings([B]), directory.tree, clock=lambda: after)
    assert (await other.report(B)).to_dict() == rep.to_dict()
    # a late event (a spool flushed after Redis came back) makes it stale
    await put(redis, B.id, [Joined(site="YB-VY", conn="v", at=T0), Left(site="YB-VY", conn="v", at=T0 + timedelta(hours=1))], start=2)
    newer = await other.report(B)
    assert newer.row("YB-VY").connected_s == 3600 and newer.summary.present == 2
    # and so does a change of the briefing's facts (another invited list)
    changed = replace(B, invited=("YB",))
    assert [r.code for r in (await other.report(changed)).rows if r.invited] == ["YB"]


async def test_site_period_over_several_briefings(redis, directory):
    days = [replace(B, id=f"d{i}", starts_at=T0 + timedelta(days=i), ends_at=T0 + timedelta(days=i, hours=1)) for i in range(3)]
    days.append(replace(B, id="d-other-org", starts_at=T0 + timedelta(days=4), ends_at=T0 + timedelta(days=4, hours=1), organizer="org2"))
    for i, b in enumerate(days[:2]):
        t = b.starts_at + timedelta(minutes=10 * i)  # punctual, then 10 minutes late
        await put(redis, b.id, [Joined(site="YB-VY", conn="c", at=t), Left(site="YB-VY", conn="c", at=b.ends_at)])
    svc = AttendanceService(redis, StaticBriefings(days), directory.tree, clock=lambda: T0 + timedelta(days=10))
    p = await svc.site_period("YB-VY", T0 - timedelta(days=1), T0 + timedelta(days=8))
    assert (p.invited, p.attended, p.absent, p.late) == (4, 2, 2, 1)
    assert p.mean_late_minutes == 5.0
    mine = await svc.site_period("YB-VY", T0 - timedelta(days=1), T0 + timedelta(days=8), organizer="org1")
    assert mine.invited == 3
