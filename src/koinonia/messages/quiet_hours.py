"""Quiet hours: a broadcast due inside the church's quiet window waits until it ends."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from koinonia.kit.schedule import local_instant


def release_time(due: datetime, tz: str, start: time | None, end: time | None) -> datetime:
    """`due` itself, or the end of the quiet window it falls in (church-local wall time).

    A window may cross midnight (21:00–08:00). The end is computed on the local calendar, so it
    stays right across DST changes, and resolved to an instant by the one rule for church-local
    wall times (`kit.schedule.local_instant`): an end that does not exist that day (DST gap)
    is the first instant after the gap, when the local clock first reads past it; an end that
    happens twice (fall-back) is the first of the two.
    """
    if start is None or end is None or start == end:
        return due
    zone = ZoneInfo(tz)
    local = due.astimezone(zone)
    now_t = local.timetz().replace(tzinfo=None)
    if start < end:
        inside = start <= now_t < end
        end_day = local.date()
    else:
        inside = now_t >= start or now_t < end
        end_day = local.date() + timedelta(days=1) if now_t >= start else local.date()
    if not inside:
        return due
    return local_instant(end_day, end, zone)
