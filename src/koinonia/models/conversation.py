from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
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
