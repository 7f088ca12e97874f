"""Recurring schedules across DST: gaps fire once after the gap, repeated hours fire once."""

from __future__ import annotations

import calendar
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from koinonia.kit.schedule import Frequency, ScheduleError, next_occurrence, validate_schedule

PROPERTY = settings(max_examples=300, deadline=None, database=None)
NEW_YORK, LONDON = "America/New_York", "Europe/London"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def daily(at: time, tz: str, after: datetime) -> datetime:
    return next_occurrence(frequency="daily", time_of_day=at, tz=tz, after=after)


# --- explicit DST cases, 2026 ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "at", "after", "expected"),
    [
        # New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT (07:00Z).
        (NEW_YORK, time(2, 30), utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),  # fires at 03:00 EDT
        (NEW_YORK, time(2, 0), utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),
        (NEW_YORK, time(2, 59, 59), utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),
        (NEW_YORK, time(3, 0), utc(2026, 3, 7, 12), utc(2026, 3, 8, 7)),
        (NEW_YORK, time(1, 59), utc(2026, 3, 7, 12), utc(2026, 3, 8, 6, 59)),  # still EST
        (NEW_YORK, time(2, 30), utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)),  # strictly after
        (NEW_YORK, time(9, 0), utc(2026, 3, 7, 15), utc(2026, 3, 8, 13)),  # EDT from here
        # New York falls back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 happens twice.
        (NEW_YORK, time(1, 30), utc(2026, 10, 31, 12), utc(2026, 11, 1, 5, 30)),  # the EDT one
        (NEW_YORK, time(1, 30), utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)),  # not 06:30Z
        (NEW_YORK, time(1, 30), utc(2026, 11, 1, 6, 0), utc(2026, 11, 2, 6, 30)),
        (NEW_YORK, time(2, 0), utc(2026, 10, 31, 12), utc(2026, 11, 1, 7)),
        # London springs forward 2026-03-29 01:00 GMT -> 02:00 BST (01:00Z).
        (LONDON, time(1, 30), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),  # fires at 02:00 BST
        (LONDON, time(2, 0), utc(2026, 3, 28, 12), utc(2026, 3, 29, 1)),
        (LONDON, time(0, 30), utc(2026, 3, 28, 12), utc(2026, 3, 29, 0, 30)),
        # London falls back 2026-10-25 02:00 BST -> 01:00 GMT: 01:30 happens twice.
        (LONDON, time(1, 30), utc(2026, 10, 24, 12), utc(2026, 10, 25, 0, 30)),
        (LONDON, time(1, 30), utc(2026, 10, 25, 0, 30), utc(2026, 10, 26, 1, 30)),
        (LONDON, time(9, 0), utc(2026, 10, 25, 8, 59), utc(2026, 10, 25, 9)),  # GMT again
    ],
)
def test_daily_across_dst(tz: str, at: time, after: datetime, expected: datetime) -> None:
    result = daily(at, tz, after)
    assert result == expected
    assert result.utcoffset() == timedelta(0)


def test_weekly_sunday_service_across_both_changes() -> None:
    def sunday_9am(after: datetime) -> datetime:
        return next_occurrence(
            frequency="weekly", time_of_day=time(9), tz=NEW_YORK, after=after, day_of_week=6
        )

    assert sunday_9am(utc(2026, 3, 2)) == utc(2026, 3, 8, 13)  # 09:00 EDT
    assert sunday_9am(utc(2026, 3, 8, 13)) == utc(2026, 3, 15, 13)
    assert sunday_9am(utc(2026, 2, 23)) == utc(2026, 3, 1, 14)  # 09:00 EST
    assert sunday_9am(utc(2026, 10, 26)) == utc(2026, 11, 1, 14)  # EST again


@pytest.mark.parametrize(
    ("day", "after", "expected"),
    [
        (31, utc(2026, 2, 1), utc(2026, 2, 28, 14)),  # Feb 31st -> Feb 28th
        (31, utc(2028, 2, 1), utc(2028, 2, 29, 14)),  # leap year: Feb 29th
        (29, utc(2026, 2, 1), utc(2026, 2, 28, 14)),
        (29, utc(2028, 2, 1), utc(2028, 2, 29, 14)),
        (30, utc(2028, 2, 29, 14), utc(2028, 3, 30, 13)),  # back to the 30th, now EDT
        (31, utc(2026, 4, 1), utc(2026, 4, 30, 13)),
        (31, utc(2026, 4, 30, 13), utc(2026, 5, 31, 13)),
        (1, utc(2026, 12, 1, 14), utc(2027, 1, 1, 14)),  # over the year end
        (15, utc(2026, 3, 15, 12, 59), utc(2026, 3, 15, 13)),
        (15, utc(2026, 3, 15, 13), utc(2026, 4, 15, 13)),
    ],
)
def test_monthly_uses_the_last_day_when_the_month_is_short(
    day: int, after: datetime, expected: datetime
) -> None:
    result = next_occurrence(
        frequency="monthly", time_of_day=time(9), tz=NEW_YORK, after=after, day_of_month=day
    )
    assert result == expected


