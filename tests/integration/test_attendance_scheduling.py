"""Attendance over the real scheduling service (skipped until scheduling is merged in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from confsvc.attendance.briefing import OccurrenceSource
from confsvc.attendance.events import Joined, Left, LeaveReason
from confsvc.attendance.log import AttendanceLog
from confsvc.attendance.service import AttendanceService
from confsvc.config import Settings
from confsvc.directory.service import Directory

sched = pytest.importorskip("confsvc.scheduling.service")
pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
BODY = {
    "title": "Giao ban Văn Yên",
    "selection": {"sites": ["YB-VY", "YB-VY-MAUA", "YB-VY-LAMGIANG"]},
    "chair": "YB-VY",
    "start": "2026-11-23T08:00",
    "end": "2026-11-23T10:00",
}


async def test_a_scheduled_briefing_reports_its_invited_sites(redis, tmp_path):
    directory = Directory(redis)
    await directory.ensure_demo()
    clock = {"now": NOW}
    svc = sched.Briefings(redis, directory, Settings(), now=lambda: clock["now"])
    b = await svc.create(dict(BODY), sched.Actor("org1"))
    [occ] = await svc.occurrences(b.id)
    t0 = occ.starts_at
    log = AttendanceLog.for_store(redis, tmp_path / "spool.log", node="n1")
    await log.start()
    try:
        await log.append(occ.id, Joined(site="YB-VY", conn="a", at=t0 - timedelta(minutes=20)))
        await log.append(occ.id, Joined(site="YB-VY-MAUA", conn="b", at=t0 + timedelta(minutes=9)))
        await log.append(occ.id, Left(site="YB-VY-MAUA", conn="b", at=occ.ends_at, reason=LeaveReason.ENDED))
        await log.append(occ.id, Left(site="YB-VY", conn="a", at=occ.ends_at, reason=LeaveReason.ENDED))
    finally:
        await log.close()
    after = occ.ends_at + timedelta(hours=1)
    source = OccurrenceSource(svc, clock=lambda: after)
    att = AttendanceService(redis, source, directory.tree, clock=lambda: after)
    for ident in (occ.id, b.id):  # the occurrence, or the one-off briefing that stands for it
        facts = await source.get(ident)
        assert facts is not None and facts.id == occ.id and facts.organizer == "org1"
        rep = await att.report(facts)
        assert {r.code: str(r.status) for r in rep.rows} == {
            "YB-VY": "present",
            "YB-VY-MAUA": "present",
            "YB-VY-LAMGIANG": "absent",
        }
        assert rep.row("YB-VY-MAUA").late
    listed = await source.between(t0 - timedelta(days=1), t0 + timedelta(days=1))
    assert [x.id for x in listed] == [occ.id]
