"""db.session: effects registered with on_commit run after the commit, never after a rollback
(of the transaction or of the savepoint they were registered in), and also after an explicit
commit inside the unit of work that then fails."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.db.database import Database
from koinonia.db.session import on_commit


class Boom(Exception):
    pass


def recorder(session: AsyncSession, log: list[str], name: str) -> None:
    async def effect() -> None:
        # Runs once the transaction is over: nothing of it is pending any more.
        log.append(f"{name} in_transaction={session.in_transaction()}")

    on_commit(session, effect)


async def test_effects_run_after_the_commit(database: Database) -> None:
    log: list[str] = []
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        recorder(session, log, "a")
        recorder(session, log, "b")
        assert log == []
    assert log == ["a in_transaction=False", "b in_transaction=False"]


async def test_a_rollback_drops_them(database: Database) -> None:
    log: list[str] = []
    with pytest.raises(Boom):
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
            recorder(session, log, "a")
            raise Boom
    assert log == []


async def test_a_rolled_back_savepoint_drops_only_its_own(database: Database) -> None:
    log: list[str] = []
    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        recorder(session, log, "outer")
        savepoint = await session.begin_nested()
        recorder(session, log, "inner-kept")
        await savepoint.commit()  # a released savepoint is not a commit: nothing runs yet
        assert log == []
        savepoint = await session.begin_nested()
        recorder(session, log, "inner-dropped")
        await savepoint.rollback()
    assert log == ["outer in_transaction=False", "inner-kept in_transaction=False"]


async def test_an_explicit_commit_survives_the_error_that_follows(
    database: Database,
) -> None:
    log: list[str] = []
    with pytest.raises(Boom):
        async with database.session() as session:
            await session.execute(text("SELECT 1"))
            recorder(session, log, "committed")
            await session.commit()
            await session.execute(text("SELECT 1"))
            recorder(session, log, "rolled-back")
            raise Boom
    assert log == ["committed in_transaction=False"]


async def test_a_session_that_never_began_runs_them_when_it_ends_well(
    database: Database,
) -> None:
    log: list[str] = []
    async with database.session() as session:
        recorder(session, log, "a")
    with pytest.raises(Boom):
        async with database.session() as session:
            recorder(session, log, "b")
            raise Boom
    assert log == ["a in_transaction=False"]


async def test_a_failing_effect_does_not_stop_the_others(database: Database) -> None:
    log: list[str] = []

    async def failing() -> None:
        raise RuntimeError("store down")

    async with database.session() as session:
        await session.execute(text("SELECT 1"))
        on_commit(session, failing)
        recorder(session, log, "after")
    assert log == ["after in_transaction=False"]


async def test_a_session_outside_a_unit_of_work_is_refused(database: Database) -> None:
    async with database.sessions() as session:

        async def effect() -> None:
            return None

        with pytest.raises(RuntimeError):
            on_commit(session, effect)


async def test_real_transactions_too(committed_database: Database) -> None:
    """Outside the test's rolled-back connection: a real COMMIT and a real ROLLBACK."""
    log: list[str] = []
    async with committed_database.session() as session:
        await session.execute(text("SELECT 1"))
        recorder(session, log, "committed")
        savepoint = await session.begin_nested()
        recorder(session, log, "savepoint-dropped")
        await savepoint.rollback()
    with pytest.raises(Boom):
        async with committed_database.session() as session:
            await session.execute(text("SELECT 1"))
            recorder(session, log, "rolled-back")
            raise Boom
    assert log == ["committed in_transaction=False"]
