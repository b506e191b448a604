"""Rollups: from a briefing's events to the per-site rows admins hand in. Pure, no I/O.

``Accumulator`` takes events in their packed form (``events.Event.encode()``) one at a time, in any
order, and keeps only what the report needs: per connection its start, end, reason and last sign
of life; per site running quality sums, the last roll-call answer and absence reason. Memory
grows with the number of connections and sites, not with the number of quality samples, so the
log of a long briefing is read in chunks.

Rules (the report's legend says the same in words):

- A connection runs from ``joined``/``reconnected`` to ``left``. One without ``left`` (its node
  crashed, or the log was cut) is still connected if it showed life (any event) in the last
  ``LIVE_SLACK`` before ``now``; otherwise it ended at its last sign of life and counts as a drop
  (reason ``lost``).
- A site's connections are merged (two tabs count once); time connected is the merged time inside
  the scheduled window. Attendance share = that time / the scheduled time.
- Drops: connections that ended ``dropped`` or ``lost``, or that a ``reconnected`` event names as
  the one it replaces (each counted once), when the drop falls inside the window. Reconnects:
  ``reconnected`` connections starting inside the window.
- Late: the first join is after start + grace (5 min). Left early: connected in the window, not
  connected now, the last leave is before end - grace and was not the briefing ending.
- Status: present (connected at some time inside the window); else excused (an admin recorded a
  reason); else pending ("chưa điểm danh": the briefing has not ended yet); else absent.
- Quality: samples taken inside the window; mean and worst loss and RTT, mean bitrates.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from confsvc.attendance.briefing import BriefingInfo
from confsvc.attendance.events import TYPES, unesc
from confsvc.directory.model import Tree

GRACE = timedelta(minutes=5)
LIVE_SLACK_MS = 30_000
DROP_REASONS = frozenset({"dropped", "lost"})


class Status(StrEnum):
    PRESENT = "present"
    ABSENT = "absent"
    EXCUSED = "excused"
    PENDING = "pending"


STATUS_VI = {
    Status.PRESENT: "Có mặt trực tuyến",
    Status.ABSENT: "Vắng mặt",
    Status.EXCUSED: "Vắng có lý do",
    Status.PENDING: "Chưa điểm danh",
}


class Grade(StrEnum):
    GOOD = "good"
    FAIR = "fair"
    POOR = "poor"


def grade(loss: float | None, rtt_ms: float | None) -> Grade | None:
    """Link quality in three steps: good (<2 % loss, <300 ms), fair (<8 %, <800 ms), else poor."""
    if loss is None or rtt_ms is None:
        return None
    if loss < 0.02 and rtt_ms < 300:
        return Grade.GOOD
    if loss < 0.08 and rtt_ms < 800:
        return Grade.FAIR
    return Grade.POOR


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


class _Conn:
    __slots__ = ("site", "start", "end", "reason", "first_seen", "last_seen", "reconnect", "previous")

    def __init__(self, site: str, at: int) -> None:
        self.site = site
        self.start: int | None = None
        self.end: int | None = None
        self.reason: str | None = None
        self.first_seen = at
        self.last_seen = at
        self.reconnect = False
        self.previous = ""


class _Quality:
    __slots__ = ("n", "loss_sum", "loss_max", "rtt_sum", "rtt_max", "in_sum", "out_sum")

    def __init__(self) -> None:
        self.n = 0
        self.loss_sum = 0.0
        self.loss_max = 0.0
        self.rtt_sum = 0.0
        self.rtt_max = 0.0
        self.in_sum = 0.0
        self.out_sum = 0.0


class Accumulator:
    """Collects one briefing's events (any order) for ``build_report``."""

    def __init__(self, briefing: BriefingInfo) -> None:
        self.briefing = briefing
        self.ws = _ms(briefing.starts_at)
        self.we = _ms(briefing.ends_at)
        self.conns: dict[str, _Conn] = {}
        self.quality: dict[str, _Quality] = {}
        self.rollcall: dict[str, tuple[int, str, str]] = {}  # site -> (at, roll call, answer)
        self.reasons: dict[str, tuple[int, int, str, str]] = {}  # site -> (at, order, reason, by)
        self.floor: dict[str, int] = {}
        self.events = 0
        self.unknown = 0
        self.sites_seen: set[str] = set()

    def add_all(self, entries: Iterable[str]) -> None:
        """Many packed events: ``add`` for each, with the quality-sample path inlined (the bulk of a log)."""
        ws, we = self.ws, self.we
        conns, quality = self.conns, self.quality
        isfinite = math.isfinite
        add = self.add
        for packed in entries:
            if not packed.startswith("quality|"):
                add(packed)
                continue
            p = packed.split("|")
            if len(p) < 10:
                add(packed)
                continue
            try:
                at = int(p[5])
            except ValueError:
                add(packed)
                continue
            self.events += 1
            site = p[2]
            cid = p[3]
            if cid:
                c = conns.get(cid)
                if c is None:
                    conns[cid] = _Conn(site, at)
                elif at > c.last_seen:
                    c.last_seen = at
                elif at < c.first_seen:
                    c.first_seen = at
            if ws <= at <= we:
                try:
                    bi = float(p[6])
                    bo = float(p[7])
                    loss = float(p[8])
                    rtt = float(p[9])
                except ValueError:
                    continue
                if not (isfinite(loss) and isfinite(rtt) and isfinite(bi) and isfinite(bo)):
                    continue
                q = quality.get(site)
                if q is None:
                    q = quality[site] = _Quality()
                q.n += 1
                q.in_sum += bi
                q.out_sum += bo
                q.loss_sum += loss
                q.rtt_sum += rtt
                if loss > q.loss_max:
                    q.loss_max = loss
                if rtt > q.rtt_max:
                    q.rtt_max = rtt

    def add(self, packed: str) -> None:
        """One event in its packed form (``Event.encode()``, the stream entry's ``e``)."""
        self.events += 1
        p = packed.split("|")
        try:
            t = p[0]
            site = p[2]
            cid = p[3]
            at = int(p[5])
        except (IndexError, ValueError):
            self.unknown += 1
            return
        if t == "quality":  # the hot path: ~95 % of a briefing's events
            if cid:
                c = self.conns.get(cid)
                if c is None:
                    c = self.conns[cid] = _Conn(site, at)
                elif at > c.last_seen:
                    c.last_seen = at
                elif at < c.first_seen:
                    c.first_seen = at
            if self.ws <= at <= self.we:
                try:
                    bi = float(p[6])
                    bo = float(p[7])
                    loss = float(p[8])
                    rtt = float(p[9])
                except (IndexError, ValueError):
                    return
                if not (math.isfinite(loss) and math.isfinite(rtt) and math.isfinite(bi) and math.isfinite(bo)):
                    return
                q = self.quality.get(site)
                if q is None:
                    q = self.quality[site] = _Quality()
                q.n += 1
                q.in_sum += bi
                q.out_sum += bo
                q.loss_sum += loss
                q.rtt_sum += rtt
                if loss > q.loss_max:
                    q.loss_max = loss
                if rtt > q.rtt_max:
                    q.rtt_max = rtt
            return
        if t not in TYPES:
            self.unknown += 1
            return
        self.sites_seen.add(site)
        if cid:
            c = self.conns.get(cid)
            if c is None:
                c = self.conns[cid] = _Conn(site, at)
            else:
                if at > c.last_seen:
                    c.last_seen = at
                if at < c.first_seen:
                    c.first_seen = at
            if t == "joined" or t == "reconnected":
                if c.start is None or at < c.start:
                    c.start = at
                if t == "reconnected":
                    c.reconnect = True
                    c.previous = p[6] if len(p) > 6 else ""
                return
            if t == "left":
                if c.end is None or at < c.end:
                    c.end = at
                    c.reason = (p[6] if len(p) > 6 else "") or "left"
                return
        if t == "rollcall":
            prev = self.rollcall.get(site)
            if prev is None or at >= prev[0]:
                self.rollcall[site] = (at, p[6] if len(p) > 6 else "", unesc(p[7]) if len(p) > 7 else "")
        elif t == "floor_given":
            if self.ws <= at <= self.we:
                self.floor[site] = self.floor.get(site, 0) + 1
        elif t == "absence_reason":
            prev_r = self.reasons.get(site)
            if prev_r is None or at >= prev_r[0]:
                by = unesc(p[6]) if len(p) > 6 else ""
                why = unesc(p[7]) if len(p) > 7 else ""
                self.reasons[site] = (at, self.events, why, by)


