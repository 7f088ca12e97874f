"""db.session and db.database: the unit-of-work contract, and reads outside a transaction
block."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from koinonia.db.database import Database


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
    database: Database, commits: list[str]
) -> None:
    async with database.session():
        pass
    assert commits == []


async def test_work_is_committed_and_errors_roll_back(
    database: Database, commits: list[str]
) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
    assert commits == ["commit"]
    with pytest.raises(RuntimeError):
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
            raise RuntimeError("boom")
    assert commits == ["commit", "rollback"]


async def _same_transaction(session: AsyncSession) -> bool:
    first = await session.scalar(text("SELECT now()"))
    await session.execute(text("SELECT pg_sleep(0.002)"))
    return bool(first == await session.scalar(text("SELECT now()")))


async def test_read_sessions_run_without_a_transaction_block(engine: AsyncEngine) -> None:
    database = Database(engine)
    async with database.read_session() as session:
        assert not await _same_transaction(session)  # each statement its own transaction
    async with database.session() as session:  # the pooled connection is transactional again
        assert await _same_transaction(session)


async def test_read_only_leaves_a_begun_transaction_alone(engine: AsyncEngine) -> None:
    database = Database(engine)
    async with database.sessions() as session:
        await session.execute(text("SELECT 1"))
        assert database.read_only(session) is session
        assert await _same_transaction(session)
        await session.rollback()


async def test_a_database_bound_to_a_connection_keeps_its_transaction_for_reads(
    database: Database,
) -> None:
    async with database.read_session() as session:  # the test's outer transaction
        assert await _same_transaction(session)
