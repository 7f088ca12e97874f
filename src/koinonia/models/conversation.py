from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column, in_check

CONVERSATION_STATUSES = ("open", "closed", "archived")


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        UniqueConstraint("church_id", "member_id"),
        CheckConstraint(in_check("status", CONVERSATION_STATUSES), name="status"),
        Index("ix_conversations_church_last", "church_id", text("last_message_at DESC"), "id"),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), server_default="open")
    unread_count: Mapped[int] = mapped_column(Integer, server_default="0")
    last_message_at: Mapped[datetime] = created_at_column()
    created_at: Mapped[datetime] = created_at_column()


class ConversationMessage(Base):
    __tablename__ = "conversation_messages"
    __table_args__ = (
        CheckConstraint(in_check("direction", ("inbound", "outbound")), name="direction"),
        Index("ix_conversation_messages_thread", "conversation_id", "id"),
        Index(
            "uq_conversation_messages_provider_id",
            "provider_message_id",
            unique=True,
            postgresql_where=text("provider_message_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(String(8))
    body: Mapped[str] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    status: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = created_at_column()


AUTO_REPLY_REASONS = ("unknown_sender", "help", "stop", "start")


class InboundAutoReply(Base):
    """An automatic text we sent back to a number that texted a church: the unknown-sender
    reply, a HELP answer, a STOP/START confirmation. The key allows one per (church, number,
    church-local day, reason): `INSERT ... ON CONFLICT DO NOTHING` decides, so a repeated
    webhook or a chatty unknown number gets one reply a day. (A STOP/START that actually changes
    consent is confirmed even when today's row exists; see conversations.inbound.)

    `recipient_id` is the `message_recipients.member_id` of that reply: the member's id, or for
    an unknown sender (no member) a fresh value from the members' id sequence, so it can never
    be, or later become, a real member's id."""

    __tablename__ = "inbound_auto_replies"
    __table_args__ = (CheckConstraint(in_check("reason", AUTO_REPLY_REASONS), name="reason"),)

    church_id: Mapped[int] = mapped_column(
        ForeignKey("churches.id", ondelete="CASCADE"), primary_key=True
    )
    phone: Mapped[str] = mapped_column(String(20), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    reason: Mapped[str] = mapped_column(String(16), primary_key=True)
    recipient_id: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = created_at_column()
