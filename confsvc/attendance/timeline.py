"""The timeline chart of a briefing, drawn server-side as SVG (no script, prints as it is).

One bar per site, grouped by district (the province hall first, uninvited sites last), a gap
wherever the site was away, a red tick where a connection dropped. The scheduled window is
shaded; the axis shows local time. Text comes in through ``labels`` (the page's language).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from xml.sax.saxutils import escape
from zoneinfo import ZoneInfo

from confsvc.attendance.rollups import BriefingReport, SiteRow, Status

LABEL_W = 230
CHART_W = 860
ROW_H = 14
GROUP_H = 20
TOP = 34
PAD = 24  # room for the last tick's label
MAX_LEAD = timedelta(minutes=60)
MAX_TAIL = timedelta(minutes=60)

ATTR = {'"': "&quot;", "'": "&apos;"}
STATUS_CLASS = {Status.PRESENT: "present", Status.ABSENT: "absent", Status.EXCUSED: "excused", Status.PENDING: "pending"}

DEFAULT_LABELS = {
    "province": "Tỉnh",
    "uninvited": "Ngoài danh sách mời",
    "other": "Khác",
    "connected": "Kết nối {start} - {end}",
    "dropped": "rớt mạng",
    "now": "đang kết nối",
}

STYLE = """
.tl text{font:11px system-ui,'Noto Sans',Arial,sans-serif;fill:#1b2430}
.tl .grp{font-weight:700}
.tl .tick{stroke:#c9d1db;stroke-width:1}
.tl .ticklabel{fill:#5b6675;font-size:10px}
.tl .window{fill:#eef4fb}
.tl .row-absent{fill:#fbe9e9}
.tl .row-excused{fill:#fff4e0}
.tl .bar{fill:#2e7d32}
.tl .bar.uninvited{fill:#7a8796}
.tl .drop{stroke:#c62828;stroke-width:2}
.tl .edge{stroke:#1f5fae;stroke-width:1.5;stroke-dasharray:3 2}
"""


def _ticks(lo: datetime, hi: datetime, zone: ZoneInfo) -> list[datetime]:
    span = (hi - lo).total_seconds() / 60
    step = next(s for s in (5, 10, 15, 30, 60, 120, 240, 480, 1440) if span / s <= 12)
    local = lo.astimezone(zone)
    first = local.replace(second=0, microsecond=0, minute=0)
    out = []
    t = first
    while t <= hi:
        if t >= lo:
            out.append(t)
        t += timedelta(minutes=step)
    return out


def _groups(report: BriefingReport, labels: Mapping[str, str]) -> list[tuple[str, list[SiteRow]]]:
    groups: list[tuple[str, list[SiteRow]]] = []
    index: dict[str, int] = {}
    uninvited: list[SiteRow] = []
    for r in report.rows:
        if not r.invited:
            uninvited.append(r)
            continue
        if r.kind == "district":
            key, title = r.code, r.name
        elif r.district:
            key, title = r.district, r.district_name
        elif r.kind == "province":
            key, title = "", labels["province"]
        else:
            key, title = "?", labels["other"]
        if key not in index:
            index[key] = len(groups)
            groups.append((title, []))
        groups[index[key]][1].append(r)
    if uninvited:
        groups.append((labels["uninvited"], uninvited))
    return groups


def render(report: BriefingReport, zone: ZoneInfo, labels: Mapping[str, str] | None = None) -> str:
    lab = {**DEFAULT_LABELS, **(labels or {})}
    ws, we = report.starts_at, report.ends_at
    starts = [s.start for r in report.rows for s in r.segments]
    ends = [s.end for r in report.rows for s in r.segments]
    lo = max(min([ws, *starts]), ws - MAX_LEAD)
    hi = min(max([we, *ends]), we + MAX_TAIL)
    span = max((hi - lo).total_seconds(), 60.0)

    def x(t: datetime) -> float:
        return LABEL_W + CHART_W * min(max((t - lo).total_seconds() / span, 0.0), 1.0)

    groups = _groups(report, lab)
    height = TOP + sum(GROUP_H + ROW_H * len(rows) for _, rows in groups) + PAD
    width = LABEL_W + CHART_W + PAD
    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tl" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">',
        f"<style>{STYLE}</style>",
        f'<rect class="window" x="{x(ws):.1f}" y="{TOP - 6}" width="{x(we) - x(ws):.1f}" height="{height - TOP + 6}"/>',
    ]
    for t in _ticks(lo, hi, zone):
        tx = x(t)
        out.append(f'<line class="tick" x1="{tx:.1f}" y1="{TOP - 8}" x2="{tx:.1f}" y2="{height}"/>')
        out.append(f'<text class="ticklabel" x="{tx:.1f}" y="{TOP - 12}" text-anchor="middle">{t:%H:%M}</text>')
    for edge in (ws, we):
        ex = x(edge)
        out.append(f'<line class="edge" x1="{ex:.1f}" y1="{TOP - 8}" x2="{ex:.1f}" y2="{height}"/>')
    y = TOP
    fmt = "%H:%M:%S"
    for title, rows in groups:
        out.append(f'<text class="grp" x="4" y="{y + GROUP_H - 6}">{escape(title)}</text>')
        y += GROUP_H
        for r in rows:
            cls = STATUS_CLASS[r.status]
            out.append(f'<g class="site {cls}" data-site="{escape(r.code, ATTR)}">')
            if r.status in (Status.ABSENT, Status.EXCUSED):
                out.append(f'<rect class="row-{cls}" x="{LABEL_W}" y="{y}" width="{CHART_W}" height="{ROW_H - 1}"/>')
            name = r.name if len(r.name) <= 34 else r.name[:33] + "…"
            out.append(f'<text x="14" y="{y + ROW_H - 3}">{escape(name)}</text>')
            for s in r.segments:
                if s.end < lo or s.start > hi:
                    continue
                x0, x1 = x(s.start), x(s.end)
                end_text = lab["now"] if s.open else s.end.astimezone(zone).strftime(fmt)
                tip = lab["connected"].format(start=s.start.astimezone(zone).strftime(fmt), end=end_text)
                if s.reason in ("dropped", "lost"):
                    tip += f" ({lab['dropped']})"
                bar_cls = "bar" if r.invited else "bar uninvited"
                out.append(
                    f'<rect class="{bar_cls}" x="{x0:.1f}" y="{y + 2}" width="{max(x1 - x0, 1.0):.1f}" height="{ROW_H - 5}">'
                    f"<title>{escape(r.name)}: {escape(tip)}</title></rect>"
                )
                if s.reason in ("dropped", "lost") and lo <= s.end <= hi:
                    out.append(f'<line class="drop" x1="{x1:.1f}" y1="{y + 1}" x2="{x1:.1f}" y2="{y + ROW_H - 2}"/>')
            out.append("</g>")
            y += ROW_H
    out.append("</svg>")
    return "".join(out)
