"""How an engine (one connection pool) is made. `db.database.Database` owns the process's; nothing
else opens database connections (tests, bench and migrations aside)."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from koinonia.config import Settings
from koinonia.db import observe
from koinonia.db.embedded import database_url


def make_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    engine = create_async_engine(
        url or database_url(settings),
        isolation_level="READ COMMITTED",  # integrity triggers need it: db/sql/read_committed.sql
        pool_size=settings.pool_size,
        max_overflow=settings.pool_max_overflow,
        pool_timeout=settings.pool_timeout_s,
        poolclass=observe.ObservedPool,
        pool_pre_ping=False,
        pool_recycle=3600,
        connect_args={
            "statement_cache_size": settings.statement_cache_size,
            "server_settings": {"application_name": "koinonia", "jit": "off"},
        },
    )
    observe.instrument(engine, settings)
    return engine
