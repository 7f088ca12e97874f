"""A church whose rows are really committed, for tests of work claimed across transactions
(SKIP LOCKED, two workers, a restart): the rolled-back `connection` fixture can't show those.

Everything hangs off the church, so deleting it at the end (ON DELETE CASCADE) cleans up.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from fixtures.factories import make_branch, make_group, make_members
from koinonia.db import engine as db_engine
from koinonia.models import Church


@dataclass
class LiveChurch:
    session: AsyncSession  # commits for real; the code under test opens its own sessions
    church_id: int
    branch_id: int

    async def group(self, **kw: Any) -> int:
        return await make_group(self.session, self.church_id, self.branch_id, **kw)

    async def members(self, count: int, **kw: Any) -> list[int]:
        return await make_members(self.session, self.church_id, count, **kw)

    async def scalar(self, sql: str, **params: Any) -> Any:
        value = (await self.session.execute(text(sql), params)).scalar()
        await self.session.commit()
        return value

    async def rows(self, sql: str, **params: Any) -> list[Any]:
        rows = list((await self.session.execute(text(sql), params)).all())
        await self.session.commit()
        return rows

    async def execute(self, sql: str, **params: Any) -> None:
        await self.session.execute(text(sql), params)
        await self.session.commit()


@asynccontextmanager
async def live_church(engine: AsyncEngine, **church: Any) -> AsyncIterator[LiveChurch]:
    """A committed church (pro plan, SMS number, no quiet hours unless given) with one branch,
    sessions of the process bound to the real engine meanwhile."""
    previous = db_engine._sessionmaker
    db_engine.set_engine(engine)
    values = {
        "name": "Live Church",
        "contact_email": "live@example.org",
        "sms_number": f"+1720{random.randrange(2_000_000, 9_999_999)}",
        "plan": "pro",
        "subscription_status": "active",
        **church,
    }
    try:
        async with db_engine.sessionmaker()() as session:
            church_id = (
                await session.execute(insert(Church).values(**values).returning(Church.id))
            ).scalar_one()
            await session.commit()
            try:
                branch_id = await make_branch(session, church_id)
                yield LiveChurch(session, church_id, branch_id)
            finally:
                await session.rollback()
                await session.execute(delete(Church).where(Church.id == church_id))
                await session.commit()
    finally:
        db_engine._sessionmaker = previous
