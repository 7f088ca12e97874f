"""The one engine and connection pool of the process. Nothing else opens database connections."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from koinonia.config import Settings
from koinonia.db import observe
from koinonia.db.embedded import database_url

_engine: AsyncEngine | None = None
_sessionmaker: async_sessionmaker[AsyncSession] | None = None


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


def init_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """Create the process engine once; later calls return the same one."""
    global _engine, _sessionmaker
    if _engine is None:
        _engine = make_engine(settings, url)
        _sessionmaker = async_sessionmaker(_engine, expire_on_commit=False, autoflush=False)
    return _engine


def get_engine() -> AsyncEngine:
    if _engine is None:
        raise RuntimeError("engine not initialised: call init_engine() at start-up")
    return _engine


def sessionmaker() -> async_sessionmaker[AsyncSession]:
    if _sessionmaker is None:
        raise RuntimeError("engine not initialised: call init_engine() at start-up")
    return _sessionmaker


def set_engine(engine: AsyncEngine | None) -> None:
    """Install an engine made elsewhere (tests bind the process engine to one connection)."""
    global _engine, _sessionmaker
    _engine = engine
    _sessionmaker = (
        async_sessionmaker(engine, expire_on_commit=False, autoflush=False) if engine else None
    )


async def dispose_engine() -> None:
    global _engine, _sessionmaker
    if _engine is not None:
        await _engine.dispose()
    _engine, _sessionmaker = None, None
