"""Recurring schedule arithmetic in the church's own timezone, DST-correct, and the one rule that
turns a church-local wall time into an instant (`local_instant`, also used for the end of quiet
hours in `messages.quiet_hours`).

An occurrence is a local date plus the schedule's time of day. Local times that don't exist (the
spring-forward gap) resolve to the first instant after the gap, e.g. 02:30 on the March change
in America/New_York is 03:00 EDT: the moment the local clock first reads at or past 02:30. (Not
the RFC 5545 / zoneinfo fold=0 reading, 02:30 EST = 03:30 EDT, which would hold quiet hours half
an hour past their end and fire a schedule half an hour late.) Local times that happen twice
(fall-back) resolve to the first time (fold=0). So every local date yields exactly one instant.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

Frequency = Literal["daily", "weekly", "monthly"]
FREQUENCIES: frozenset[str] = frozenset(get_args(Frequency))


class ScheduleError(ValueError):
    """An invalid schedule; `field` names the offending parameter for a 422."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def validate_schedule(
    *,
    frequency: str,
    time_of_day: time,
    tz: str,
    day_of_week: int | None = None,
    day_of_month: int | None = None,
) -> None:
    """Raise ScheduleError unless the combination makes a schedule."""
    if frequency not in FREQUENCIES:
        raise ScheduleError("frequency", "must be daily, weekly or monthly")
    if time_of_day.tzinfo is not None:
        raise ScheduleError("time_of_day", "must be a local time without a timezone")
    _zone(tz)
    if frequency == "weekly":
        if day_of_week is None:
            raise ScheduleError("day_of_week", "required for weekly schedules")
        if not 0 <= day_of_week <= 6:
            raise ScheduleError("day_of_week", "must be 0 (Monday) to 6 (Sunday)")
    elif day_of_week is not None:
        raise ScheduleError("day_of_week", "only for weekly schedules")
    if frequency == "monthly":
        if day_of_month is None:
            raise ScheduleError("day_of_month", "required for monthly schedules")
        if not 1 <= day_of_month <= 31:
            raise ScheduleError("day_of_month", "must be 1 to 31")
    elif day_of_month is not None:
        raise ScheduleError("day_of_month", "only for monthly schedules")


def next_occurrence(
    *,
    frequency: Frequency,
    time_of_day: time,
    tz: str,
    after: datetime,
    day_of_week: int | None = None,
    day_of_month: int | None = None,
) -> datetime:
    """The first occurrence strictly after `after` (aware), as an aware UTC datetime.

    Monthly on a day the month lacks (31st, Feb 30th) means that month's last day.
    """
    validate_schedule(
        frequency=frequency,
        time_of_day=time_of_day,
        tz=tz,
        day_of_week=day_of_week,
        day_of_month=day_of_month,
    )
    if after.tzinfo is None or after.utcoffset() is None:
        raise ValueError("after must be timezone-aware")
    zone = _zone(tz)
    # Start a day early: gap resolution can push the previous local date's occurrence forward.
    start = after.astimezone(zone).date() - timedelta(days=1)
    if frequency == "daily":
        dates: Iterator[date] = _days(start, 1)
    elif frequency == "weekly":
        assert day_of_week is not None
        dates = _days(start + timedelta(days=(day_of_week - start.weekday()) % 7), 7)
    else:
        assert day_of_month is not None
        dates = _month_days(start, day_of_month)
    for local_date in dates:
        instant = local_instant(local_date, time_of_day, zone)
        if instant > after:
            return instant
    raise AssertionError("the date iterators are endless")  # pragma: no cover


def local_instant(local_date: date, time_of_day: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of a local wall time, resolved as the module docstring says."""
    wall = datetime.combine(local_date, time_of_day.replace(tzinfo=None, fold=0))
    first = wall.replace(tzinfo=zone)  # fold=0: the earlier of two, or the pre-gap offset
    instant = first.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # In a gap, fold=0 applies the pre-transition offset and lands past the transition; fold=1
    # applies the post-transition offset and lands before it. Search between them for the
    # transition itself (zoneinfo transitions fall on whole seconds).
    before_offset = first.utcoffset()
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(instant.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == before_offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError("tz", f"unknown IANA timezone {tz!r}") from None


def _days(first: date, step: int) -> Iterator[date]:
    day, delta = first, timedelta(days=step)
    while True:
        yield day
        day += delta


def _month_days(first: date, day_of_month: int) -> Iterator[date]:
    year, month = first.year, first.month
    while True:
        last = calendar.monthrange(year, month)[1]
        yield date(year, month, min(day_of_month, last))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
