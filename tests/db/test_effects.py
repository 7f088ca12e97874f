"""db.effects.church_changed: the church's cached documents are invalidated once the unit of work
commits (never before, never after a rollback of its transaction or savepoint), once per church
however often the services of one transaction call it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from koinonia.db.database import Database
from koinonia.db.effects import church_changed
from koinonia.kit.cache import version_key
from koinonia.kit.store import MemoryStore, use_store


class Boom(Exception):
    pass


class CountingStore(MemoryStore):
    """Records each invalidation (a version bump) by church version key."""

    def __init__(self) -> None:
        super().__init__()
        self.bumps: list[str] = []

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        self.bumps.append(key)
        return await super().incr(key, ttl_s, by)


@pytest.fixture
def store() -> Iterator[CountingStore]:
    previous = use_store(counting := CountingStore())
    try:
        yield counting
    finally:
        use_store(previous)


async def test_invalidates_after_the_commit(database: Database, store: CountingStore) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        church_changed(session, 7)
        assert store.bumps == []  # not before the commit: a reader would cache old data
    assert store.bumps == [version_key(7)]


async def test_a_rollback_does_not_invalidate(database: Database, store: CountingStore) -> None:
    with pytest.raises(Boom):
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
            church_changed(session, 7)
            raise Boom
    assert store.bumps == []


async def test_a_rolled_back_savepoint_drops_its_own(
    database: Database, store: CountingStore
) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        savepoint = await session.begin_nested()
        church_changed(session, 1)
        await savepoint.rollback()
        async with session.begin_nested():
            church_changed(session, 2)
    assert store.bumps == [version_key(2)]


async def test_once_per_church_and_transaction(database: Database, store: CountingStore) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        church_changed(session, 1)
        church_changed(session, 1)
        async with session.begin_nested():
            church_changed(session, 1)  # covered by the transaction's registration
        church_changed(session, 2)
    assert sorted(store.bumps) == [version_key(1), version_key(2)]


async def test_a_registration_dropped_with_its_savepoint_is_made_again(
    database: Database, store: CountingStore
) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        savepoint = await session.begin_nested()
        church_changed(session, 1)
        await savepoint.rollback()
        church_changed(session, 1)  # the write after it still needs one
    assert store.bumps == [version_key(1)]


async def test_each_committed_transaction_invalidates(
    database: Database, store: CountingStore
) -> None:
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        church_changed(session, 1)
        await session.commit()  # its effects run when the unit of work ends
        await session.execute(text("SELECT 1"))
        church_changed(session, 1)  # a new transaction: its own invalidation
    assert store.bumps == [version_key(1), version_key(1)]


async def test_needs_a_unit_of_work(connection: AsyncConnection) -> None:
    async with AsyncSession(bind=connection) as session:  # no request's, no job's
        with pytest.raises(RuntimeError, match="on_commit"):
            church_changed(session, 1)
