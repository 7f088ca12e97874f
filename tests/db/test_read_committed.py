"""READ COMMITTED is guaranteed: the engine asks for it, and the integrity triggers refuse any
stricter level (koinonia/db/sql/read_committed.sql says why)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from koinonia.config import get_settings
from koinonia.db.engine import make_engine
from koinonia.db.outage import sqlstate

STRICTER = ["REPEATABLE READ", "SERIALIZABLE"]

# Each fires a statement-level trigger that checks the level, on no rows (they fire anyway).
CHECKED = {
    "group_members insert": "INSERT INTO group_members (group_id, member_id, church_id)"
    " SELECT 1, 1, 1 WHERE false",
    "members insert": "INSERT INTO members (church_id, first_name, phone)"
    " SELECT 1, 'x', '+15550000000' WHERE false",
    "group_members delete": "DELETE FROM group_members WHERE false",
    "groups delete": "DELETE FROM groups WHERE false",
    "members delete": "DELETE FROM members WHERE false",
    "churches delete": "DELETE FROM churches WHERE false",
    "messages delete": "DELETE FROM messages WHERE false",
    "branches delete": "DELETE FROM branches WHERE false",
}

# The message status counters only add deltas with upserts: safe at any level, not checked.
UNCHECKED = (
    "INSERT INTO message_recipients (message_id, member_id, church_id, phone)"
    " SELECT 1, 1, 1, '+15550000000' WHERE false"
)

# Triggers whose functions need not check the level, and why (see their .sql file).
SAFE_AT_ANY_LEVEL = {
    "message_recipients_count_insert",  # additive upserts (message_status_counts.sql)
    "message_recipients_count_update",
}


@pytest.fixture
async def at_level(engine: AsyncEngine) -> AsyncIterator[dict[str, AsyncConnection]]:
    """One connection per level, each in a transaction rolled back at the end."""
    opened: dict[str, AsyncConnection] = {}
    try:
        for level in [*STRICTER, "READ COMMITTED"]:
            conn = await engine.connect()
            opened[level] = await conn.execution_options(isolation_level=level)
            await opened[level].begin()
        yield opened
    finally:
        for conn in opened.values():
            await conn.rollback()
            await conn.close()


@pytest.mark.parametrize("level", STRICTER)
@pytest.mark.parametrize("statement", list(CHECKED), ids=list(CHECKED))
async def test_integrity_triggers_refuse_a_stricter_level(
    at_level: dict[str, AsyncConnection], level: str, statement: str
) -> None:
    conn = at_level[level]
    assert (await conn.exec_driver_sql("SHOW transaction_isolation")).scalar() == level.lower()
    with pytest.raises(DBAPIError) as refused:
        await conn.exec_driver_sql(CHECKED[statement])
    assert sqlstate(refused.value) == "25000"
    assert f"needs READ COMMITTED, this transaction is {level}" in str(refused.value)


@pytest.mark.parametrize("statement", list(CHECKED), ids=list(CHECKED))
async def test_the_same_statements_run_under_read_committed(
    at_level: dict[str, AsyncConnection], statement: str
) -> None:
    conn = at_level["READ COMMITTED"]
    await conn.exec_driver_sql(CHECKED[statement])


@pytest.mark.parametrize("level", STRICTER)
async def test_row_level_checks_refuse_too_and_counters_are_not_checked(
    at_level: dict[str, AsyncConnection], level: str
) -> None:
    conn = at_level[level]
    await conn.exec_driver_sql(UNCHECKED)
    church = (
        await conn.exec_driver_sql(
            "INSERT INTO churches (name, contact_email) VALUES ('c', 'c@example.org') RETURNING id"
        )
    ).scalar_one()
    first, second = (
        await conn.exec_driver_sql(
            f"INSERT INTO branches (church_id, name) VALUES ({church}, 'a'), ({church}, 'b')"
            " RETURNING id"
        )
    ).scalars()
    await conn.exec_driver_sql(
        f"INSERT INTO groups (church_id, branch_id, name) VALUES ({church}, {first}, 'g')"
    )
    # A group moving to another branch: the row-level trigger of the branch counters.
    with pytest.raises(DBAPIError) as refused:
        await conn.exec_driver_sql(f"UPDATE groups SET branch_id = {second}")
    assert "trigger groups_branch_members_move needs READ COMMITTED" in str(refused.value)


async def test_every_other_trigger_checks_the_level(engine: AsyncEngine) -> None:
    # A trigger added later without the check fails here, unless it is shown safe above.
    async with engine.connect() as conn:
        rows = (
            await conn.exec_driver_sql(
                "SELECT t.tgname, p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
                " JOIN pg_class c ON c.oid = t.tgrelid"
                " WHERE c.relnamespace = 'public'::regnamespace AND NOT t.tgisinternal"
            )
        ).all()
    unchecked = {
        name
        for name, source in rows
        if "PERFORM koinonia_require_read_committed(TG_NAME);" not in source
    }
    assert len(rows) > len(SAFE_AT_ANY_LEVEL)
    assert unchecked == SAFE_AT_ANY_LEVEL


async def test_the_engine_runs_read_committed_whatever_the_database_default(
    engine: AsyncEngine,
) -> None:
    database = engine.url.database
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql(
            f"ALTER DATABASE \"{database}\" SET default_transaction_isolation = 'serializable'"
        )
    other = make_engine(get_settings(), engine.url.render_as_string(hide_password=False))
    try:
        async with other.connect() as conn:
            default = (await conn.exec_driver_sql("SHOW default_transaction_isolation")).scalar()
            level = (await conn.exec_driver_sql("SHOW transaction_isolation")).scalar()
        assert (default, level) == ("serializable", "read committed")
    finally:
        await other.dispose()
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql(
                f'ALTER DATABASE "{database}" RESET default_transaction_isolation'
            )
