"""Recurring messages: CRUD with the next firing computed in the church's timezone.

`next_send_at` is always the first occurrence strictly after the moment of the last change, so
resuming a paused schedule (or any edit) never fires occurrences that passed meanwhile. The
scheduler (delivery.scheduler) fires due schedules and advances them the same way.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.churches.repository import ChurchRepository
from koinonia.db.effects import church_changed
from koinonia.kit.errors import NotFound, ValidationFailed
from koinonia.kit.pagination import ID, CursorSpec
from koinonia.kit.schedule import Frequency, ScheduleError, next_occurrence, validate_schedule
from koinonia.kit.segments import validate_template
from koinonia.messages.repository import MessageRepository
from koinonia.messages.schemas import Target
from koinonia.messages.service import check_provider_limit
from koinonia.models import Church, RecurringMessage
from koinonia.recurring.repository import RecurringRepository
from koinonia.recurring.schemas import RecurringIn, RecurringOut, RecurringPatch

RECURRING_CURSOR = CursorSpec("recurring", (ID,))

# Which day field each frequency uses.
_DAY_FIELD = {"daily": None, "weekly": "day_of_week", "monthly": "day_of_month"}


def utcnow() -> datetime:
    """The clock schedules are computed from (tests replace it)."""
    return datetime.now(UTC)


def parse_time_of_day(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def next_send_at(schedule: RecurringMessage | dict[str, Any], tz: str, after: datetime) -> datetime:
    """First occurrence of the schedule strictly after `after` (UTC)."""

    def get(name: str) -> Any:
        return schedule[name] if isinstance(schedule, dict) else getattr(schedule, name)

    return next_occurrence(
        frequency=cast(Frequency, get("frequency")),
        time_of_day=get("time_of_day"),
        tz=tz,
        after=after,
        day_of_week=get("day_of_week"),
        day_of_month=get("day_of_month"),
    )


def to_out(schedule: RecurringMessage, tz: str) -> RecurringOut:
    upcoming = schedule.next_send_at if schedule.is_active else None
    return RecurringOut(
        id=schedule.id,
        name=schedule.name,
        content=schedule.content,
        target=Target.model_validate(
            {"type": schedule.target_type, "ids": list(schedule.target_ids or [])}
        ),
        frequency=cast(Frequency, schedule.frequency),
        day_of_week=schedule.day_of_week,
        day_of_month=schedule.day_of_month,
        time_of_day=schedule.time_of_day.strftime("%H:%M"),
        timezone=tz,
        is_active=schedule.is_active,
        next_send_at=upcoming.astimezone(UTC) if upcoming else None,
        next_send_local=upcoming.astimezone(ZoneInfo(tz)).isoformat() if upcoming else None,
        last_sent_at=schedule.last_sent_at,
        created_by=schedule.created_by,
        created_at=schedule.created_at,
    )


def _check_content(content: str) -> None:
    unknown = validate_template(content)
    if unknown:
        raise ValidationFailed.field(
            "content", f"unknown merge fields: {', '.join('{' + u + '}' for u in unknown)}"
        )


async def _check_target(session: AsyncSession, church_id: int, target: Target) -> None:
    if target.type == "all":
        return
    repo = MessageRepository(session, church_id=church_id)
    missing = await repo.missing_target_ids(target.type, target.ids)
    if missing:
        raise ValidationFailed(
            f"unknown {target.type}: {', '.join(map(str, missing[:20]))}",
            fields={"target.ids": f"unknown {target.type} ids: {missing[:20]}"},
        )


def _schedule_fields(values: dict[str, Any], tz: str) -> datetime:
    """Validate the schedule part of `values` (stored column names) and return its next firing."""
    try:
        validate_schedule(
            frequency=values["frequency"],
            time_of_day=values["time_of_day"],
            tz=tz,
            day_of_week=values["day_of_week"],
            day_of_month=values["day_of_month"],
        )
        return next_send_at(values, tz, utcnow())
    except ScheduleError as exc:
        if exc.field == "tz":  # the church's own setting, not this body's
            raise ValidationFailed(f"the church's timezone is invalid: {exc.reason}") from None
        raise ValidationFailed.field(exc.field, exc.reason) from None


async def _church(session: AsyncSession, church_id: int) -> Church:
    church = await ChurchRepository(session, church_id=church_id).get()
    if church is None:
        raise NotFound("church", church_id)
    return church


async def _check_length(
    session: AsyncSession, church: Church, content: str, target: Target
) -> None:
    """422 on `content` when the text, filled in for someone in the target as it is now, would
    be longer than the church's provider accepts: it would fail at the carrier at every firing.
    (Whoever joins the audience later with a longer name is failed with a reason at sending,
    see delivery.dispatcher.)"""
    await check_provider_limit(session, church, content, target.type, target.ids)


async def list_recurring(
    session: AsyncSession,
    auth: AuthContext,
    *,
    active: bool | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[RecurringOut], str | None]:
    key = RECURRING_CURSOR.decode(cursor)
    rows = await RecurringRepository(session, church_id=auth.church_id).list(
        active=active, after_id=key[0] if key else None, limit=limit
    )
    items, next_cursor = RECURRING_CURSOR.page(rows, limit, lambda r: (r[0].id,))
    return [to_out(schedule, tz) for schedule, tz in items], next_cursor


async def get_recurring(
    session: AsyncSession, auth: AuthContext, recurring_id: int
) -> RecurringOut:
    row = await RecurringRepository(session, church_id=auth.church_id).get(recurring_id)
    if row is None:
        raise NotFound("recurring message", recurring_id)
    return to_out(row[0], row[1])


async def create_recurring(
    session: AsyncSession, auth: AuthContext, data: RecurringIn
) -> RecurringOut:
    _check_content(data.content)
    repo = RecurringRepository(session, church_id=auth.church_id)
    church = await _church(session, auth.church_id)
    tz = church.timezone
    values: dict[str, Any] = {
        "name": data.name,
        "content": data.content,
        "target_type": data.target.type,
        "target_ids": data.target.ids,
        "frequency": data.frequency,
        "day_of_week": data.day_of_week,
        "day_of_month": data.day_of_month,
        "time_of_day": parse_time_of_day(data.time_of_day),
        "is_active": data.is_active,
        "created_by": auth.admin_id,
    }
    values["next_send_at"] = _schedule_fields(values, tz)
    await _check_target(session, auth.church_id, data.target)
    await _check_length(session, church, data.content, data.target)
    created = await repo.create(values)
    church_changed(session, auth.church_id)
    return to_out(created, tz)


async def update_recurring(
    session: AsyncSession, auth: AuthContext, recurring_id: int, data: RecurringPatch
) -> RecurringOut:
    """Apply the given fields, then recompute next_send_at from now (see the module doc)."""
    repo = RecurringRepository(session, church_id=auth.church_id)
    row = await repo.get(recurring_id, for_update=True)
    if row is None:
        raise NotFound("recurring message", recurring_id)
    current, tz = row
    given = data.model_dump(exclude_unset=True)
    if not given:
        return to_out(current, tz)

    changes: dict[str, Any] = {}
    for name in ("name", "content", "frequency", "day_of_week", "day_of_month", "is_active"):
        if name in given:
            changes[name] = given[name]
    if "time_of_day" in given:
        changes["time_of_day"] = parse_time_of_day(given["time_of_day"])
    if data.target is not None:
        changes["target_type"], changes["target_ids"] = data.target.type, data.target.ids
    if "frequency" in given:
        # A day field the new frequency doesn't use goes away unless the body sets it (then
        # validation says it doesn't belong).
        for field in ("day_of_week", "day_of_month"):
            if field != _DAY_FIELD[given["frequency"]] and field not in given:
                changes[field] = None

    merged = {
        name: changes.get(name, getattr(current, name))
        for name in ("frequency", "time_of_day", "day_of_week", "day_of_month")
    }
    changes["next_send_at"] = _schedule_fields(merged, tz)
    if "content" in changes:
        _check_content(changes["content"])
    if data.target is not None:
        await _check_target(session, auth.church_id, data.target)
    if "content" in changes or data.target is not None:
        target = data.target or Target.model_validate(
            {"type": current.target_type, "ids": list(current.target_ids or [])}
        )
        church = await _church(session, auth.church_id)
        await _check_length(session, church, changes.get("content", current.content), target)
    updated = await repo.update(recurring_id, changes)
    if updated is None:  # pragma: no cover - the row is locked since the read
        raise NotFound("recurring message", recurring_id)
    church_changed(session, auth.church_id)
    return to_out(updated, tz)


async def delete_recurring(session: AsyncSession, auth: AuthContext, recurring_id: int) -> None:
    if not await RecurringRepository(session, church_id=auth.church_id).delete(recurring_id):
        raise NotFound("recurring message", recurring_id)
    church_changed(session, auth.church_id)


async def reschedule_church(session: AsyncSession, church_id: int, tz: str) -> int:
    """Recompute every active schedule of a church from now in timezone `tz`: call it in the
    transaction that changes the church's timezone. Two statements, whatever the count."""
    repo = RecurringRepository(session, church_id=church_id)
    schedules = await repo.active_schedules()
    if schedules:
        now = utcnow()
        await repo.set_next_send_at(
            [s.id for s in schedules], [next_send_at(s, tz, now) for s in schedules]
        )
    return len(schedules)