def test_after_may_be_in_any_timezone() -> None:
    after = datetime(2026, 3, 8, 3, 0, tzinfo=ZoneInfo(NEW_YORK))  # = 07:00Z
    assert daily(time(2, 30), NEW_YORK, after) == utc(2026, 3, 9, 6, 30)


# --- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"frequency": "hourly"}, "frequency"),
        ({"frequency": "weekly"}, "day_of_week"),
        ({"frequency": "weekly", "day_of_week": 7}, "day_of_week"),
        ({"frequency": "weekly", "day_of_week": -1}, "day_of_week"),
        ({"frequency": "weekly", "day_of_week": 1, "day_of_month": 3}, "day_of_month"),
        ({"frequency": "monthly"}, "day_of_month"),
        ({"frequency": "monthly", "day_of_month": 0}, "day_of_month"),
        ({"frequency": "monthly", "day_of_month": 32}, "day_of_month"),
        ({"frequency": "monthly", "day_of_month": 3, "day_of_week": 1}, "day_of_week"),
        ({"frequency": "daily", "day_of_week": 1}, "day_of_week"),
        ({"frequency": "daily", "day_of_month": 1}, "day_of_month"),
        ({"frequency": "daily", "tz": "Mars/Olympus"}, "tz"),
        ({"frequency": "daily", "tz": ""}, "tz"),
        ({"frequency": "daily", "tz": "../../etc/passwd"}, "tz"),
        ({"frequency": "daily", "time_of_day": time(9, tzinfo=UTC)}, "time_of_day"),
    ],
)
def test_bad_combinations_name_the_field(kwargs: dict[str, object], field: str) -> None:
    arguments: dict[str, object] = {"time_of_day": time(9), "tz": NEW_YORK, **kwargs}
    with pytest.raises(ScheduleError) as caught:
        validate_schedule(**arguments)  # type: ignore[arg-type]
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith(f"{field}: ")
    with pytest.raises(ScheduleError):
        next_occurrence(after=utc(2026, 1, 1), **arguments)  # type: ignore[arg-type]


def test_good_combinations_pass() -> None:
    validate_schedule(frequency="daily", time_of_day=time(9), tz=LONDON)
    validate_schedule(frequency="weekly", time_of_day=time(9), tz=LONDON, day_of_week=0)
    validate_schedule(frequency="monthly", time_of_day=time(9), tz=LONDON, day_of_month=31)


def test_naive_after_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        daily(time(9), NEW_YORK, datetime(2026, 1, 1))


# --- properties against an independent reference --------------------------------------------------

ZONES = [
    NEW_YORK,
    LONDON,
    "Australia/Lord_Howe",  # 30-minute DST shift
    "America/St_Johns",  # offset -03:30, DST
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/Havana",  # changes at midnight
    "Asia/Kolkata",
    "UTC",
]


def reference_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """Earliest instant at which the local clock shows `day at`, or if it never does (a gap),
    the first instant after the clock jumps over it. Scans minutes instead of bisecting."""
    wall = datetime.combine(day, at)
    real = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall:
            real.append(instant)
    if real:
        return min(real)
    # The earlier offset reads the wall time in the gap as a moment before the jump.
    probe = wall.replace(tzinfo=zone, fold=1).astimezone(UTC).replace(second=0, microsecond=0)
    offset = probe.astimezone(zone).utcoffset()
    while probe.astimezone(zone).utcoffset() == offset:
        probe += timedelta(minutes=1)
    return probe


def reference_dates(
    frequency: Frequency, around: date, day_of_week: int | None, day_of_month: int | None
) -> list[date]:
    days = [around + timedelta(days=n) for n in range(-3, 70)]
    if frequency == "weekly":
        return [d for d in days if d.weekday() == day_of_week]
    if frequency == "monthly":
        assert day_of_month is not None
        return [
            d for d in days if d.day == min(day_of_month, calendar.monthrange(d.year, d.month)[1])
        ]
    return days


moments = st.datetimes(datetime(2020, 1, 1), datetime(2036, 1, 1), timezones=st.just(UTC))
special_times = st.sampled_from([time(0), time(1, 30), time(2), time(2, 30), time(23, 59)])


@functools.cache
def transitions(tz: str, year: int) -> list[datetime]:
    """The instants (whole minutes) at which the zone's UTC offset changes in `year`."""
    zone, hour, minute = ZoneInfo(tz), timedelta(hours=1), timedelta(minutes=1)
    instant = datetime(year, 1, 1, tzinfo=UTC)
    found = []
    while instant.year == year:
        if (instant + hour).astimezone(zone).utcoffset() != instant.astimezone(zone).utcoffset():
            change = instant + minute
            while change.astimezone(zone).utcoffset() == instant.astimezone(zone).utcoffset():
                change += minute
            found.append(change)
        instant += hour
    return found


