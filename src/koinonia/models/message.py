from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column, in_check

MESSAGE_KINDS = ("broadcast", "reply", "recurring", "welcome", "relay", "system")
TARGET_TYPES = ("all", "branches", "groups", "members")
# The lifecycle: koinonia.delivery.repository's docstring.
MESSAGE_STATUSES = ("scheduled", "queued", "sending", "sent", "completed", "cancelled")
RECIPIENT_STATUSES = (
    "queued",
    "sending",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "skipped",
)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        CheckConstraint(in_check("kind", MESSAGE_KINDS), name="kind"),
        CheckConstraint(in_check("target_type", TARGET_TYPES), name="target"),
        CheckConstraint(in_check("status", MESSAGE_STATUSES), name="status"),
        CheckConstraint(in_check("encoding", ("GSM-7", "UCS-2")), name="encoding"),
        Index("ix_messages_church_created", "church_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_messages_scheduled_due",
            "scheduled_at",
            postgresql_where=text("status = 'scheduled'"),
        ),
        # The messages awaiting delivery reports, for the sweep that completes them.
        Index("ix_messages_sent", "id", postgresql_where=text("status = 'sent'")),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    content: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    target_type: Mapped[str] = mapped_column(String(16))
    target_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger), server_default="{}")
    encoding: Mapped[str] = mapped_column(String(8))
    segments: Mapped[int] = mapped_column(SmallInteger)  # per text, before merge fields
    status: Mapped[str] = mapped_column(String(16))
    recipient_count: Mapped[int] = mapped_column(Integer, server_default="0")
    skipped_opted_out: Mapped[int] = mapped_column(Integer, server_default="0")
    total_segments: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_by: Mapped[int | None] = mapped_column(ForeignKey("admins.id", ondelete="SET NULL"))
    conversation_id: Mapped[int | None] = mapped_column(
        ForeignKey("conversations.id", ondelete="SET NULL")
    )
    recurring_id: Mapped[int | None] = mapped_column(
        ForeignKey("recurring_messages.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = created_at_column()
    scheduled_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]  # when nothing was left to hand to the provider
    completed_at: Mapped[datetime | None]


class MessageRecipient(Base):
    __tablename__ = "message_recipients"
    __table_args__ = (
        CheckConstraint(in_check("status", RECIPIENT_STATUSES), name="status"),
        Index("ix_message_recipients_message_status", "message_id", "status"),
        # The delivery queue: only rows that are work are in this index.
        Index(
            "ix_message_recipients_due",
            "next_attempt_at",
            postgresql_where=text("status = 'queued'"),
        ),
        Index(
            "ix_message_recipients_lease",
            "lease_expires_at",
            postgresql_where=text("status = 'sending'"),
        ),
        Index(
            "uq_message_recipients_provider_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    # No foreign key to messages: rows are only ever written together with their message, in
    # one statement, and the per-row FK check was 60% of inserting a broadcast's recipients
    # (measured: 10,000 rows 127 ms with it, 50 ms without). A statement-level trigger on
    # messages deletes the recipients of deleted messages instead of ON DELETE CASCADE.
    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # No FK to members: a deleted member's delivery history stays with the message.
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    church_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    phone: Mapped[str] = mapped_column(String(20))
    segments: Mapped[int] = mapped_column(SmallInteger, server_default="1")
    status: Mapped[str] = mapped_column(String(16), server_default="queued")
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default="0")
    next_attempt_at: Mapped[datetime | None] = mapped_column(server_default=text("now()"))
    lease_expires_at: Mapped[datetime | None]
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_text: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = created_at_column()


class MessageStatusCount(Base):
    """Recipients per message and status, maintained by statement-level triggers on
    message_recipients (one upsert per message and status touched by a statement, never one
    per recipient). Each writer adds to its own shard row (backend pid mod 16), so concurrent
    webhooks and workers do not queue on one hot row; readers sum the shards."""

    __tablename__ = "message_status_counts"

    message_id: Mapped[int] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    n: Mapped[int] = mapped_column(BigInteger, server_default="0")


class PendingStatusReport(Base):
    """A delivery report that arrived before its send was recorded (the carrier can answer
    faster than a batch is written back). Stored so it is never lost; the dispatcher applies
    it right after it records the provider id. Reports for ids nobody sent expire after a day."""

    __tablename__ = "pending_status_reports"

    provider_message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    error_code: Mapped[str | None] = mapped_column(String(32))
    error_text: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[datetime] = created_at_column()
    # The carrier's code says: a temporary failure (re-queue the text) / the member opted out.
    retry: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    opt_out: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