@dataclass(frozen=True)
class Segment:
    """A stretch of time a site was connected (its connections merged)."""

    start: datetime
    end: datetime
    reason: str  # how it ended: left, dropped, removed, ended, lost; "" while still connected
    open: bool = False


@dataclass
class SiteRow:
    code: str
    name: str
    kind: str
    district: str  # district code ("" for the province hall and unknown sites)
    district_name: str
    invited: bool
    status: Status
    first_join: datetime | None
    last_leave: datetime | None
    connected_now: bool
    connected_s: int
    share: float
    drops: int
    reconnects: int
    late: bool
    late_minutes: float
    left_early: bool
    left_early_minutes: float
    roll_call: str | None
    roll_call_at: datetime | None
    floor_count: int
    samples: int
    mean_loss: float | None
    worst_loss: float | None
    mean_rtt_ms: float | None
    worst_rtt_ms: float | None
    mean_in_kbps: float | None
    mean_out_kbps: float | None
    quality: Grade | None
    worst_quality: Grade | None
    absence_reason: str
    absence_by: str
    absence_at: datetime | None
    segments: list[Segment] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in list(d.items()):
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["status"] = str(self.status)
        d["quality"] = str(self.quality) if self.quality else None
        d["worst_quality"] = str(self.worst_quality) if self.worst_quality else None
        d["segments"] = [
            {"start": s.start.isoformat(), "end": s.end.isoformat(), "reason": s.reason, "open": s.open} for s in self.segments
        ]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SiteRow:
        kw = dict(d)
        for k in ("first_join", "last_leave", "roll_call_at", "absence_at"):
            kw[k] = datetime.fromisoformat(kw[k]) if kw.get(k) else None
        kw["status"] = Status(kw["status"])
        kw["quality"] = Grade(kw["quality"]) if kw.get("quality") else None
        kw["worst_quality"] = Grade(kw["worst_quality"]) if kw.get("worst_quality") else None
        kw["segments"] = [
            Segment(datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"]), s["reason"], s["open"])
            for s in kw.get("segments", [])
        ]
        return cls(**kw)


@dataclass
class Summary:
    invited: int
    present: int
    absent: int
    excused: int
    pending: int
    late: int
    left_early: int
    drops: int
    connected_now: int
    uninvited: int
    mean_share: float  # over invited sites
    scheduled_s: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class BriefingReport:
    briefing_id: str
    title: str
    organizer: str
    starts_at: datetime
    ends_at: datetime
    generated_at: datetime
    finished: bool  # the scheduled end is past: the report no longer changes unless events arrive
    rows: list[SiteRow]
    summary: Summary
    events: int
    unknown_events: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "briefing": {
                "id": self.briefing_id,
                "title": self.title,
                "organizer": self.organizer,
                "starts_at": self.starts_at.isoformat(),
                "ends_at": self.ends_at.isoformat(),
            },
            "generated_at": self.generated_at.isoformat(),
            "finished": self.finished,
            "grace_minutes": GRACE.total_seconds() / 60,
            "summary": self.summary.to_dict(),
            "events": self.events,
            "unknown_events": self.unknown_events,
            "sites": [r.to_dict() for r in self.rows],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BriefingReport:
        b = d["briefing"]
        return cls(
            briefing_id=b["id"],
            title=b["title"],
            organizer=b["organizer"],
            starts_at=datetime.fromisoformat(b["starts_at"]),
            ends_at=datetime.fromisoformat(b["ends_at"]),
            generated_at=datetime.fromisoformat(d["generated_at"]),
            finished=d["finished"],
            rows=[SiteRow.from_dict(r) for r in d["sites"]],
            summary=Summary(**d["summary"]),
            events=d["events"],
            unknown_events=d["unknown_events"],
        )

    def row(self, code: str) -> SiteRow | None:
        return next((r for r in self.rows if r.code == code), None)


def _site_order(briefing: BriefingInfo, tree: Tree | None, seen: Iterable[str]) -> list[tuple[str, bool]]:
    invited = list(dict.fromkeys(briefing.invited))
    inv = set(invited)
    extra = set(seen) - inv
    out: list[tuple[str, bool]] = []
    placed: set[str] = set()
    if tree is not None:
        for s in tree.ordered():
            if s.code in inv:
                out.append((s.code, True))
                placed.add(s.code)
    out.extend((c, True) for c in invited if c not in placed)
    if extra:
        order = {s.code: i for i, s in enumerate(tree.ordered())} if tree is not None else {}
        out.extend((c, False) for c in sorted(extra, key=lambda c: (order.get(c, 10**9), c)))
    return out


def _merge(intervals: list[tuple[int, int, str, bool]]) -> list[tuple[int, int, str, bool]]:
    """Union of (start, end, reason, open) intervals; a merged one ends as its latest-ending part."""
    out: list[tuple[int, int, str, bool]] = []
    for s, e, r, o in sorted(intervals):
        if out and s <= out[-1][1]:
            ps, pe, pr, po = out[-1]
            if e > pe or (e == pe and o):
                out[-1] = (ps, e, r, o)
            else:
                out[-1] = (ps, pe, pr, po or o)
        else:
            out.append((s, e, r, o))
    return out


def build_report(acc: Accumulator, now: datetime, tree: Tree | None = None) -> BriefingReport:
    b = acc.briefing
    ws, we = acc.ws, acc.we
    scheduled = max(0, we - ws)
    grace = int(GRACE.total_seconds() * 1000)
    now_ms = _ms(now)

    by_site: dict[str, list[tuple[str, _Conn]]] = {}
    for cid, c in acc.conns.items():
        by_site.setdefault(c.site, []).append((cid, c))

    seen = set(acc.sites_seen) | set(by_site)
    rows: list[SiteRow] = []
    for code, invited in _site_order(b, tree, seen):
        conns = by_site.get(code, [])
        intervals: list[tuple[int, int, str, bool]] = []
        drop_at: dict[str, int] = {}
        reconnects = 0
        # connections that a reconnect names as the one it replaces: they dropped, at the latest then
        replaced: dict[str, int] = {}
        for _, c in conns:
            if c.reconnect and c.previous:
                at = c.start if c.start is not None else c.first_seen
                replaced[c.previous] = min(at, replaced.get(c.previous, at))
        for cid, c in conns:
            start = c.start if c.start is not None else c.first_seen
            if c.end is not None:
                end, reason, is_open = c.end, c.reason or "left", False
            elif cid in replaced:
                end, reason, is_open = c.last_seen, "dropped", False
            elif now_ms - c.last_seen <= LIVE_SLACK_MS:
                end, reason, is_open = max(now_ms, start), "", True
            else:
                end, reason, is_open = c.last_seen, "lost", False
            end = max(end, start)
            intervals.append((start, end, reason, is_open))
            if reason in DROP_REASONS:
                drop_at[cid] = end
            elif cid in replaced:
                drop_at[cid] = min(end, replaced[cid])
            if c.reconnect and ws <= start <= we:
                reconnects += 1
        known = {k for k, _ in conns}
        for cid, at in replaced.items():
            if cid not in drop_at and cid not in known:
                drop_at[cid] = at  # the replaced connection left no other trace (its node's events were lost)
        merged = _merge(intervals)
        connected = sum(max(0, min(e, we) - max(s, ws)) for s, e, _, _ in merged)
        connected_now = any(o for *_, o in merged)
        first = merged[0][0] if merged else None
        last = None if not merged or connected_now else max(e for _, e, _, _ in merged)
        last_reason = merged[-1][2] if merged else ""
        present = connected > 0
        drops = sum(1 for t in drop_at.values() if ws <= t <= we)
        late = present and first is not None and first > ws + grace
        late_min = round(max(0, first - ws) / 60000, 1) if present and first is not None else 0.0
        left_early = present and last is not None and last < we - grace and last_reason != "ended"
        left_early_min = round((we - last) / 60000, 1) if left_early and last is not None else 0.0
        reason = acc.reasons.get(code)
        reason_text = reason[2] if reason else ""
        if present:
            status = Status.PRESENT
        elif reason_text:
            status = Status.EXCUSED
        elif now_ms < we:
            status = Status.PENDING
        else:
            status = Status.ABSENT
        q = acc.quality.get(code)
        n = q.n if q else 0
        mean_loss = q.loss_sum / n if q and n else None
        mean_rtt = q.rtt_sum / n if q and n else None
        rc = acc.rollcall.get(code)
        site = tree.sites.get(code) if tree is not None else None
        district = tree.district_of(code) if tree is not None else None
        rows.append(
            SiteRow(
                code=code,
                name=site.name if site else code,
                kind=str(site.kind) if site else "",
                district=district.code if district else "",
                district_name=district.name if district else "",
                invited=invited,
                status=status,
                first_join=_dt(first),
                last_leave=_dt(last),
                connected_now=connected_now,
                connected_s=connected // 1000,
                share=round(connected / scheduled, 4) if scheduled else 0.0,
                drops=drops,
                reconnects=reconnects,
                late=late,
                late_minutes=late_min,
                left_early=left_early,
                left_early_minutes=left_early_min,
                roll_call=rc[2] if rc else None,
                roll_call_at=_dt(rc[0]) if rc else None,
                floor_count=acc.floor.get(code, 0),
                samples=n,
                mean_loss=round(mean_loss, 4) if mean_loss is not None else None,
                worst_loss=round(q.loss_max, 4) if q and n else None,
                mean_rtt_ms=round(mean_rtt, 1) if mean_rtt is not None else None,
                worst_rtt_ms=round(q.rtt_max, 1) if q and n else None,
                mean_in_kbps=round(q.in_sum / n, 1) if q and n else None,
                mean_out_kbps=round(q.out_sum / n, 1) if q and n else None,
                quality=grade(mean_loss, mean_rtt),
                worst_quality=grade(q.loss_max, q.rtt_max) if q and n else None,
                absence_reason=reason_text,
                absence_by=reason[3] if reason and reason_text else "",
                absence_at=_dt(reason[0]) if reason and reason_text else None,
                segments=[Segment(_dt(s), _dt(e), r, o) for s, e, r, o in merged],  # type: ignore[arg-type]
            )
        )
    inv_rows = [r for r in rows if r.invited]
    summary = Summary(
        invited=len(inv_rows),
        present=sum(r.status is Status.PRESENT for r in inv_rows),
        absent=sum(r.status is Status.ABSENT for r in inv_rows),
        excused=sum(r.status is Status.EXCUSED for r in inv_rows),
        pending=sum(r.status is Status.PENDING for r in inv_rows),
        late=sum(r.late for r in inv_rows),
        left_early=sum(r.left_early for r in inv_rows),
        drops=sum(r.drops for r in inv_rows),
        connected_now=sum(r.connected_now for r in inv_rows),
        uninvited=len(rows) - len(inv_rows),
        mean_share=round(sum(r.share for r in inv_rows) / len(inv_rows), 4) if inv_rows else 0.0,
        scheduled_s=scheduled // 1000,
    )
    return BriefingReport(
        briefing_id=b.id,
        title=b.title,
        organizer=b.organizer,
        starts_at=b.starts_at,
        ends_at=b.ends_at,
        generated_at=now,
        finished=now_ms >= we + LIVE_SLACK_MS,
        rows=rows,
        summary=summary,
        events=acc.events,
        unknown_events=acc.unknown,
    )


# --- per site over a period -------------------------------------------------------------------
@dataclass
class SiteBriefing:
    briefing_id: str
    title: str
    starts_at: datetime
    ends_at: datetime
    row: SiteRow


@dataclass
class SitePeriod:
    code: str
    name: str
    start: datetime
    end: datetime
    invited: int
    attended: int
    absent: int
    excused: int
    pending: int
    late: int
    mean_late_minutes: float | None  # over attended briefings
    mean_share: float | None  # over briefings that have ended
    mean_loss: float | None  # over attended briefings with samples
    mean_rtt_ms: float | None
    quality: Grade | None
    drops: int
    briefings: list[SiteBriefing]

    def to_dict(self) -> dict[str, Any]:
        return {
            "site": {"code": self.code, "name": self.name},
            "from": self.start.isoformat(),
            "to": self.end.isoformat(),
            "invited": self.invited,
            "attended": self.attended,
            "absent": self.absent,
            "excused": self.excused,
            "pending": self.pending,
            "late": self.late,
            "mean_late_minutes": self.mean_late_minutes,
            "mean_share": self.mean_share,
            "mean_loss": self.mean_loss,
            "mean_rtt_ms": self.mean_rtt_ms,
            "quality": str(self.quality) if self.quality else None,
            "drops": self.drops,
            "briefings": [
                {
                    "id": b.briefing_id,
                    "title": b.title,
                    "starts_at": b.starts_at.isoformat(),
                    "ends_at": b.ends_at.isoformat(),
                    **{k: v for k, v in b.row.to_dict().items() if k not in ("segments", "code", "name", "kind")},
                }
                for b in self.briefings
            ],
        }


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def site_period(code: str, name: str, start: datetime, end: datetime, items: Sequence[SiteBriefing]) -> SitePeriod:
    """Roll a site's rows of several briefings (those it was invited to) into one line."""
    inv = [i for i in items if i.row.invited]
    attended = [i for i in inv if i.row.status is Status.PRESENT]
    closed = [i for i in inv if i.row.status is not Status.PENDING]
    with_q = [i for i in attended if i.row.samples]
    mean_loss = _mean([i.row.mean_loss for i in with_q if i.row.mean_loss is not None])
    mean_rtt = _mean([i.row.mean_rtt_ms for i in with_q if i.row.mean_rtt_ms is not None])
    late_mean = _mean([i.row.late_minutes for i in attended])
    return SitePeriod(
        code=code,
        name=name,
        start=start,
        end=end,
        invited=len(inv),
        attended=len(attended),
        absent=sum(i.row.status is Status.ABSENT for i in inv),
        excused=sum(i.row.status is Status.EXCUSED for i in inv),
        pending=sum(i.row.status is Status.PENDING for i in inv),
        late=sum(i.row.late for i in inv),
        mean_late_minutes=round(late_mean, 1) if late_mean is not None else None,
        mean_share=_mean([i.row.share for i in closed]),
        mean_loss=mean_loss,
        mean_rtt_ms=round(mean_rtt, 1) if mean_rtt is not None else None,
        quality=grade(mean_loss, mean_rtt),
        drops=sum(i.row.drops for i in inv),
        briefings=list(inv),
    )
