"""iCalendar output parsed back with the icalendar library, field by field."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from icalendar import Calendar

from confsvc.scheduling import ical
from confsvc.scheduling.model import Briefing, Override, Selection, State, occurrence_id
from confsvc.scheduling.recurrence import expand, normalize_rule

VN = ZoneInfo("Asia/Ho_Chi_Minh")
START = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)  # 08:00 in Vietnam


def series(**kw):
    return Briefing(
        id="k3m9x2p7qa", title="Giao ban tuần", agenda="Tình hình kinh tế - xã hội", chair="YB",
        selection=Selection(province=True), sites=("YB",), start=START, end=START + timedelta(hours=2),
        lobby_minutes=60, organizer="org1", rrule=normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=4", VN),
        created=START - timedelta(days=3), updated=START - timedelta(days=2), seq=3, **kw,
    )


def parse(data: bytes) -> Calendar:
    return Calendar.from_ical(data)


def events(cal):
    return [c for c in cal.walk("VEVENT")]


def test_series_file_fields():
    b = series()
    cal = parse(ical.briefing_ics(b, expand(b, VN), VN, "confsvc.example", "https://confsvc.example/briefings/k3m9x2p7qa"))
    assert str(cal["METHOD"]) == "PUBLISH"
    tz = cal.walk("VTIMEZONE")
    assert len(tz) == 1 and str(tz[0]["TZID"]) == "Asia/Ho_Chi_Minh"
    (ev,) = events(cal)
    assert str(ev["UID"]) == "k3m9x2p7qa@confsvc.example"
    assert int(ev["SEQUENCE"]) == 3
    assert str(ev["SUMMARY"]) == "Giao ban tuần"
    assert "Tình hình kinh tế" in str(ev["DESCRIPTION"])
    assert str(ev["STATUS"]) == "CONFIRMED"
    dtstart = ev["DTSTART"]
    assert dtstart.params["TZID"] == "Asia/Ho_Chi_Minh"
    assert dtstart.dt.replace(tzinfo=None) == datetime(2026, 11, 23, 8, 0)
    assert ev["DTEND"].dt.astimezone(UTC) == START + timedelta(hours=2)
    rrule = ev["RRULE"]
    assert rrule["FREQ"] == ["WEEKLY"] and rrule["BYDAY"] == ["MO"] and rrule["COUNT"] == [4]
    assert str(ev["URL"]) == "https://confsvc.example/briefings/k3m9x2p7qa"


def test_cancelled_and_moved_occurrences():
    second = occurrence_id("k3m9x2p7qa", START + timedelta(days=7))
    third = occurrence_id("k3m9x2p7qa", START + timedelta(days=14))
    moved_start = START + timedelta(days=15, hours=6)
    b = series(overrides={second: Override(cancelled=True), third: Override(start=moved_start, end=moved_start + timedelta(hours=1))})
    cal = parse(ical.briefing_ics(b, expand(b, VN), VN, "confsvc.example"))
    main, moved = events(cal)
    exdates = [d.dt.astimezone(UTC) for d in main["EXDATE"].dts]
    assert exdates == [START + timedelta(days=7)]
    assert str(moved["UID"]) == str(main["UID"])
    assert moved["RECURRENCE-ID"].dt.astimezone(UTC) == START + timedelta(days=14)
    assert moved["DTSTART"].dt.astimezone(UTC) == moved_start
    assert moved["DTEND"].dt.astimezone(UTC) == moved_start + timedelta(hours=1)


def test_cancelled_briefing_uses_method_cancel():
    b = series(cancelled=True).evolve(seq=4)
    cal = parse(ical.briefing_ics(b, expand(b, VN), VN, "confsvc.example"))
    assert str(cal["METHOD"]) == "CANCEL"
    (ev,) = events(cal)
    assert str(ev["STATUS"]) == "CANCELLED" and int(ev["SEQUENCE"]) == 4


def test_cancelled_occurrence_file_carries_its_recurrence_id():
    second = occurrence_id("k3m9x2p7qa", START + timedelta(days=7))
    b = series(overrides={second: Override(cancelled=True)})
    occ = next(o for o in expand(b, VN) if o.id == second)
    assert occ.state is State.CANCELLED
    cal = parse(ical.occurrence_ics(b, occ, VN, "confsvc.example"))
    assert str(cal["METHOD"]) == "CANCEL"
    (ev,) = events(cal)
    assert ev["RECURRENCE-ID"].dt.astimezone(UTC) == START + timedelta(days=7)
    assert str(ev["STATUS"]) == "CANCELLED"


def test_feed_lists_every_briefing_once_with_one_timezone():
    a, b = series(), series().evolve(id="zzzzzzzzzz", rrule=None, title="Họp đột xuất")
    cal = parse(ical.feed_ics("Xã Mồ Dề", [(a, list(expand(a, VN)), ""), (b, list(expand(b, VN)), "")], VN, "h"))
    assert str(cal["X-WR-CALNAME"]) == "Xã Mồ Dề"
    assert sorted(str(e["UID"]) for e in events(cal)) == ["k3m9x2p7qa@h", "zzzzzzzzzz@h"]
    assert len(cal.walk("VTIMEZONE")) == 1
