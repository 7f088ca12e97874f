"""All SQL of recurring messages: the church-scoped CRUD, and the scheduler's cross-church queue
(claim one due schedule, advance it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    DateTime,
    Row,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Church, RecurringMessage

# (schedule, its church's timezone)
ScheduleRow = Row[RecurringMessage, str]


class RecurringRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    def _with_timezone(self) -> Any:
        return (
            select(RecurringMessage, Church.timezone)
            .join(Church, Church.id == RecurringMessage.church_id)
            .where(RecurringMessage.church_id == self.church_id)
        )

    async def get(self, recurring_id: int, *, for_update: bool = False) -> ScheduleRow | None:
        """(schedule, church timezone), locked for the transaction when `for_update`."""
        stmt = self._with_timezone().where(RecurringMessage.id == recurring_id)
        if for_update:
            stmt = stmt.with_for_update(of=RecurringMessage)
        return (await self.session.execute(stmt)).one_or_none()

    async def create(self, values: dict[str, Any]) -> RecurringMessage:
        stmt = (
            insert(RecurringMessage)
            .values(church_id=self.church_id, **values)
            .returning(RecurringMessage)
        )
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, recurring_id: int, values: dict[str, Any]) -> RecurringMessage | None:
        stmt = (
            update(RecurringMessage)
            .where(
                RecurringMessage.church_id == self.church_id,
                RecurringMessage.id == recurring_id,
            )
            .values(**values)
            .returning(RecurringMessage)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def delete(self, recurring_id: int) -> bool:
        stmt = (
            delete(RecurringMessage)
            .where(
                RecurringMessage.church_id == self.church_id,
                RecurringMessage.id == recurring_id,
            )
            .returning(RecurringMessage.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def active_schedules(self) -> list[RecurringMessage]:
        """Every active schedule of the church, locked (a timezone change reschedules them)."""
        stmt = (
            select(RecurringMessage)
            .where(RecurringMessage.church_id == self.church_id, RecurringMessage.is_active)
            .order_by(RecurringMessage.id)
            .with_for_update()
        )
        return list((await self.session.execute(stmt)).scalars())

    async def set_next_send_at(self, ids: list[int], next_send_at: list[datetime]) -> None:
        """Many schedules' next times in one statement."""
        stmt = text(
            "UPDATE recurring_messages r SET next_send_at = d.next_send_at"
            " FROM unnest(:ids, :next) AS d(id, next_send_at)"
            " WHERE r.id = d.id AND r.church_id = :church_id"
        ).bindparams(
            bindparam("ids", type_=ARRAY(BigInteger)),
            bindparam("next", type_=ARRAY(DateTime(timezone=True))),
        )
        await self.session.execute(
            stmt, {"ids": ids, "next": next_send_at, "church_id": self.church_id}
        )

    async def list(
        self, *, active: bool | None, after_id: int | None, limit: int
    ) -> list[ScheduleRow]:
        """(schedule, church timezone) rows by id."""
        stmt = self._with_timezone()
        if active is not None:
            stmt = stmt.where(RecurringMessage.is_active.is_(active))
        if after_id is not None:
            stmt = stmt.where(RecurringMessage.id > after_id)
        stmt = stmt.order_by(RecurringMessage.id).limit(limit + 1)
        return list((await self.session.execute(stmt)).all())


@dataclass(frozen=True, slots=True)
class DueSchedule:
    schedule: RecurringMessage
    church: Church
    now: datetime  # the claiming transaction's clock


class ScheduleQueue:
    """The scheduler's view: due schedules of ALL churches (a worker serves every tenant)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(self, *, church_id: int | None = None) -> DueSchedule | None:
        """Lock the most overdue active schedule no other worker holds, with its church.

        `FOR UPDATE OF` the schedule only: the church row stays free for requests. The lock lasts
        until the caller's transaction ends, so firing and advancing are one atomic step and a
        concurrent worker skips the row instead of firing it again. `church_id` narrows the
        queue to one church (tests share a database)."""
        stmt = (
            select(RecurringMessage, Church, func.now())
            .join(Church, Church.id == RecurringMessage.church_id)
            .where(RecurringMessage.is_active, RecurringMessage.next_send_at <= func.now())
            .order_by(RecurringMessage.next_send_at)
            .limit(1)
            .with_for_update(of=RecurringMessage, skip_locked=True)
        )
        if church_id is not None:
            stmt = stmt.where(RecurringMessage.church_id == church_id)
        row = (await self.session.execute(stmt)).one_or_none()
        return DueSchedule(row[0], row[1], row[2]) if row is not None else None

    async def advance(self, schedule_id: int, next_send_at: datetime, *, sent: bool) -> None:
        values: dict[str, Any] = {"next_send_at": next_send_at}
        if sent:
            values["last_sent_at"] = func.now()
        stmt = (
            update(RecurringMessage)
            .where(RecurringMessage.id == schedule_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(stmt)

    async def deactivate(self, schedule_id: int) -> None:
        stmt = (
            update(RecurringMessage)
            .where(RecurringMessage.id == schedule_id)
            .values(is_active=False)
            .execution_options(synchronize_session=False)
        )
        await self.session.execute(stmt)
