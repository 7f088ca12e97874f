"""Sessions: one per request (FastAPI dependency) and one per background job, same contract.

Commit when the unit of work ends normally, roll back on any exception. Services and repositories
never commit; they flush when they need an id or a constraint checked now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.db.engine import sessionmaker


@asynccontextmanager
async def job_session() -> AsyncIterator[AsyncSession]:
    async with sessionmaker()() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def request_session() -> AsyncIterator[AsyncSession]:
    async with job_session() as session:
        yield session
