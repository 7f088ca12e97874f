"""The database of a process: its engine (the one connection pool), its sessions and its
read-only sessions, in one object that whoever runs owns and passes on.

- The API: `create_app` opens one in its lifespan (or is given one) and keeps it on
  `app.state.database`; dependencies and the hot reads reach it from the request's app.
- The worker, the CLI and `koinonia dev` open their own (`Database.open`) and pass it to the
  jobs they run; `koinonia dev` gives its one to both the API and the worker.
- Tests make theirs (tests/fixtures/database.py): one bound to the test's rolled-back connection
  (`Database.bound_to`), given to the app under test; one on the real engine for the tests that
  need real commits.

Nothing reaches a database through a module global, so two of them (a test's and a server's)
can never be mixed up.

Sessions:
- `session()`: a unit of work (`db.session.unit_of_work`), the one contract of requests and
  jobs: committed when the block ends normally, rolled back on an exception, after-commit
  effects run once committed.
- `read_session()` / `read_only(session)`: the same, its statements run without BEGIN / COMMIT
  (an AUTOCOMMIT view of the engine, sharing its pool). For work that only reads and needs
  nothing of a transaction: no writes, no locks, no transaction-local settings (`SET LOCAL`,
  `set_config(..., true)`). Under READ COMMITTED each statement sees its own snapshot inside a
  transaction too, so the results are the same, and a one-statement read saves two of its three
  round trips.
- `sessions`: the plain sessionmaker, for code that ends its own transactions (the dispatcher
  commits a claim before it sends).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from koinonia.config import Settings
from koinonia.db.engine import make_engine
from koinonia.db.session import unit_of_work


class Database:
    """An engine, its sessionmaker and its read-only (AUTOCOMMIT) variant."""

    __slots__ = ("_reads", "engine", "sessions")

    def __init__(
        self, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession] | None = None
    ) -> None:
        """Sessions on `engine`, or from `sessions` when given (then reads keep their
        transaction: `read_only` leaves sessions as they are)."""
        self.engine = engine
        if sessions is None:
            self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
            self._reads: AsyncEngine | None = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self.sessions = sessions
            self._reads = None

    @classmethod
    def open(cls, settings: Settings, url: str | None = None) -> Database:
        """A new pool on the configured database (or `url`); the caller disposes of it."""
        return cls(make_engine(settings, url))

    @classmethod
    def bound_to(cls, connection: AsyncConnection) -> Database:
        """Every session on `connection`, inside the transaction it holds: a session's commit
        releases a savepoint and its rollback rolls back to one (the test suite's database,
        rolled back as a whole when the test ends). Reads keep that transaction (there is one
        connection, in a transaction already)."""
        sessions = async_sessionmaker(
            bind=connection,
            expire_on_commit=False,
            autoflush=False,  # as production's sessions: tests must flush where the code must
            join_transaction_mode="create_savepoint",
        )
        return cls(connection.engine, sessions)

    def session(self) -> AbstractAsyncContextManager[AsyncSession]:
        """`async with database.session() as session:` a unit of work (see the module
        docstring)."""
        return unit_of_work(self.sessions)

    @asynccontextmanager
    async def read_session(self) -> AsyncIterator[AsyncSession]:
        """A unit of work whose statements run without BEGIN / COMMIT (see `read_only`)."""
        async with unit_of_work(self.sessions) as session:
            yield self.read_only(session)

    def read_only(self, session: AsyncSession) -> AsyncSession:
        """`session` (one of this database's, nothing executed in it yet) with its statements
        run without BEGIN / COMMIT from now on; returned for convenience. Lazy: the session
        still takes a connection only for its first statement (a cached read takes none).
        Leaves a session that began a transaction already as it is, and every session of a
        database made with its own sessionmaker (`bound_to`)."""
        reads = self._reads
        if reads is None or session.in_transaction():
            return session
        session.bind = reads
        session.sync_session.bind = reads.sync_engine
        return session

    async def dispose(self) -> None:
        """Close the pool's connections (the owner, once nothing uses it any more)."""
        await self.engine.dispose()


class LazyReadSession:
    """A request's read-only session (`Database.read_session()`), opened on the first call (a
    cached read opens none), under the same contract as the request dependency's: one unit of
    work that ends with the `AsyncExitStack` it was given (committed on success, rolled back on
    an exception), its statements run without BEGIN / COMMIT."""

    __slots__ = ("_database", "_session", "_stack")

    def __init__(self, database: Database, stack: AsyncExitStack) -> None:
        self._database = database
        self._stack = stack
        self._session: AsyncSession | None = None

    async def __call__(self) -> AsyncSession:
        if self._session is None:
            self._session = await self._stack.enter_async_context(self._database.read_session())
        return self._session
