"""The migrations build the schema the models describe, from an empty database, and take it
down again."""

from __future__ import annotations

import os
import warnings

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from koinonia.config import get_settings
from koinonia.db.embedded import database_url, execute_on_server
from koinonia.db.engine import make_engine
from koinonia.db.migrate import alembic_config, migrate
from koinonia.models import Base

# Alembic cannot compare expression indexes with operator classes (trigram search); it reports
# them as changed. They are compared by their definition below instead.
EXPRESSION_INDEXES = {
    "ix_members_name_trgm",
    "ix_members_phone_trgm",
    "ix_members_search_prefix",
    "ix_members_last_first_prefix",
}


def _is_expression_index(op: object) -> bool:
    return (
        isinstance(op, tuple)
        and op[0] in ("add_index", "remove_index")
        and op[1].name in EXPRESSION_INDEXES
    )


async def test_migrations_match_models(engine: AsyncEngine) -> None:
    # The session's database was built by `alembic upgrade head` from empty (fixtures/database).
    def diff(sync_conn: object) -> list[object]:
        ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
        with warnings.catch_warnings():
            # Expression indexes (trigram search) cannot be compared; they are checked below.
            warnings.simplefilter("ignore")
            ops = compare_metadata(ctx, Base.metadata)
        return [op for op in ops if not _is_expression_index(op)]

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        definitions = dict(
            (
                await conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE 'ix_members_%'"
                )
            ).all()
        )
        names = {
            r[0]
            for r in (
                await conn.exec_driver_sql(
                    "SELECT indexname FROM pg_indexes WHERE schemaname='public'"
                )
            ).all()
        }
    assert "(church_id, search_name gin_trgm_ops)" in definitions["ix_members_name_trgm"]
    assert "gin_trgm_ops" in definitions["ix_members_name_trgm"]
    assert "(church_id, phone gin_trgm_ops)" in definitions["ix_members_phone_trgm"]
    assert '(church_id, search_name COLLATE "C", id)' in (definitions["ix_members_search_prefix"])
    assert (
        "koinonia_fold((((last_name)::text || ' '::text) || (first_name)::text)) COLLATE \"C\""
        in (definitions["ix_members_last_first_prefix"])
    )
    assert {
        "ix_members_name_trgm",
        "ix_members_phone_trgm",
        "ix_messages_church_created",
        "ix_message_recipients_message_status",
        "pk_group_members",
    } <= names


async def test_fold_function_is_accent_and_case_insensitive(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        value = (await conn.exec_driver_sql("SELECT koinonia_fold('José ZOË')")).scalar_one()
    assert value == "jose zoe"


# What the schema holds, extensions' objects aside: tables, functions, triggers.
SCHEMA_OBJECTS = """
SELECT 'table ' || relname FROM pg_class
WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p')
  AND relname <> 'alembic_version'
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text FROM pg_proc p
WHERE p.pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')
UNION ALL
SELECT 'trigger ' || tgname FROM pg_trigger WHERE NOT tgisinternal
"""


async def test_downgrade_to_base_drops_everything_and_upgrade_rebuilds_it() -> None:
    name = f"koinonia_test_downgrade_{os.getpid()}"
    settings = get_settings()
    url = database_url(settings, name)
    await execute_on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await execute_on_server(url, f'CREATE DATABASE "{name}"')
    engine = make_engine(settings, url)

    def downgrade(conn: Connection) -> None:
        command.downgrade(alembic_config(conn), "base")

    try:
        await migrate(engine)
        async with engine.connect() as conn:
            built = set((await conn.exec_driver_sql(SCHEMA_OBJECTS)).scalars())
            await conn.run_sync(downgrade)
            await conn.commit()
            left = set((await conn.exec_driver_sql(SCHEMA_OBJECTS)).scalars())
        assert "table members" in built
        assert "trigger group_members_check_insert" in built
        assert left == set()
        await migrate(engine)
        async with engine.connect() as conn:
            assert set((await conn.exec_driver_sql(SCHEMA_OBJECTS)).scalars()) == built
    finally:
        await engine.dispose()
        await execute_on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
