"""db.session: the unit-of-work contract, and reads outside a transaction block."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from koinonia.db.session import autocommit_reads, job_session


@pytest.fixture
def commits(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    for name in ("commit", "rollback"):
        original = getattr(AsyncSession, name)

        async def spy(self: AsyncSession, _o: Any = original, _n: str = name) -> None:
            calls.append(_n)
            await _o(self)

        monkeypatch.setattr(AsyncSession, name, spy)
    return calls


async def test_a_session_that_did_nothing_ends_without_commit(
    connection: AsyncConnection, commits: list[str]
) -> None:
    async with job_session():
        pass
    assert commits == []


async def test_work_is_committed_and_errors_roll_back(
    connection: AsyncConnection, commits: list[str]
) -> None:
    async with job_session() as session:
        await session.execute(text("SELECT 1"))
    assert commits == ["commit"]
    with pytest.raises(RuntimeError):
        async with job_session() as session:
            await session.execute(text("SELECT 1"))
            raise RuntimeError("boom")
    assert commits == ["commit", "rollback"]


async def _same_transaction(session: AsyncSession) -> bool:
    first = await session.scalar(text("SELECT now()"))
    await session.execute(text("SELECT pg_sleep(0.002)"))
    return bool(first == await session.scalar(text("SELECT now()")))


async def test_autocommit_reads_run_without_a_transaction_block(engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        autocommit_reads(session)
        assert not await _same_transaction(session)  # each statement its own transaction
        await session.commit()
    async with maker() as session:  # the pooled connection is transactional again
        assert await _same_transaction(session)
        await session.commit()


async def test_autocommit_reads_leave_a_begun_transaction_alone(engine: AsyncEngine) -> None:
    maker = async_sessionmaker(engine, expire_on_commit=False)
    async with maker() as session:
        await session.execute(text("SELECT 1"))
        autocommit_reads(session)
        assert await _same_transaction(session)
        await session.rollback()
