"""Attendance over the real scheduling service (skipped until scheduling is merged in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from confsvc.attendance.briefing import OccurrenceSource
from confsvc.attendance.events import Joined, LeaveReason, Left
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


async def test_http_reports_follow_scheduling_permissions(client, api_token):
    """Wired as in app.py: an organizer's briefing, made through the scheduling API, reported over HTTP."""
    from confsvc.http.attendance import ATTENDANCE

    if not isinstance(client.app[ATTENDANCE].briefings, OccurrenceSource):
        pytest.skip("app.py does not wire attendance to scheduling yet")
    org = {"Authorization": f"Bearer {await api_token('organizer', 'organizer1')}"}
    other = {"Authorization": f"Bearer {await api_token('organizer', 'organizer2')}"}
    admin = {"Authorization": f"Bearer {await api_token('admin')}"}
    start = datetime.now(UTC) + timedelta(days=2)
    body = dict(BODY, start=start.strftime("%Y-%m-%dT%H:%M"), end=(start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))
    resp = await client.post("/api/briefings", json=body, headers=org)
    assert resp.status == 201, await resp.text()
    bid = (await resp.json())["id"]
    got = await client.get(f"/api/briefings/{bid}/attendance", headers=org)
    assert got.status == 200, await got.text()
    doc = await got.json()
    assert {r["code"] for r in doc["sites"]} == {"YB-VY", "YB-VY-MAUA", "YB-VY-LAMGIANG"}
    assert doc["summary"]["pending"] == 3  # not held yet: "chưa điểm danh"
    occ = doc["briefing"]["id"]
    assert (await client.get(f"/api/briefings/{bid}/occurrences/{occ}/attendance.xlsx", headers=org)).status == 200
    assert (await client.get(f"/api/briefings/{bid}/attendance.csv", headers=other)).status == 403
    assert (await client.get(f"/api/briefings/{bid}/attendance", headers=admin)).status == 200
