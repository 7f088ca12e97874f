"""Small helpers over SQLAlchemy shared by repositories."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError


def constraint_of(exc: IntegrityError) -> str | None:
    """The name of the violated constraint (asyncpg exposes it on the original error)."""
    orig = getattr(exc.orig, "__cause__", None) or exc.orig
    name = getattr(orig, "constraint_name", None)
    return str(name) if name else None