@dataclass(frozen=True)
class Case:
    frequency: Frequency
    time_of_day: time
    tz: str
    after: datetime
    day_of_week: int | None
    day_of_month: int | None


@st.composite
def cases(draw: st.DrawFn) -> Case:
    """Schedules, most aimed at a DST change: a time of day inside the skipped or repeated hour,
    on the change's weekday or day of month, asked for from a little before."""
    tz = draw(st.sampled_from(ZONES))
    zone = ZoneInfo(tz)
    frequency: Frequency = draw(st.sampled_from(["daily", "weekly", "monthly"]))
    changes = transitions(tz, draw(st.integers(2020, 2035)))
    if changes and draw(st.integers(0, 4)) > 0:
        change = draw(st.sampled_from(changes))
        old_local = (change - timedelta(minutes=1)).astimezone(zone)
        jump = change.astimezone(zone).utcoffset() - old_local.utcoffset()  # type: ignore[operator]
        # Without the change the wall clock would read `old` at it. Clocks springing forward
        # skip [old, old + jump); falling back, they repeat [old - |jump|, old).
        old = old_local.replace(tzinfo=None) + timedelta(minutes=1)
        start = old if jump > timedelta(0) else old + jump
        wall = start + timedelta(seconds=draw(st.integers(0, int(abs(jump).total_seconds()) - 1)))
        at = wall.time() if draw(st.integers(0, 3)) else draw(special_times | st.times())
        on = wall.date()
        lead = st.integers(1, 86400) if draw(st.integers(0, 2)) else st.integers(-86400, 35 * 86400)
        after = change - timedelta(seconds=draw(lead))
    else:
        at = draw(special_times | st.times())
        after = draw(moments)
        on = draw(st.dates(date(2020, 1, 1), date(2035, 12, 31)))
    weekday = on.weekday() if draw(st.integers(0, 3)) else draw(st.integers(0, 6))
    day = on.day if draw(st.integers(0, 3)) else draw(st.integers(1, 31))
    return Case(
        frequency,
        at,
        tz,
        after,
        weekday if frequency == "weekly" else None,
        day if frequency == "monthly" else None,
    )


@PROPERTY
@given(cases())
def test_next_occurrence_is_the_first_reference_instant_after(case: Case) -> None:
    frequency, at, tz, after = case.frequency, case.time_of_day, case.tz, case.after
    day_of_week, day_of_month = case.day_of_week, case.day_of_month
    zone = ZoneInfo(tz)
    result = next_occurrence(
        frequency=frequency,
        time_of_day=at,
        tz=tz,
        after=after,
        day_of_week=day_of_week,
        day_of_month=day_of_month,
    )
    assert result > after
    assert result.tzinfo is UTC
    dates = reference_dates(frequency, after.astimezone(zone).date(), day_of_week, day_of_month)
    expected = min(i for i in (reference_instant(d, at, zone) for d in dates) if i > after)
    assert result == expected
    # Nothing fires between `after` and the result: asking again from just before gives it back.
    again = next_occurrence(
        frequency=frequency,
        time_of_day=at,
        tz=tz,
        after=result - timedelta(microseconds=1),
        day_of_week=day_of_week,
        day_of_month=day_of_month,
    )
    assert again == result
    local = result.astimezone(zone)
    event("fired in a gap" if local.time() != at else "fired on time")
    if local.time() != at:
        # Only in a gap: the wall time never happened that day, and the result is the instant
        # the clock jumped, landing later than the wall time asked for.
        wall = datetime.combine(local.date(), at)
        assert (
            wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall
        )
        assert local.replace(tzinfo=None) > wall
        assert (result - timedelta(seconds=1)).astimezone(zone).utcoffset() != local.utcoffset()


@settings(max_examples=12, deadline=None, database=None)
@given(
    st.sampled_from([time(0, 0), time(1, 0), time(1, 30), time(2, 0), time(2, 30), time(3, 0)])
    | st.times(),
    st.sampled_from([2026, 2027, 2028]),
    st.sampled_from([NEW_YORK, LONDON]),
)
def test_daily_for_a_whole_year_fires_once_per_local_day(at: time, year: int, tz: str) -> None:
    zone = ZoneInfo(tz)
    start = datetime(year, 1, 1, tzinfo=zone).astimezone(UTC) - timedelta(microseconds=1)
    end = datetime(year + 1, 1, 1, tzinfo=zone).astimezone(UTC)
    fired, cursor = [], start
    while True:
        cursor = daily(at, tz, cursor)
        if cursor >= end:
            break
        fired.append(cursor)
    days = 366 if calendar.isleap(year) else 365
    assert len(fired) == len(set(fired)) == days
    assert fired == sorted(fired)
    assert len({f.astimezone(zone).date() for f in fired}) == days  # none doubled, none missing
    assert sum(f.astimezone(zone).time() != at for f in fired) <= 1  # only the spring gap day
