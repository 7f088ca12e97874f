"""db.process: what the worker and the CLI commands own. Their jobs register cache
invalidations (db.effects); those reach the API processes only through the configured store."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from koinonia.config import get_settings
from koinonia.db.process import process_database
from koinonia.kit.store import RedisStore, get_store, use_store


async def test_a_worker_process_uses_the_configured_store_and_its_database(
    engine: AsyncEngine,
) -> None:
    settings = get_settings().model_copy(
        update={
            "database_url": engine.url.render_as_string(hide_password=False),
            # Never contacted here: the store a job's invalidation goes to is what counts.
            "redis_url": "redis://127.0.0.1:1/0",
        }
    )
    previous = use_store(None)
    try:
        async with process_database(settings) as database:
            assert isinstance(get_store(), RedisStore)
            async with database.session() as session:
                assert (await session.execute(text("SELECT 1"))).scalar_one() == 1
        assert database.engine.pool.checkedout() == 0
    finally:
        use_store(previous)
