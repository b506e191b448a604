from datetime import date
from zoneinfo import ZoneInfo

import pytest

from confsvc.scheduling import words
from confsvc.scheduling.recurrence import normalize_rule

VN = ZoneInfo("Asia/Ho_Chi_Minh")


@pytest.mark.parametrize(
    "choices, rule",
    [
        (words.Choices(), None),
        (words.Choices(repeat="weekly", weekdays=["MO"], count=10), "FREQ=WEEKLY;COUNT=10;BYDAY=MO"),
        (words.Choices(repeat="weekly", weekdays=["TH", "MO"], interval=2, count=5), "FREQ=WEEKLY;INTERVAL=2;COUNT=5;BYDAY=MO,TH"),
        (words.Choices(repeat="monthly_nth", nth=1, nth_day="MO", count=12), "FREQ=MONTHLY;COUNT=12;BYDAY=1MO"),
        (words.Choices(repeat="monthly_nth", nth=-1, nth_day="FR", ends="until", until=date(2027, 6, 30)), "FREQ=MONTHLY;UNTIL=20270630;BYDAY=-1FR"),
        (words.Choices(repeat="daily", count=3), "FREQ=DAILY;COUNT=3"),
        (words.Choices(repeat="monthly_day", count=3), "FREQ=MONTHLY;COUNT=3;BYMONTHDAY=23"),
    ],
)
def test_plain_words_make_valid_rules(choices, rule):
    got = choices.to_rule(date(2026, 11, 23))
    assert got == rule
    if rule:
        normalize_rule(rule, VN)  # the service accepts it


def test_weekly_without_days_takes_the_start_weekday():
    assert words.Choices(repeat="weekly").to_rule(date(2026, 11, 25)).endswith("BYDAY=WE")


@pytest.mark.parametrize(
    "rule, repeat",
    [
        ("FREQ=WEEKLY;COUNT=10;BYDAY=MO", "weekly"),
        ("FREQ=MONTHLY;COUNT=12;BYDAY=1MO", "monthly_nth"),
        ("FREQ=DAILY;COUNT=3", "daily"),
        ("FREQ=YEARLY;COUNT=1", "custom"),
        ("FREQ=MONTHLY;COUNT=3;BYDAY=MO,TU", "custom"),
    ],
)
def test_stored_rules_back_to_words(rule, repeat):
    c = words.choices_for(rule)
    assert c.repeat == repeat
    if repeat != "custom":
        assert c.to_rule(date(2026, 11, 23)) == rule
