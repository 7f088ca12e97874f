"""Distinct members per branch, maintained by triggers on group_members and groups
(db/sql/branch_member_counts.sql), never written from Python. Read by stats; anything that needs
"how many members does branch X have" can read them instead of counting memberships."""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, SmallInteger, text
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base
from koinonia.models.member import Member


class BranchMemberCount(Base):
    """Distinct members of a branch's groups, sharded like MessageStatusCount: SUM(n) per
    branch (a member in two groups of the branch counts once)."""

    __tablename__ = "branch_member_counts"

    branch_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    church_id: Mapped[int] = mapped_column(BigInteger)
    n: Mapped[int] = mapped_column(BigInteger, server_default="0")


# Opted-out members are few; counting them (stats, billing) reads this small index only.
Index(
    "ix_members_church_opted_out",
    Member.church_id,
    postgresql_where=text("consent = 'opted_out'"),
)
