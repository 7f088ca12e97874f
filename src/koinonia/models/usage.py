from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from koinonia.models.base import Base


class Usage(Base):
    """Texts (recipient-messages) and segments per church per billing month (first day)."""

    __tablename__ = "usage"

    church_id: Mapped[int] = mapped_column(
        ForeignKey("churches.id", ondelete="CASCADE"), primary_key=True
    )
    month: Mapped[date] = mapped_column(Date, primary_key=True)
    texts: Mapped[int] = mapped_column(BigInteger, server_default="0")
    segments: Mapped[int] = mapped_column(BigInteger, server_default="0")
