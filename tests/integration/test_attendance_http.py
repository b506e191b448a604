"""Attendance over HTTP: JSON, CSV and XLSX (parsed back cell by cell), pages, reasons, permissions."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from openpyxl import load_workbook

from confsvc.attendance.briefing import BriefingFacts, StaticBriefings
from confsvc.attendance.events import Joined, LeaveReason, Left, QualitySample, Reconnected, RollCallAnswer
from confsvc.attendance.exports import HEADER_ROW, HEADERS
from confsvc.http.attendance import ATTENDANCE, ATTENDANCE_LOG

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 16, 1, 30, tzinfo=UTC)  # 08:30 in Yên Bái
T1 = T0 + timedelta(hours=2)
INVITED = ("YB", "YB-VY", "YB-VY-MAUA", "YB-VY-LANGTHIP", "YB-VY-LAMGIANG")
OWN = BriefingFacts("br-own", "Giao ban tuần 47", T0, T1, INVITED, "organizer1")
OTHER = BriefingFacts("br-other", "Giao ban khác", T0 + timedelta(days=1), T1 + timedelta(days=1), INVITED, "someone-else")


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


EVENTS = [
    Joined(site="YB", conn="p1", at=at(-20)),
    Joined(site="YB-VY", conn="v1", at=at(-5)),
    Joined(site="YB-VY-MAUA", conn="m1", at=at(12)),  # late by 12 minutes
    QualitySample(site="YB-VY-MAUA", conn="m1", at=at(13), loss=0.01, rtt_ms=120, bitrate_in=400, bitrate_out=900, layer="m"),
    QualitySample(site="YB-VY-MAUA", conn="m1", at=at(14), loss=0.03, rtt_ms=180, bitrate_in=300, bitrate_out=700, layer="l"),
    Left(site="YB-VY-MAUA", conn="m1", at=at(40), reason=LeaveReason.DROPPED),
    Reconnected(site="YB-VY-MAUA", conn="m2", previous="m1", at=at(40.5)),
    RollCallAnswer(site="YB-VY", conn="v1", at=at(10), roll_call="rc1"),
    Left(site="YB-VY-MAUA", conn="m2", at=at(90), reason=LeaveReason.LEFT),  # left 30 minutes early
    Left(site="YB", conn="p1", at=at(120), reason=LeaveReason.ENDED),
    Left(site="YB-VY", conn="v1", at=at(120), reason=LeaveReason.ENDED),
]


@pytest.fixture
async def att_client(client):
    client.app[ATTENDANCE].briefings = StaticBriefings([OWN, OTHER])
    log = client.app[ATTENDANCE_LOG]
    for e in EVENTS:
        await log.append(OWN.id, e)
    return client


async def test_json_report(att_client, api_token):
    token = await api_token("admin")
    resp = await att_client.get(f"/api/briefings/{OWN.id}/attendance", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200
    doc = await resp.json()
    rows = {r["code"]: r for r in doc["sites"]}
    assert list(rows) == list(INVITED)  # the directory's order: province, district hall, its communes
    maua = rows["YB-VY-MAUA"]
    assert maua["status"] == "present" and maua["late"] and maua["late_minutes"] == 12
    assert maua["drops"] == 1 and maua["reconnects"] == 1 and maua["left_early"]
    assert maua["connected_s"] == 78 * 60 - 30
    assert maua["samples"] == 2 and maua["mean_loss"] == 0.02 and maua["worst_rtt_ms"] == 180
    assert rows["YB-VY"]["roll_call"] == "present"
    assert rows["YB-VY-LAMGIANG"]["status"] == "absent"
    assert doc["summary"]["present"] == 3 and doc["summary"]["absent"] == 2 and doc["summary"]["late"] == 1
    assert doc["events"] == len(EVENTS)


async def test_csv_export_cell_by_cell(att_client, login):
    await login(att_client, "admin")
    resp = await att_client.get(f"/api/briefings/{OWN.id}/attendance.csv")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert 'filename="diem-danh-br-own-20261116.csv"' in resp.headers["Content-Disposition"]
    raw = await resp.read()
    assert raw.startswith(b"\xef\xbb\xbf")  # the BOM: Excel reads UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == HEADERS
    assert rows[0][:6] == ["STT", "Mã điểm cầu", "Tên điểm cầu", "Huyện, thị xã, thành phố", "Được mời", "Trạng thái"]
    assert len(rows) == 1 + len(INVITED)
    by_code = {r[1]: dict(zip(HEADERS, r, strict=True)) for r in rows[1:]}
    m = by_code["YB-VY-MAUA"]
    assert m["STT"] == "3"
    assert m["Tên điểm cầu"] == "Thị trấn Mậu A"
    assert m["Huyện, thị xã, thành phố"] == "Huyện Văn Yên"
    assert m["Được mời"] == "Có"
    assert m["Trạng thái"] == "Có mặt trực tuyến"
    assert m["Vào lần đầu"] == "16/11/2026 08:42:00"  # local time, Asia/Ho_Chi_Minh
    assert m["Rời lần cuối"] == "16/11/2026 10:00:00"
    assert m["Thời gian tham dự (phút)"] == "77.5"
    assert m["Tỷ lệ tham dự (%)"] == "64.58"
    assert m["Số lần rớt mạng"] == "1"
    assert m["Số lần kết nối lại"] == "1"
    assert m["Đến muộn"] == "Có" and m["Số phút muộn"] == "12"
    assert m["Về sớm"] == "Có" and m["Số phút về sớm"] == "30"
    assert m["Trả lời điểm danh"] == ""
    assert m["Tỷ lệ mất gói trung bình (%)"] == "2"
    assert m["Tỷ lệ mất gói cao nhất (%)"] == "3"
    assert m["Độ trễ trung bình (ms)"] == "150"
    assert m["Độ trễ cao nhất (ms)"] == "180"
    assert m["Băng thông nhận trung bình (kbit/s)"] == "350"
    assert m["Băng thông gửi trung bình (kbit/s)"] == "800"
    assert m["Chất lượng đường truyền"] == "Trung bình"
    assert m["Chất lượng lúc kém nhất"] == "Trung bình"
    assert m["Lý do vắng"] == ""
    v = by_code["YB-VY"]
    assert v["Trả lời điểm danh"] == "16/11/2026 08:40:00" and v["Đến muộn"] == "" and v["Về sớm"] == ""
    absent = by_code["YB-VY-LAMGIANG"]
    assert absent["Trạng thái"] == "Vắng mặt"
    assert absent["Vào lần đầu"] == "" and absent["Thời gian tham dự (phút)"] == "0" and absent["Tỷ lệ tham dự (%)"] == "0"


async def test_xlsx_export_cell_by_cell(att_client, login):
    await login(att_client, "admin")
    resp = await att_client.get(f"/api/briefings/{OWN.id}/attendance.xlsx")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    wb = load_workbook(io.BytesIO(await resp.read()))
    ws = wb["Điểm danh"]
    assert ws["A1"].value == "Báo cáo điểm danh: Giao ban tuần 47"
    assert ws["A2"].value == "Thời gian: 08:30 - 10:30 ngày 16/11/2026 (giờ Việt Nam)"
    assert [c.value for c in ws[HEADER_ROW]] == HEADERS
    data = [[c.value for c in row] for row in ws.iter_rows(min_row=HEADER_ROW + 1)]
    assert [r[1] for r in data] == list(INVITED)
    m = dict(zip(HEADERS, data[2], strict=True))
    assert m["STT"] == 3 and m["Mã điểm cầu"] == "YB-VY-MAUA" and m["Trạng thái"] == "Có mặt trực tuyến"
    assert m["Vào lần đầu"] == datetime(2026, 11, 16, 8, 42)
    assert m["Rời lần cuối"] == datetime(2026, 11, 16, 10, 0)
    assert m["Thời gian tham dự (phút)"] == 77.5 and m["Tỷ lệ tham dự (%)"] == 64.58
    assert m["Số lần rớt mạng"] == 1 and m["Số lần kết nối lại"] == 1
    assert m["Đến muộn"] == "Có" and m["Số phút muộn"] == 12
    assert m["Về sớm"] == "Có" and m["Số phút về sớm"] == 30
    assert m["Tỷ lệ mất gói trung bình (%)"] == 2 and m["Tỷ lệ mất gói cao nhất (%)"] == 3
    assert m["Độ trễ trung bình (ms)"] == 150 and m["Độ trễ cao nhất (ms)"] == 180
    assert m["Chất lượng đường truyền"] == "Trung bình" and m["Lý do vắng"] is None
    assert ws.cell(row=HEADER_ROW + 3, column=7).number_format == "dd/mm/yyyy hh:mm:ss"
    absent = dict(zip(HEADERS, data[4], strict=True))
    assert absent["Trạng thái"] == "Vắng mặt" and absent["Vào lần đầu"] is None and absent["Số lần rớt mạng"] == 0
    sm = wb["Tổng hợp"]
    summary = {sm.cell(row=i, column=1).value: sm.cell(row=i, column=2).value for i in range(2, 11)}
    assert summary["Số điểm cầu được mời"] == 5 and summary["Có mặt trực tuyến"] == 3 and summary["Vắng mặt"] == 2
    assert summary["Đến muộn"] == 1 and summary["Về sớm"] == 1


async def test_who_may_see_reports(att_client, api_token):
    async def get(path, role=None, user=None):
        headers = {"Authorization": f"Bearer {await api_token(role, user)}"} if role else {}
        return (await att_client.get(path, headers=headers, allow_redirects=False)).status

    for suffix in ("", ".csv", ".xlsx"):
        assert await get(f"/api/briefings/{OWN.id}/attendance{suffix}", "admin") == 200
        assert await get(f"/api/briefings/{OWN.id}/attendance{suffix}", "organizer", "organizer1") == 200
        assert await get(f"/api/briefings/{OTHER.id}/attendance{suffix}", "organizer", "organizer1") == 403
        assert await get(f"/api/briefings/{OTHER.id}/attendance{suffix}", "admin") == 200
        assert await get(f"/api/briefings/{OWN.id}/attendance{suffix}", "chair") == 403
        assert await get(f"/api/briefings/{OWN.id}/attendance{suffix}") == 401
    assert await get("/api/briefings/nope/attendance", "admin") == 404
    assert await get(f"/briefings/{OWN.id}/attendance") == 303  # to the login page
    for suffix in ("", ".csv", ".xlsx"):
        assert await get(f"/api/sites/YB-VY/attendance{suffix}", "chair") == 403
        assert await get(f"/api/sites/YB-VY/attendance{suffix}") == 401
        assert await get(f"/api/sites/YB-VY/attendance{suffix}", "organizer", "organizer1") == 200


async def test_absence_reason_by_admin_only(att_client, api_token, login):
    admin = {"Authorization": f"Bearer {await api_token('admin')}"}
    org = {"Authorization": f"Bearer {await api_token('organizer', 'organizer1')}"}
    url = f"/api/briefings/{OWN.id}/attendance/YB-VY-LAMGIANG/reason"
    assert (await att_client.post(url, json={"reason": "Mất điện"}, headers=org)).status == 403
    resp = await att_client.post(url, json={"reason": "  Mất   điện lưới "}, headers=admin)
    assert resp.status == 200
    row = await resp.json()
    assert row["status"] == "excused" and row["absence_reason"] == "Mất điện lưới" and row["absence_by"] == "admin-bot"
    bad = await att_client.post(f"/api/briefings/{OWN.id}/attendance/YB-TPYB/reason", json={"reason": "x"}, headers=admin)
    assert bad.status == 404 and (await bad.json())["error"] == "not_invited"
    assert (await att_client.post(url, json={"reason": 5}, headers=admin)).status == 400
    assert (await att_client.post(url, json={"reason": "x" * 501}, headers=admin)).status == 400
    # from the page: a form with the CSRF token, back to the report
    await login(att_client, "admin", "admin2")
    resp = await att_client.post(url, data={"reason": "Họp khác", "_csrf": att_client.csrf}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].endswith("#site-YB-VY-LAMGIANG")
    doc = await (await att_client.get(f"/api/briefings/{OWN.id}/attendance")).json()
    row = next(r for r in doc["sites"] if r["code"] == "YB-VY-LAMGIANG")
    assert row["absence_reason"] == "Họp khác" and row["absence_by"] == "admin2"
    assert doc["summary"]["excused"] == 1
    no_csrf = await att_client.post(url, data={"reason": "x"}, allow_redirects=False)
    assert no_csrf.status == 403


async def test_report_page_timeline_and_print(att_client, login):
    await login(att_client, "organizer")
    resp = await att_client.get(f"/briefings/{OWN.id}/attendance")
    assert resp.status == 200
    html = await resp.text()
    assert "Báo cáo điểm danh: Giao ban tuần 47" in html
    assert "<svg" in html and 'data-site="YB-VY-MAUA"' in html and 'class="drop"' in html
    assert "Có mặt trực tuyến" in html and "Vắng mặt" in html and "Thị trấn Mậu A" in html
    assert "Huyện Văn Yên" in html
    assert "08:42:00" in html  # local time
    assert 'name="reason"' not in html  # only admins record reasons
    assert "@media print" in await (await att_client.get("/static/attendance.css")).text()
    en = await (await att_client.get(f"/briefings/{OWN.id}/attendance?lang=en")).text()
    assert "Attendance report" in en and "Present online" in en
    other = await att_client.get(f"/briefings/{OTHER.id}/attendance")
    assert other.status == 403


async def test_site_period_and_index(att_client, login):
    await login(att_client, "admin")
    resp = await att_client.get("/api/sites/YB-VY-MAUA/attendance?from=2026-11-01&to=2026-11-30")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["invited"] == 2 and doc["attended"] == 1 and doc["absent"] == 1
    assert doc["mean_late_minutes"] == 12 and doc["late"] == 1
    assert [b["id"] for b in doc["briefings"]] == [OWN.id, OTHER.id]
    bad = await att_client.get("/api/sites/YB-VY-MAUA/attendance?from=2026-11-30&to=2026-11-01")
    assert bad.status == 400
    assert (await att_client.get("/api/sites/NOPE/attendance")).status == 404
    page = await att_client.get("/attendance/sites/YB-VY-MAUA?from=2026-11-01&to=2026-11-30")
    assert page.status == 200 and "Giao ban tuần 47" in await page.text()
    index = await att_client.get("/attendance?from=2026-11-01&to=2026-11-30")
    assert index.status == 200 and "Giao ban khác" in await index.text()
    csv_resp = await att_client.get("/api/sites/YB-VY-MAUA/attendance.csv?from=2026-11-01&to=2026-11-30")
    assert 'filename="diem-danh-YB-VY-MAUA-20261101-20261130.csv"' in csv_resp.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO((await csv_resp.read()).decode("utf-8-sig"))))
    assert rows[0][:4] == ["STT", "Thời gian", "Buổi giao ban", "Trạng thái"]
    assert rows[1][:8] == ["1", "16/11/2026 08:30:00", "Giao ban tuần 47", "Có mặt trực tuyến", "16/11/2026 08:42:00", "77.5", "64.58", "12"]
    assert rows[2][:4] == ["2", "17/11/2026 08:30:00", "Giao ban khác", "Vắng mặt"]
    x = await att_client.get("/api/sites/YB-VY-MAUA/attendance.xlsx?from=2026-11-01&to=2026-11-30")
    ws = load_workbook(io.BytesIO(await x.read()))["Điểm danh"]
    assert ws["A1"].value == "Điểm danh của Thị trấn Mậu A (YB-VY-MAUA)"
    assert ws["A2"].value == "Từ ngày 01/11/2026 đến ngày 30/11/2026"
    assert [c.value for c in ws[HEADER_ROW + 1]][:7] == [1, datetime(2026, 11, 16, 8, 30), "Giao ban tuần 47", "Có mặt trực tuyến", datetime(2026, 11, 16, 8, 42), 77.5, 64.58]
    pick = await att_client.get("/attendance/site?code=YB-VY&from=2026-11-01&to=2026-11-30", allow_redirects=False)
    assert pick.headers["Location"] == "/attendance/sites/YB-VY?from=2026-11-01&to=2026-11-30"


async def test_organizer_sees_only_its_briefings_per_site(att_client, login):
    await login(att_client, "organizer")
    doc = await (await att_client.get("/api/sites/YB-VY-MAUA/attendance?from=2026-11-01&to=2026-11-30")).json()
    assert [b["id"] for b in doc["briefings"]] == [OWN.id]
    index = await (await att_client.get("/attendance?from=2026-11-01&to=2026-11-30")).text()
    assert "Giao ban tuần 47" in index and "Giao ban khác" not in index


async def test_healthz_shows_the_attendance_log(att_client):
    doc = await (await att_client.get("/healthz")).json()
    assert doc["attendance"]["redis"] == "up" and doc["attendance"]["spooled"] == 0
    assert doc["attendance"]["written"] == len(EVENTS)
    metrics = await (await att_client.get("/metrics")).text()
    assert f"confsvc_attendance_written_events {float(len(EVENTS))}" in metrics
    assert "confsvc_attendance_redis_up 1.0" in metrics


def test_catalogues_have_the_same_keys():
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / "web" / "i18n"
    vi = json.loads((root / "vi" / "attendance.json").read_text(encoding="utf-8"))
    en = json.loads((root / "en" / "attendance.json").read_text(encoding="utf-8"))
    assert vi.keys() == en.keys()
    assert all(v.strip() for v in [*vi.values(), *en.values()])


async def test_store_unreachable_is_a_clear_503(att_client, api_token, monkeypatch):
    from redis.exceptions import ConnectionError as RedisConnectionError

    async def down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(att_client.app[ATTENDANCE], "report", down)
    headers = {"Authorization": f"Bearer {await api_token('admin')}"}
    resp = await att_client.get(f"/api/briefings/{OWN.id}/attendance.xlsx", headers=headers)
    assert resp.status == 503 and (await resp.json())["error"] == "store_unavailable"
