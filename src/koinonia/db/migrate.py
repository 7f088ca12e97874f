"""Apply Alembic migrations from code (start-up, `koinonia migrate`, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

# A package resource (koinonia/migrations), so an installed wheel migrates as a checkout does.
# alembic.ini at the repository root is for the `alembic` command (writing a revision).
SCRIPT_LOCATION = "koinonia:migrations"
# Serialises concurrent start-ups (API and worker racing to migrate the same database).
_MIGRATE_LOCK_KEY = 0x4B4F494E


def alembic_config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_LOCATION)
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def _upgrade(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _MIGRATE_LOCK_KEY})
    try:
        command.upgrade(alembic_config(connection), "head")
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _MIGRATE_LOCK_KEY})


async def migrate(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade)
        await conn.commit()
