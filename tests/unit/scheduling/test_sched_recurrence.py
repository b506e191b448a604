from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from confsvc.scheduling.errors import Invalid
from confsvc.scheduling.model import Briefing, Occurrence, Override, Selection, State, occurrence_id
from confsvc.scheduling.recurrence import check_series, expand, normalize_rule, rule_starts

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def local(y, m, d, h=8, mi=0, zone=VN):
    return datetime(y, m, d, h, mi, tzinfo=zone).astimezone(UTC)


def briefing(rule=None, start=None, **kw):
    start = start or local(2026, 11, 23)
    return Briefing(
        id="abc", title="Giao ban", chair="YB", selection=Selection(province=True), sites=("YB", "YB-MCC"),
        start=start, end=start + timedelta(hours=2), lobby_minutes=60, organizer="org1", rrule=rule, **kw,
    )


def test_weekly_monday_0800_local_from_a_wednesday_starts_on_the_next_monday():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=4", VN)
    check = check_series(rule, local(2026, 11, 18), timedelta(hours=2), timedelta(hours=1), VN)
    assert check.first_start == local(2026, 11, 23)
    assert check.starts == [local(2026, 11, 23), local(2026, 11, 30), local(2026, 12, 7), local(2026, 12, 14)]
    assert all(s.hour == 1 for s in check.starts)  # 08:00 in UTC+7


def test_first_monday_of_the_month():
    rule = normalize_rule("FREQ=MONTHLY;BYDAY=1MO;COUNT=3", VN)
    assert rule_starts(rule, local(2026, 11, 20), VN) == [local(2026, 12, 7), local(2027, 1, 4), local(2027, 2, 1)]


def test_until_as_a_local_date_includes_that_day():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;UNTIL=20261214", VN)
    assert "UNTIL=20261214T165959Z" in rule  # 23:59:59 local, in UTC
    assert rule_starts(rule, local(2026, 11, 23), VN)[-1] == local(2026, 12, 14)


def test_wall_clock_time_kept_across_dst():
    paris = ZoneInfo("Europe/Paris")
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=3", paris)
    starts = rule_starts(rule, local(2026, 3, 23, zone=paris), paris)
    assert [s.astimezone(paris).hour for s in starts] == [8, 8, 8]
    assert starts[0].hour == 7 and starts[1].hour == 6  # UTC shifts when DST begins on 29 March


@pytest.mark.parametrize(
    "rule, fragment",
    [
        ("FREQ=WEEKLY;BYDAY=MO", "must end"),
        ("FREQ=HOURLY;COUNT=3", "FREQ=HOURLY"),
        ("FREQ=WEEKLY;BYDAY=MO;COUNT=3;BYHOUR=9", "BYHOUR"),
        ("FREQ=WEEKLY;BYDAY=XX;COUNT=3", "invalid recurrence rule"),
        ("FREQ=WEEKLY;COUNT=0", "COUNT"),
        ("FREQ=WEEKLY;COUNT=2;UNTIL=20270101", "not both"),
        ("BYDAY=MO;COUNT=2", "FREQ"),
        ("FREQ=WEEKLY;COUNT=3;DTSTART=20260101", "DTSTART"),
        ("FREQ=WEEKLY;UNTIL=tomorrow", "UNTIL"),
    ],
)
def test_invalid_rules_name_the_rrule_field(rule, fragment):
    with pytest.raises(Invalid) as err:
        normalize_rule(rule, VN)
    assert err.value.field == "rrule"
    assert fragment in err.value.detail


def test_series_over_a_year_is_refused():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=60", VN)
    with pytest.raises(Invalid, match="over a year"):
        check_series(rule, local(2026, 11, 23), timedelta(hours=2), timedelta(hours=1), VN)
    ok = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=52", VN)
    assert len(check_series(ok, local(2026, 11, 23), timedelta(hours=2), timedelta(hours=1), VN).starts) == 52


def test_rule_with_no_occurrence_is_refused():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;UNTIL=20261101", VN)
    with pytest.raises(Invalid, match="no occurrence"):
        check_series(rule, local(2026, 11, 23), timedelta(hours=2), timedelta(hours=1), VN)


def test_occurrences_of_one_series_may_not_overlap_each_other():
    rule = normalize_rule("FREQ=DAILY;COUNT=5", VN)
    with pytest.raises(Invalid, match="overlap"):
        check_series(rule, local(2026, 11, 23), timedelta(hours=10), timedelta(hours=15), VN)


def test_expand_applies_a_cancelled_and_a_moved_occurrence_without_touching_the_rest():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=4", VN)
    second = occurrence_id("abc", local(2026, 11, 30))
    third = occurrence_id("abc", local(2026, 12, 7))
    b = briefing(rule, overrides={second: Override(cancelled=True), third: Override(start=local(2026, 12, 8, 14), end=local(2026, 12, 8, 15))})
    occs = list(expand(b, VN))
    assert [o.id for o in occs] == ["abc-20261123T0100Z", second, third, "abc-20261214T0100Z"]
    assert [o.state for o in occs] == [State.SCHEDULED, State.CANCELLED, State.SCHEDULED, State.SCHEDULED]
    moved = occs[2]
    assert moved.moved and moved.starts_at == local(2026, 12, 8, 14) and moved.ends_at == local(2026, 12, 8, 15)
    assert moved.lobby_opens_at == local(2026, 12, 8, 13)
    assert moved.original_start == local(2026, 12, 7)
    assert occs[3].starts_at == local(2026, 12, 14) and not occs[3].moved


def test_expand_filters_by_window_and_includes_the_chair():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=4", VN)
    b = briefing(rule).evolve(chair="YB-NL")
    occs = list(expand(b, VN, frm=local(2026, 11, 30, 7, 30), to=local(2026, 12, 8)))
    assert [o.starts_at for o in occs] == [local(2026, 11, 30), local(2026, 12, 7)]
    assert occs[0].invited_sites[0] == "YB-NL" and set(occs[0].invited_sites) == {"YB-NL", "YB", "YB-MCC"}


def test_cancelled_briefing_cancels_every_unfinished_occurrence():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=3", VN)
    b = briefing(rule, cancelled=True)
    assert {o.state for o in expand(b, VN)} == {State.CANCELLED}


def test_history_is_kept_when_the_series_is_edited():
    rule = normalize_rule("FREQ=WEEKLY;BYDAY=MO;COUNT=4", VN)
    b = briefing(rule)
    first = next(iter(expand(b, VN)))
    ended = Occurrence(**{**first.__dict__, "state": State.ENDED, "frozen": True})
    # the series moves to 09:00 from the edit on; the ended first occurrence stays as it was
    edited = b.evolve(start=local(2026, 11, 23, 9), end=local(2026, 11, 23, 11), fixed_before=local(2026, 11, 25))
    occs = list(expand(edited, VN, {ended.id: ended}))
    assert occs[0] == ended
    assert [o.starts_at for o in occs[1:]] == [local(2026, 11, 30, 9), local(2026, 12, 7, 9), local(2026, 12, 14, 9)]
