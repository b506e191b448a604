"""Exports of a briefing report: CSV (UTF-8 with a BOM, so that Excel opens it) and XLSX.

Headers are Vietnamese (the reports are handed in as they are). Times are shown in the province
zone. Both formats carry the same table, one row per site, in the report's order; the XLSX has
real date and number cells, a title block and a summary sheet. A site over a period exports the
same way, one row per briefing.

The CSV uses commas and '.' decimals: Excel opens it as is where the list separator is a comma; on
a PC set to Vietnamese regional settings (';' and ',') use the XLSX.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

from confsvc.attendance.rollups import STATUS_VI, BriefingReport, Grade, SitePeriod, SiteRow

BOM = "\ufeff"
TIME_FMT = "%d/%m/%Y %H:%M:%S"
XLSX_TIME_FMT = "dd/mm/yyyy hh:mm:ss"
GRADE_VI = {Grade.GOOD: "Tốt", Grade.FAIR: "Trung bình", Grade.POOR: "Kém"}
YES = "Có"
NO = "Không"
CONNECTED_NOW = "Đang kết nối"


def _pct(v: float | None) -> float | None:
    return None if v is None else round(v * 100, 2)


def _min(seconds: int) -> float:
    return round(seconds / 60, 1)


# (header, value of a row, XLSX number format or None)
Column = tuple[str, Callable[[int, SiteRow, ZoneInfo], Any], str | None]


def _local(t: datetime | None, zone: ZoneInfo) -> datetime | None:
    return None if t is None else t.astimezone(zone).replace(tzinfo=None)


COLUMNS: list[Column] = [
    ("STT", lambda i, r, z: i, None),
    ("Mã điểm cầu", lambda i, r, z: r.code, None),
    ("Tên điểm cầu", lambda i, r, z: r.name, None),
    ("Huyện, thị xã, thành phố", lambda i, r, z: r.district_name, None),
    ("Được mời", lambda i, r, z: YES if r.invited else NO, None),
    ("Trạng thái", lambda i, r, z: STATUS_VI[r.status], None),
    ("Vào lần đầu", lambda i, r, z: _local(r.first_join, z), XLSX_TIME_FMT),
    ("Rời lần cuối", lambda i, r, z: CONNECTED_NOW if r.connected_now else _local(r.last_leave, z), XLSX_TIME_FMT),
    ("Thời gian tham dự (phút)", lambda i, r, z: _min(r.connected_s), "0.0"),
    ("Tỷ lệ tham dự (%)", lambda i, r, z: _pct(r.share), "0.0"),
    ("Số lần rớt mạng", lambda i, r, z: r.drops, "0"),
    ("Số lần kết nối lại", lambda i, r, z: r.reconnects, "0"),
    ("Đến muộn", lambda i, r, z: YES if r.late else "", None),
    ("Số phút muộn", lambda i, r, z: r.late_minutes if r.late else None, "0.0"),
    ("Về sớm", lambda i, r, z: YES if r.left_early else "", None),
    ("Số phút về sớm", lambda i, r, z: r.left_early_minutes if r.left_early else None, "0.0"),
    ("Trả lời điểm danh", lambda i, r, z: _local(r.roll_call_at, z), XLSX_TIME_FMT),
    ("Số lần được phát biểu", lambda i, r, z: r.floor_count, "0"),
    ("Tỷ lệ mất gói trung bình (%)", lambda i, r, z: _pct(r.mean_loss), "0.00"),
    ("Tỷ lệ mất gói cao nhất (%)", lambda i, r, z: _pct(r.worst_loss), "0.00"),
    ("Độ trễ trung bình (ms)", lambda i, r, z: r.mean_rtt_ms, "0"),
    ("Độ trễ cao nhất (ms)", lambda i, r, z: r.worst_rtt_ms, "0"),
    ("Băng thông nhận trung bình (kbit/s)", lambda i, r, z: r.mean_in_kbps, "0"),
    ("Băng thông gửi trung bình (kbit/s)", lambda i, r, z: r.mean_out_kbps, "0"),
    ("Chất lượng đường truyền", lambda i, r, z: GRADE_VI[r.quality] if r.quality else "", None),
    ("Chất lượng lúc kém nhất", lambda i, r, z: GRADE_VI[r.worst_quality] if r.worst_quality else "", None),
    ("Lý do vắng", lambda i, r, z: r.absence_reason, None),
]
HEADERS = [c[0] for c in COLUMNS]


def table(report: BriefingReport, zone: ZoneInfo) -> list[list[Any]]:
    """The rows of the export as typed values (local naive datetimes, numbers, text, None)."""
    return [[fn(i, r, zone) for _, fn, _ in COLUMNS] for i, r in enumerate(report.rows, start=1)]


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.strftime(TIME_FMT)
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() else repr(v)  # values are rounded already: no exponent, no loss
    return str(v)


def to_csv(report: BriefingReport, zone: ZoneInfo) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(HEADERS)
    for row in table(report, zone):
        w.writerow([_csv_cell(v) for v in row])
    return (BOM + out.getvalue()).encode("utf-8")


SUMMARY_LABELS = [
    ("invited", "Số điểm cầu được mời"),
    ("present", "Có mặt trực tuyến"),
    ("absent", "Vắng mặt"),
    ("excused", "Vắng có lý do"),
    ("pending", "Chưa điểm danh"),
    ("late", "Đến muộn"),
    ("left_early", "Về sớm"),
    ("drops", "Tổng số lần rớt mạng"),
    ("uninvited", "Điểm cầu ngoài danh sách mời"),
]
HEADER_ROW = 5  # the table's header row in the XLSX sheet


def to_xlsx(report: BriefingReport, zone: ZoneInfo) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "Điểm danh"
    start = report.starts_at.astimezone(zone)
    end = report.ends_at.astimezone(zone)
    ws["A1"] = f"Báo cáo điểm danh: {report.title}"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = f"Thời gian: {start:%H:%M} - {end:%H:%M} ngày {start:%d/%m/%Y} (giờ Việt Nam)"
    s = report.summary
    ws["A3"] = (
        f"Được mời: {s.invited}; có mặt: {s.present}; vắng mặt: {s.absent}; vắng có lý do: {s.excused}; "
        f"chưa điểm danh: {s.pending}; đến muộn: {s.late}; về sớm: {s.left_early}"
    )
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE6F0")
    for j, h in enumerate(HEADERS, start=1):
        c = ws.cell(row=HEADER_ROW, column=j, value=h)
        c.font = bold
        c.fill = fill
        c.alignment = Alignment(wrap_text=True, vertical="center")
    for i, row in enumerate(table(report, zone), start=HEADER_ROW + 1):
        for j, (value, (_, _, fmt)) in enumerate(zip(row, COLUMNS, strict=True), start=1):
            c = ws.cell(row=i, column=j, value=value)
            if fmt and value is not None and not isinstance(value, str):
                c.number_format = fmt
    widths = {1: 6, 2: 14, 3: 28, 4: 24, 6: 18, 7: 20, 8: 20, 17: 20, 27: 30}
    for j in range(1, len(HEADERS) + 1):
        ws.column_dimensions[get_column_letter(j)].width = widths.get(j, 13)
    ws.row_dimensions[HEADER_ROW].height = 45
    ws.freeze_panes = ws.cell(row=HEADER_ROW + 1, column=4)
    ws.auto_filter.ref = f"A{HEADER_ROW}:{get_column_letter(len(HEADERS))}{HEADER_ROW + len(report.rows)}"
    ws.print_title_rows = f"{HEADER_ROW}:{HEADER_ROW}"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True

    sm = wb.create_sheet("Tổng hợp")
    sm["A1"] = "Chỉ tiêu"
    sm["B1"] = "Số lượng"
    sm["A1"].font = bold
    sm["B1"].font = bold
    summary = s.to_dict()
    for i, (key, label) in enumerate(SUMMARY_LABELS, start=2):
        sm.cell(row=i, column=1, value=label)
        sm.cell(row=i, column=2, value=summary[key])
    n = len(SUMMARY_LABELS) + 2
    sm.cell(row=n, column=1, value="Tỷ lệ tham dự trung bình (%)")
    sm.cell(row=n, column=2, value=round(s.mean_share * 100, 2))
    sm.cell(row=n + 1, column=1, value="Lập lúc")
    sm.cell(row=n + 1, column=2, value=_local(report.generated_at, zone)).number_format = XLSX_TIME_FMT
    sm.column_dimensions["A"].width = 34
    sm.column_dimensions["B"].width = 20
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def filename(report: BriefingReport, zone: ZoneInfo, ext: str) -> str:
    """An ASCII file name: diem-danh-<id>-<yyyymmdd>.<ext>."""
    day = report.starts_at.astimezone(zone).strftime("%Y%m%d")
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "-" for ch in report.briefing_id)
    return f"diem-danh-{safe}-{day}.{ext}"


# --- a site over a period ---------------------------------------------------------------------
PERIOD_COLUMNS: list[tuple[str, Callable[[int, Any, ZoneInfo], Any], str | None]] = [
    ("STT", lambda i, b, z: i, None),
    ("Thời gian", lambda i, b, z: _local(b.starts_at, z), XLSX_TIME_FMT),
    ("Buổi giao ban", lambda i, b, z: b.title, None),
    ("Trạng thái", lambda i, b, z: STATUS_VI[b.row.status], None),
    ("Vào lần đầu", lambda i, b, z: _local(b.row.first_join, z), XLSX_TIME_FMT),
    ("Thời gian tham dự (phút)", lambda i, b, z: _min(b.row.connected_s), "0.0"),
    ("Tỷ lệ tham dự (%)", lambda i, b, z: _pct(b.row.share), "0.0"),
    ("Số phút muộn", lambda i, b, z: b.row.late_minutes if b.row.late else None, "0.0"),
    ("Về sớm", lambda i, b, z: YES if b.row.left_early else "", None),
    ("Số lần rớt mạng", lambda i, b, z: b.row.drops, "0"),
    ("Tỷ lệ mất gói trung bình (%)", lambda i, b, z: _pct(b.row.mean_loss), "0.00"),
    ("Độ trễ trung bình (ms)", lambda i, b, z: b.row.mean_rtt_ms, "0"),
    ("Chất lượng đường truyền", lambda i, b, z: GRADE_VI[b.row.quality] if b.row.quality else "", None),
    ("Lý do vắng", lambda i, b, z: b.row.absence_reason, None),
]
PERIOD_HEADERS = [c[0] for c in PERIOD_COLUMNS]


def period_table(period: SitePeriod, zone: ZoneInfo) -> list[list[Any]]:
    return [[fn(i, b, zone) for _, fn, _ in PERIOD_COLUMNS] for i, b in enumerate(period.briefings, start=1)]


def period_csv(period: SitePeriod, zone: ZoneInfo) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(PERIOD_HEADERS)
    for row in period_table(period, zone):
        w.writerow([_csv_cell(v) for v in row])
    return (BOM + out.getvalue()).encode("utf-8")


def period_xlsx(period: SitePeriod, zone: ZoneInfo, shown_from: str, shown_to: str) -> bytes:
    wb = Workbook()
    ws = wb.active
    ws.title = "Điểm danh"
    ws["A1"] = f"Điểm danh của {period.name} ({period.code})"
    ws["A1"].font = Font(bold=True, size=14)
    ws["A2"] = f"Từ ngày {shown_from} đến ngày {shown_to}"
    late = f"{period.mean_late_minutes:g}" if period.mean_late_minutes is not None else "-"
    ws["A3"] = (
        f"Được mời: {period.invited}; có mặt: {period.attended}; vắng mặt: {period.absent}; "
        f"vắng có lý do: {period.excused}; đến muộn: {period.late} (trung bình {late} phút)"
    )
    for j, h in enumerate(PERIOD_HEADERS, start=1):
        c = ws.cell(row=HEADER_ROW, column=j, value=h)
        c.font = Font(bold=True)
        c.alignment = Alignment(wrap_text=True, vertical="center")
    for i, row in enumerate(period_table(period, zone), start=HEADER_ROW + 1):
        for j, (value, (_, _, fmt)) in enumerate(zip(row, PERIOD_COLUMNS, strict=True), start=1):
            c = ws.cell(row=i, column=j, value=value)
            if fmt and value is not None and not isinstance(value, str):
                c.number_format = fmt
    for j in range(1, len(PERIOD_HEADERS) + 1):
        ws.column_dimensions[get_column_letter(j)].width = {1: 6, 2: 20, 3: 32, 4: 18, 5: 20, 14: 30}.get(j, 13)
    ws.freeze_panes = ws.cell(row=HEADER_ROW + 1, column=1)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def period_filename(period: SitePeriod, d_from: str, d_to: str, ext: str) -> str:
    safe = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_") else "-" for ch in period.code)
    return f"diem-danh-{safe}-{d_from.replace('-', '')}-{d_to.replace('-', '')}.{ext}"
