"""Properties of the rollups over random connection histories (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from confsvc.attendance.briefing import BriefingFacts
from confsvc.attendance.events import Joined, LeaveReason, Left, QualitySample
from confsvc.attendance.rollups import Accumulator, Status, build_report

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
B = BriefingFacts("p", "x", T0, T0 + timedelta(minutes=120), ("S",), "o")
AFTER = T0 + timedelta(hours=5)

conn = st.tuples(
    st.integers(-60, 180),  # start minute
    st.integers(0, 90),  # duration
    st.sampled_from(list(LeaveReason)),
)


def events_for(conns):
    out = []
    for i, (s, d, r) in enumerate(conns):
        out.append(Joined(site="S", conn=f"c{i}", at=T0 + timedelta(minutes=s)))
        out.append(QualitySample(site="S", conn=f"c{i}", at=T0 + timedelta(minutes=s), loss=0.01, rtt_ms=10))
        out.append(Left(site="S", conn=f"c{i}", at=T0 + timedelta(minutes=s + d), reason=r))
    return out


def run(events):
    acc = Accumulator(B)
    for i, e in enumerate(events):
        acc.add(replace(e, id=f"w:{i}").encode())
    return build_report(acc, AFTER).row("S")


@settings(max_examples=150, deadline=None)
@given(st.lists(conn, max_size=6), st.randoms(use_true_random=False))
def test_merged_time_equals_a_brute_force_union_in_any_order(conns, rnd):
    events = events_for(conns)
    row = run(events)
    minutes = set()
    for s, d, _ in conns:
        minutes.update(m for m in range(s, s + d) if 0 <= m < 120)
    assert row.connected_s == len(minutes) * 60
    assert 0 <= row.share <= 1
    assert row.status is (Status.PRESENT if minutes else Status.ABSENT)
    in_window_drops = sum(1 for s, d, r in conns if r is LeaveReason.DROPPED and 0 <= s + d <= 120)
    assert row.drops == in_window_drops
    shuffled = events[:]
    rnd.shuffle(shuffled)
    assert run(shuffled).to_dict() == row.to_dict()
    # segments never overlap and are in order
    for a, b in zip(row.segments, row.segments[1:], strict=False):
        assert a.end < b.start
