"""What a koinonia process other than the API owns (the worker, CLI commands): logging set up
from its settings, the shared store (Redis when `REDIS_URL` is set, so the cache invalidations
its jobs register reach the API processes), and its migrated `Database`; all released when the
process is done, also when start-up fails. The API's lifespan (`koinonia.app`) does the same
for a server; `koinonia dev` shares one database and store between its API and worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from koinonia.config import Settings
from koinonia.db.database import Database
from koinonia.db.migrate import migrate
from koinonia.kit.logging import configure_logging_from
from koinonia.kit.store import get_store, init_store


@asynccontextmanager
async def process_database(settings: Settings) -> AsyncIterator[Database]:
    configure_logging_from(settings)  # before migrating: Alembic's records go through it too
    init_store(settings.redis_url, settings.store_prefix)
    database = Database.open(settings)
    try:
        await migrate(database.engine)
        yield database
    finally:
        await database.dispose()
        await get_store().close()
