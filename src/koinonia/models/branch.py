from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column


class Branch(Base):
    __tablename__ = "branches"
    __table_args__ = (UniqueConstraint("church_id", "name"),)

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    name: Mapped[str] = mapped_column(String(200))
    address: Mapped[str | None] = mapped_column(String(500))
    phone: Mapped[str | None] = mapped_column(String(20))
    description: Mapped[str | None] = mapped_column(Text)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default="true")
    created_at: Mapped[datetime] = created_at_column()
