from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column


class Group(Base):
    __tablename__ = "groups"
    __table_args__ = (UniqueConstraint("branch_id", "name"),)

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    branch_id: Mapped[int] = mapped_column(
        ForeignKey("branches.id", ondelete="CASCADE"), nullable=False, index=True
    )
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str | None] = mapped_column(Text)
    welcome_enabled: Mapped[bool] = mapped_column(Boolean, server_default="false")
    welcome_text: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = created_at_column()


class GroupMember(Base):
    __tablename__ = "group_members"
    __table_args__ = (
        Index("ix_group_members_member_id", "member_id"),
        # The welcome-text queue: memberships whose welcome is due and not yet sent.
        Index(
            "ix_group_members_welcome_due",
            "welcome_due_at",
            postgresql_where=text("welcome_due_at IS NOT NULL AND welcome_sent_at IS NULL"),
        ),
    )

    # No foreign keys: their per-row checks were two thirds of inserting an import's 100,000
    # memberships. Statement-level triggers (db/sql/foreign_keys.sql) check each statement's
    # rows at once, that group and member exist and belong to the row's church, locking them as
    # a foreign key would, and delete the memberships of deleted groups and members (a deleted
    # church's go with its groups and members).
    group_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    member_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    church_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    joined_at: Mapped[datetime] = created_at_column()
    welcome_due_at: Mapped[datetime | None]
    welcome_sent_at: Mapped[datetime | None]
