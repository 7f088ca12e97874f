"""Sessions: one per request (FastAPI dependency) and one per background job, same contract.

Commit when the unit of work ends normally, roll back on any exception. Services and repositories
never commit; they flush when they need an id or a constraint checked now.

A session that never began a transaction (nothing executed, nothing added: a cached read, a
refused request) is closed without a commit or rollback: there is nothing to end, and a commit
of nothing still cost ~40 µs of SQLAlchemy bookkeeping per request.
"""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from koinonia.db.engine import sessionmaker


@asynccontextmanager
async def job_session() -> AsyncIterator[AsyncSession]:
    async with sessionmaker()() as session:
        try:
            yield session
            if session.in_transaction():
                await session.commit()
        except BaseException:
            if session.in_transaction():
                await session.rollback()
            raise


async def request_session() -> AsyncIterator[AsyncSession]:
    async with job_session() as session:
        yield session


def autocommit_reads(session: AsyncSession) -> None:
    """Run the session's statements outside a transaction block (no BEGIN / COMMIT round trips):
    for a request that only reads, each statement under READ COMMITTED sees its own snapshot
    inside a transaction too, so its results are the same, and it saves two of its three round
    trips. Only for reads that need nothing of a transaction: no writes, no locks, no
    transaction-local settings (`SET LOCAL`, `set_config(..., true)`).

    Lazy: the session still takes a connection only for its first statement (a cached read
    takes none). A no-op when the session already began a transaction, and in the test suite,
    where every session joins the test's outer transaction on one connection."""
    bind = session.bind
    if session.in_transaction() or not isinstance(bind, AsyncEngine):
        return
    autocommit = _autocommit_engines.get(bind)
    if autocommit is None:
        autocommit = bind.execution_options(isolation_level="AUTOCOMMIT")
        _autocommit_engines[bind] = autocommit
    session.bind = autocommit
    session.sync_session.bind = autocommit.sync_engine


# The AUTOCOMMIT variant of each engine (a view sharing its pool), made once.
_autocommit_engines: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = (
    weakref.WeakKeyDictionary()
)
