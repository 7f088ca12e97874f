from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, String, func, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column, in_check

ROLES = ("PRIMARY", "CO_ADMIN")


class Admin(Base):
    __tablename__ = "admins"
    __table_args__ = (
        CheckConstraint(in_check("role", ROLES), name="role"),
        # Login id: one account per address, whatever its case.
        Index("uq_admins_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    email: Mapped[str] = mapped_column(String(320))
    password_hash: Mapped[str] = mapped_column(String(200))
    first_name: Mapped[str] = mapped_column(String(100))
    last_name: Mapped[str] = mapped_column(String(100), server_default="")
    role: Mapped[str] = mapped_column(String(16))
    must_change_password: Mapped[bool] = mapped_column(Boolean, server_default="false")
    created_at: Mapped[datetime] = created_at_column()


class AuthSession(Base):
    """A login: the family of rotating refresh tokens; access tokens name it, logout revokes it."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(UUID(as_uuid=False), primary_key=True)
    admin_id: Mapped[int] = mapped_column(
        ForeignKey("admins.id", ondelete="CASCADE"), nullable=False, index=True
    )
    church_id: Mapped[int] = church_fk()
    # The one refresh token of the family that may still be used; any other is a reuse.
    current_refresh_jti: Mapped[str] = mapped_column(UUID(as_uuid=False))
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = created_at_column()
