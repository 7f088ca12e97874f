from __future__ import annotations

from datetime import datetime, time

from sqlalchemy import CheckConstraint, String, Text, Time
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, created_at_column, id_column, in_check

PLANS = ("starter", "growth", "pro")
SUBSCRIPTION_STATUSES = ("trial", "active", "past_due", "cancelled")
CONVERSATION_MODES = ("group_chat", "inbox")
PROVIDERS = ("sandbox", "twilio", "telnyx")


class Church(Base):
    __tablename__ = "churches"
    __table_args__ = (
        CheckConstraint(in_check("plan", PLANS), name="plan"),
        CheckConstraint(in_check("subscription_status", SUBSCRIPTION_STATUSES), name="status"),
        CheckConstraint(in_check("conversation_mode", CONVERSATION_MODES), name="mode"),
        CheckConstraint(in_check("sms_provider", PROVIDERS), name="provider"),
    )

    id: Mapped[int] = id_column()
    name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(320))
    timezone: Mapped[str] = mapped_column(String(64), server_default="America/New_York")
    sms_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    sms_provider: Mapped[str] = mapped_column(String(16), server_default="sandbox")
    plan: Mapped[str] = mapped_column(String(16), server_default="starter")
    subscription_status: Mapped[str] = mapped_column(String(16), server_default="trial")
    trial_ends_at: Mapped[datetime | None]
    conversation_mode: Mapped[str] = mapped_column(String(16), server_default="group_chat")
    quiet_hours_start: Mapped[time | None] = mapped_column(Time)
    quiet_hours_end: Mapped[time | None] = mapped_column(Time)
    unknown_sender_reply: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()
