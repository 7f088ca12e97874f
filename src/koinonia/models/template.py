from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base, church_fk, created_at_column, id_column, in_check

TEMPLATE_CATEGORIES = ("service_reminder", "event", "prayer", "thank_you", "welcome", "offering")


class Template(Base):
    __tablename__ = "templates"
    __table_args__ = (
        UniqueConstraint("church_id", "name"),
        CheckConstraint(in_check("category", TEMPLATE_CATEGORIES), name="category"),
    )

    id: Mapped[int] = id_column()
    church_id: Mapped[int] = church_fk()
    name: Mapped[str] = mapped_column(String(200))
    content: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(32))
    usage_count: Mapped[int] = mapped_column(Integer, server_default="0")
    created_at: Mapped[datetime] = created_at_column()
