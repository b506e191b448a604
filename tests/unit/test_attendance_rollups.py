"""Rollups from synthetic event sequences: no Redis, no sockets."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from confsvc.attendance.briefing import BriefingFacts
from confsvc.attendance.events import (
    AbsenceReason,
    EventError,
    FloorGiven,
    Joined,
    LeaveReason,
    Left,
    MediaToggled,
    QualitySample,
    Reconnected,
    RollCallAnswer,
    decode,
)
from confsvc.attendance.rollups import Accumulator, BriefingReport, Grade, Status, build_report, grade
from confsvc.directory.model import Kind, Site, Tree

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)  # 08:00 in Hà Nội
T1 = T0 + timedelta(hours=2)
AFTER = T1 + timedelta(hours=1)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


TREE = Tree.build(
    [
        Site("P", "Tỉnh", Kind.PROVINCE),
        Site("D1", "Huyện Một", Kind.DISTRICT, "P"),
        Site("D2", "Huyện Hai", Kind.DISTRICT, "P"),
        Site("C1", "Xã A", Kind.COMMUNE, "D1"),
        Site("C2", "Xã B", Kind.COMMUNE, "D1"),
        Site("C3", "Xã C", Kind.COMMUNE, "D2"),
    ]
)
BRIEFING = BriefingFacts("b1", "Giao ban", T0, T1, ("P", "D1", "D2", "C1", "C2", "C3"), "org1")


def report(events, now=AFTER, briefing=BRIEFING) -> BriefingReport:
    packed = [replace(e, id=f"w:{i + 1}").encode() for i, e in enumerate(events)]
    acc = Accumulator(briefing)
    for p in packed:
        acc.add(p)
    bulk = Accumulator(briefing)  # the bulk path gives the same result
    bulk.add_all(packed)
    one, many = build_report(acc, now, TREE), build_report(bulk, now, TREE)
    assert one.to_dict() == many.to_dict()
    return one


def row(rep: BriefingReport, code: str):
    r = rep.row(code)
    assert r is not None
    return r


def test_a_full_attendance_row():
    rep = report([Joined(site="C1", conn="a", at=at(-30)), Left(site="C1", conn="a", at=at(120), reason=LeaveReason.ENDED)])
    r = row(rep, "C1")
    assert r.status is Status.PRESENT
    assert r.connected_s == 7200 and r.share == 1.0
    assert r.first_join == at(-30) and r.last_leave == at(120)
    assert not r.late and not r.left_early and r.drops == 0 and r.reconnects == 0
    assert r.district == "D1" and r.district_name == "Huyện Một"


def test_two_tabs_of_one_site_count_once():
    rep = report(
        [
            Joined(site="C1", conn="tab1", at=at(0)),
            Joined(site="C1", conn="tab2", at=at(10)),
            Left(site="C1", conn="tab1", at=at(60)),
            Left(site="C1", conn="tab2", at=at(90)),
        ]
    )
    r = row(rep, "C1")
    assert r.connected_s == 90 * 60
    assert r.share == pytest.approx(0.75)
    assert len(r.segments) == 1
    assert r.left_early and r.left_early_minutes == 30


def test_reconnect_within_seconds():
    rep = report(
        [
            Joined(site="C2", conn="a", at=at(0)),
            Left(site="C2", conn="a", at=at(30), reason=LeaveReason.DROPPED),
            Reconnected(site="C2", conn="b", previous="a", at=at(30) + timedelta(seconds=4)),
            Left(site="C2", conn="b", at=at(120), reason=LeaveReason.ENDED),
        ]
    )
    r = row(rep, "C2")
    assert r.drops == 1 and r.reconnects == 1
    assert r.connected_s == 7200 - 4
    assert [s.reason for s in r.segments] == ["dropped", "ended"]
    assert r.status is Status.PRESENT and not r.left_early


def test_drop_noticed_after_the_reconnect_counts_once():
    # the server notices the old socket is dead 20 s after the page already came back
    rep = report(
        [
            Joined(site="C2", conn="a", at=at(0)),
            Reconnected(site="C2", conn="b", previous="a", at=at(30)),
            Left(site="C2", conn="a", at=at(30) + timedelta(seconds=20), reason=LeaveReason.DROPPED),
            Left(site="C2", conn="b", at=at(120), reason=LeaveReason.ENDED),
        ]
    )
    r = row(rep, "C2")
    assert r.drops == 1 and r.reconnects == 1
    assert r.connected_s == 7200


def test_events_out_of_order_give_the_same_report():
    events = [
        Joined(site="C1", conn="a", at=at(3)),
        QualitySample(site="C1", conn="a", at=at(4), loss=0.01, rtt_ms=100, bitrate_in=500, bitrate_out=800),
        Left(site="C1", conn="a", at=at(50), reason=LeaveReason.DROPPED),
        Reconnected(site="C1", conn="b", previous="a", at=at(51)),
        QualitySample(site="C1", conn="b", at=at(60), loss=0.05, rtt_ms=300, bitrate_in=300, bitrate_out=600),
        RollCallAnswer(site="C1", conn="b", at=at(61), roll_call="r1"),
        Left(site="C1", conn="b", at=at(119), reason=LeaveReason.LEFT),
        Joined(site="D1", conn="d", at=at(-10)),
        Left(site="D1", conn="d", at=at(130), reason=LeaveReason.ENDED),
    ]
    expected = report(events).to_dict()
    rnd = random.Random(7)
    for _ in range(20):
        shuffled = events[:]
        rnd.shuffle(shuffled)
        got = report(shuffled).to_dict()
        got["events"] = expected["events"]
        assert got == expected


def test_events_outside_the_window_do_not_count():
    rep = report(
        [
            # a lobby test an hour early, then gone
            Joined(site="C3", conn="t", at=at(-60)),
            QualitySample(site="C3", conn="t", at=at(-55), loss=0.5, rtt_ms=2000),
            Left(site="C3", conn="t", at=at(-40)),
            # stays after the end
            Joined(site="C1", conn="a", at=at(100)),
            QualitySample(site="C1", conn="a", at=at(110), loss=0.0, rtt_ms=50),
            QualitySample(site="C1", conn="a", at=at(125), loss=0.9, rtt_ms=5000),
            Left(site="C1", conn="a", at=at(150)),
        ]
    )
    c3 = row(rep, "C3")
    assert c3.status is Status.ABSENT and c3.connected_s == 0 and c3.samples == 0
    assert c3.first_join == at(-60) and c3.last_leave == at(-40)
    assert not c3.late and not c3.left_early
    c1 = row(rep, "C1")
    assert c1.connected_s == 20 * 60 and c1.late and c1.late_minutes == 100
    assert c1.samples == 1 and c1.worst_loss == 0.0 and c1.quality is Grade.GOOD


def test_a_site_that_never_came():
    rep = report([Joined(site="P", conn="p", at=at(-5))], now=AFTER)
    r = row(rep, "C2")
    assert r.status is Status.ABSENT
    assert r.first_join is None and r.last_leave is None and r.connected_s == 0 and r.share == 0
    assert r.samples == 0 and r.mean_loss is None and r.quality is None
    assert r.segments == []
    # before the end it is not yet absent
    live = report([], now=at(30))
    assert row(live, "C2").status is Status.PENDING
    assert live.summary.pending == 6


def test_absence_reason_recorded_by_an_admin_and_withdrawn():
    reason = AbsenceReason(site="C3", reason="Mất điện lưới", by="admin", at=AFTER)
    rep = report([reason])
    r = row(rep, "C3")
    assert r.status is Status.EXCUSED and r.absence_reason == "Mất điện lưới" and r.absence_by == "admin"
    withdrawn = report([reason, AbsenceReason(site="C3", reason="", by="admin", at=AFTER + timedelta(minutes=1))])
    assert row(withdrawn, "C3").status is Status.ABSENT
    assert row(withdrawn, "C3").absence_reason == ""
    # a reason does not hide that a site was there
    present = report([Joined(site="C3", conn="x", at=at(0)), Left(site="C3", conn="x", at=at(1)), reason])
    assert row(present, "C3").status is Status.PRESENT


def test_node_crash_leaves_no_left_event():
    # samples stop at minute 40 (the node died); the page never came back
    events = [Joined(site="C1", conn="a", at=at(0))]
    events += [QualitySample(site="C1", conn="a", at=at(0) + timedelta(seconds=10 * i), loss=0, rtt_ms=40) for i in range(1, 241)]
    rep = report(events)
    r = row(rep, "C1")
    assert r.drops == 1 and r.segments[-1].reason == "lost"
    assert r.connected_s == 40 * 60 and r.left_early
    # while it is fresh, the connection is live
    live = report(events, now=at(40) + timedelta(seconds=5))
    assert row(live, "C1").connected_now and row(live, "C1").last_leave is None
    assert row(live, "C1").drops == 0


def test_quality_mean_worst_and_grades():
    events = [Joined(site="C1", conn="a", at=at(0))]
    losses = [0.0, 0.01, 0.03, 0.2]
    rtts = [50, 100, 200, 900]
    events += [
        QualitySample(site="C1", conn="a", at=at(i + 1), loss=loss, rtt_ms=rtt, bitrate_in=400, bitrate_out=1200, layer="m")
        for i, (loss, rtt) in enumerate(zip(losses, rtts, strict=True))
    ]
    r = row(report(events), "C1")
    assert r.samples == 4
    assert r.mean_loss == pytest.approx(0.06) and r.worst_loss == 0.2
    assert r.mean_rtt_ms == 312.5 and r.worst_rtt_ms == 900
    assert r.mean_in_kbps == 400 and r.mean_out_kbps == 1200
    assert r.quality is Grade.FAIR and r.worst_quality is Grade.POOR
    assert grade(0.0, 10) is Grade.GOOD and grade(None, 1) is None


def test_roll_call_floor_and_media_events():
    events = [
        Joined(site="D2", conn="a", at=at(0)),
        MediaToggled(site="D2", conn="a", at=at(1), medium="mic", on=True),
        RollCallAnswer(site="D2", conn="a", at=at(5), roll_call="r1", answer="present"),
        RollCallAnswer(site="D2", conn="a", at=at(50), roll_call="r2", answer="present"),
        FloorGiven(site="D2", conn="a", at=at(20), by="chair"),
        FloorGiven(site="D2", conn="a", at=at(70), by="chair"),
    ]
    r = row(report(events), "D2")
    assert r.roll_call == "present" and r.roll_call_at == at(50)
    assert r.floor_count == 2


def test_uninvited_site_is_listed_after_the_invited_ones():
    b = BriefingFacts("b2", "x", T0, T1, ("C1", "C2"), "org1")
    rep = report([Joined(site="C3", conn="z", at=at(0))], briefing=b)
    assert [(r.code, r.invited) for r in rep.rows] == [("C1", True), ("C2", True), ("C3", False)]
    assert rep.summary.invited == 2 and rep.summary.uninvited == 1 and rep.summary.absent == 2


def test_rows_follow_the_directory_order_and_summary():
    rep = report(
        [
            Joined(site="P", conn="p", at=at(-10)),
            Left(site="P", conn="p", at=at(120), reason=LeaveReason.ENDED),
            Joined(site="C2", conn="c", at=at(8)),
            Left(site="C2", conn="c", at=at(120), reason=LeaveReason.ENDED),
            AbsenceReason(site="C3", reason="Họp khác", by="admin", at=AFTER),
        ]
    )
    # the directory's order: province, then each district (by name) followed by its communes
    assert [r.code for r in rep.rows] == ["P", "D2", "C3", "D1", "C1", "C2"]
    s = rep.summary
    assert (s.invited, s.present, s.absent, s.excused, s.pending, s.late) == (6, 2, 3, 1, 0, 1)
    assert BriefingReport.from_dict(rep.to_dict()).to_dict() == rep.to_dict()


def test_decode_round_trip_and_bad_events():
    e = QualitySample(site="C1", conn="a", node="n1", at=at(1), loss=0.0125, rtt_ms=80.5, bitrate_in=321, layer="l", id="w:1")
    assert decode(e.encode()) == e
    assert e.encode() == "quality|w:1|C1|a|n1|1795136460000|321|0|0.0125|80.5|l"
    assert decode("future_type|w:2|C1|a|n1|0|x") is None
    # free text survives any character; identifiers may not hold the separator
    text = AbsenceReason(site="C1", reason="Mất điện | 100% \n bão", by="admin", at=at(1), id="w:3")
    assert decode(text.encode()) == text
    with pytest.raises(EventError):
        Joined(site="C1", conn="a|b").check()
    with pytest.raises(EventError):
        QualitySample(site="C1", conn="a", loss=1.5).check()
    with pytest.raises(EventError):
        Left(site="C1", conn="a", reason="vanished").check()  # type: ignore[arg-type]
    with pytest.raises(EventError):
        Joined(site="", conn="a").check()
    with pytest.raises(EventError):
        Joined(site="C1", conn="a", at=datetime(2026, 1, 1)).check()
