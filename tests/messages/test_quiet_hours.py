"""Quiet hours end by the same DST rule as schedules fire (kit.schedule.local_instant)."""

from __future__ import annotations

from datetime import UTC, datetime, time

import pytest

from koinonia.kit.schedule import next_occurrence
from koinonia.messages.quiet_hours import release_time

NEW_YORK = "America/New_York"


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


def test_a_wall_time_in_the_spring_gap_is_the_end_of_the_gap_for_both_uses() -> None:
    """New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z); 02:30 never shows.
    Quiet hours ending at 02:30 end, and a daily 02:30 schedule fires, at 03:00 EDT, the moment
    the clock first reads past 02:30. (Quiet hours used to end at 03:30 EDT: 02:30 read as EST.)"""
    gap_end = utc(3, 8, 7)
    fired = next_occurrence(
        frequency="daily", time_of_day=time(2, 30), tz=NEW_YORK, after=utc(3, 7, 12)
    )
    released = release_time(utc(3, 8, 6), NEW_YORK, time(21, 0), time(2, 30))  # 01:00 EST
    assert fired == released == gap_end


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (utc(3, 8, 2), utc(3, 8, 7)),  # 21:00 EST the night before: held across the gap
        (utc(3, 8, 7, 15), utc(3, 8, 7, 15)),  # 03:15 EDT: the window is over
        (utc(3, 7, 7), utc(3, 7, 7, 30)),  # 02:00 EST the day before: an ordinary 02:30 end
        (utc(11, 1, 5, 15), utc(11, 1, 5, 30)),  # fall back: 01:15 EDT ends at the first 01:30
    ],
)
def test_quiet_hours_across_dst(due: datetime, expected: datetime) -> None:
    end = time(1, 30) if due.month == 11 else time(2, 30)
    assert release_time(due, NEW_YORK, time(21, 0), end) == expected
