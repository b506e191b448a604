"""The SVG timeline: well-formed, grouped by district, gaps where a site was away."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from confsvc.attendance.briefing import BriefingFacts
from confsvc.attendance.events import Joined, LeaveReason, Left, Reconnected
from confsvc.attendance.rollups import Accumulator, build_report
from confsvc.attendance.timeline import render
from confsvc.directory.model import Kind, Site, Tree

T0 = datetime(2026, 11, 20, 1, 0, tzinfo=UTC)
NS = {"s": "http://www.w3.org/2000/svg"}
TREE = Tree.build(
    [
        Site("P", "Tỉnh <Yên Bái> & co", Kind.PROVINCE),
        Site("D1", "Huyện A", Kind.DISTRICT, "P"),
        Site("C1", "Xã Một", Kind.COMMUNE, "D1"),
        Site("C2", "Xã Hai", Kind.COMMUNE, "D1"),
    ]
)


def test_bars_gaps_groups_and_escaping():
    b = BriefingFacts("t", "x", T0, T0 + timedelta(hours=2), ("P", "D1", "C1", "C2"), "o")
    events = [
        Joined(site="P", conn="p", at=T0 - timedelta(minutes=10)),
        Left(site="P", conn="p", at=T0 + timedelta(hours=2), reason=LeaveReason.ENDED),
        Joined(site="C1", conn="a", at=T0),
        Left(site="C1", conn="a", at=T0 + timedelta(minutes=30), reason=LeaveReason.DROPPED),
        Reconnected(site="C1", conn="b", previous="a", at=T0 + timedelta(minutes=45)),
        Left(site="C1", conn="b", at=T0 + timedelta(hours=2), reason=LeaveReason.ENDED),
        Joined(site="X9", conn="x", at=T0 + timedelta(minutes=5)),  # not invited
        Left(site="X9", conn="x", at=T0 + timedelta(minutes=6)),
    ]
    acc = Accumulator(b)
    acc.add_all(replace(e, id=f"w:{i}").encode() for i, e in enumerate(events))
    svg = render(build_report(acc, T0 + timedelta(hours=3), TREE), ZoneInfo("Asia/Ho_Chi_Minh"))
    root = ET.fromstring(svg)  # well-formed XML
    groups = [t.text for t in root.findall("s:text", NS) if t.get("class") == "grp"]
    assert groups == ["Tỉnh", "Huyện A", "Ngoài danh sách mời"]
    sites = {g.get("data-site"): g for g in root.findall("s:g", NS)}
    assert list(sites) == ["P", "D1", "C2", "C1", "X9"]  # communes by name: Hai, Một
    c1_bars = sites["C1"].findall("s:rect[@class='bar']", NS)
    assert len(c1_bars) == 2  # the gap between the drop and the reconnect
    assert float(c1_bars[0].get("x")) + float(c1_bars[0].get("width")) < float(c1_bars[1].get("x"))
    assert len(sites["C1"].findall("s:line[@class='drop']", NS)) == 1
    assert sites["C2"].find("s:rect[@class='row-absent']", NS) is not None
    assert sites["X9"].find("s:rect[@class='bar uninvited']", NS) is not None
    assert "Tỉnh &lt;Yên Bái&gt; &amp; co" in svg
    ticks = [t.text for t in root.findall("s:text", NS) if t.get("class") == "ticklabel"]
    assert "08:00" in ticks and "10:00" in ticks  # local time on the axis
