from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    SmallInteger,
    String,
    Text,
    Time,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column, in_check
from koinonia.models.message import TARGET_TYPES

FREQUENCIES = ("daily", "weekly", "monthly")


class RecurringMessage(Base):
    __tablename__ = "recurring_messages"
    __table_args__ = (
        CheckConstraint(in_check("frequency", FREQUENCIES), name="frequency"),
        CheckConstraint(in_check("target_type", TARGET_TYPES), name="target"),
        CheckConstraint("day_of_week BETWEEN 0 AND 6", name="day_of_week"),
        CheckConstraint("day_of_month BETWEEN 1 AND 31", name="day_of_month"),
        # The scheduler's queue: active schedules by due time.
        Index("ix_recurring_due", "next_send_at", postgresql_where=text("is_active")),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    target_type: Mapped[str] = mapped_column(String(16))
    target_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    frequency: Mapped[str] = mapped_column(String(16))
    day_of_week: Mapped[int | None] = mapped_column(SmallInteger)
    day_of_month: Mapped[int | None] = mapped_column(SmallInteger)
    time_of_day: Mapped[time] = mapped_column(Time)
    next_send_at: Mapped[datetime]
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    last_sent_at: Mapped[datetime | None]
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admins.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = created_at_column()
