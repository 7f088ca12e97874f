from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Computed,
    Index,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, created_at_column, id_column, in_check

CONSENT_STATES = ("opted_in", "opted_out")


class Member(Base):
    __tablename__ = "members"
    __table_args__ = (
        UniqueConstraint("church_id", "phone"),
        CheckConstraint(in_check("consent", CONSENT_STATES), name="consent"),
        # Search: accent- and case-insensitive substrings of the full name, and phone digits.
        # church_id leads (btree_gin), so one church's search never wades through the
        # platform's matches for a common trigram.
        Index(
            "ix_members_name_trgm",
            text("church_id, search_name gin_trgm_ops"),
            postgresql_using="gin",
        ),
        # Search tiers read pages straight off these (byte order, then id): a page costs
        # O(page), not O(matches) (members/repository.py).
        Index("ix_members_search_prefix", "church_id", text('(search_name COLLATE "C")'), "id"),
        Index(
            "ix_members_last_first_prefix",
            "church_id",
            text("(koinonia_fold(last_name || ' ' || first_name) COLLATE \"C\")"),
            "id",
        ),
        Index(
            "ix_members_phone_trgm", text("church_id, phone gin_trgm_ops"), postgresql_using="gin"
        ),
    )

    id: Mapped[int] = id_column()
    # No foreign key: its per-row check was ~270 ms of inserting an import's 100,000 members.
    # Statement-level triggers (db/sql/foreign_keys.sql) check and lock the statement's churches
    # at once and delete a deleted church's members.
    church_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100), server_default="")
    phone: Mapped[str] = mapped_column(String(20))
    email: Mapped[str | None] = mapped_column(String(320))
    consent: Mapped[str] = mapped_column(String(16), server_default="opted_in")
    consent_changed_at: Mapped[datetime | None]
    consent_source: Mapped[str | None] = mapped_column(String(32))
    # Folded once when written (lower case, accents stripped), so search reads a column instead
    # of calling unaccent for every candidate row several times per query.
    search_name: Mapped[str] = mapped_column(
        Text, Computed("koinonia_fold(first_name || ' ' || last_name)", persisted=True)
    )
    created_at: Mapped[datetime] = created_at_column()
