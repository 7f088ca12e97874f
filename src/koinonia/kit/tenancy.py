"""Per-church serialisation for limit checks (count-then-insert must not race)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def lock_church(session: AsyncSession, church_id: int) -> None:
    """Hold the church's row lock until the transaction ends: concurrent creators of branches,
    members, admins or sends for the same church queue here, so plan limits hold exactly."""
    await session.execute(
        text("SELECT 1 FROM churches WHERE id = :cid FOR UPDATE"), {"cid": church_id}
    )
