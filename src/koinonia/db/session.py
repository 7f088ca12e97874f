"""Sessions as units of work: one per request (the FastAPI dependency in auth/deps.py) and one per
background job, same contract, both opened by `Database.session()` (db/database.py).

Each is a unit of work: the session, plus effects registered with `on_commit(session, callback)`
that must not happen unless its data is committed (forgetting a cached session, invalidating a
cache). Commit when the unit of work ends normally, roll back on any exception. Services and
repositories never commit; they flush when they need an id or a constraint checked now.

After-commit effects:
- run after the commit that covers them, in registration order, before the unit of work ends
  (for a request: before its response starts, so the client's next request sees them);
- are dropped by a rollback of the transaction (or savepoint) they were registered in, so they
  never run for data that was not committed;
- also run after an explicit `session.commit()` inside the unit of work (e.g. a revocation that
  must outlive the error the request then raises), when the unit of work ends, even by an
  exception;
- never raise into the caller: a failing effect is logged (each is best effort by nature, e.g. a
  store that is down; the effect itself says what it does then).

A session that never began a transaction (nothing executed, nothing added: a cached read, a
refused request) is closed without a commit or rollback: there is nothing to end, and a commit
of nothing still cost ~40 µs of SQLAlchemy bookkeeping per request. Effects registered on it
run when it ends normally (nothing of theirs can be uncommitted).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, SessionTransaction

from koinonia.kit.logging import log

AfterCommit = Callable[[], Awaitable[None]]

_KEY = "koinonia.unit_of_work"


class UnitOfWork:
    """The after-commit effects of one session. `unit_of_work` (`Database.session()`) makes one
    per session; `on_commit` finds it through the session."""

    __slots__ = ("_due", "_pending", "session")

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # (transaction or savepoint open at registration, or None outside any; effect)
        self._pending: list[tuple[SessionTransaction | None, AfterCommit]] = []
        self._due: list[AfterCommit] = []  # their transaction committed; not run yet
        session.info[_KEY] = self

    def on_commit(self, callback: AfterCommit) -> None:
        self._pending.append((self.session.sync_session.get_nested_transaction(), callback))

    async def commit(self) -> None:
        """Commit the session, then run the effects that commit covered."""
        await self.session.commit()
        await self.run_due()

    async def run_due(self) -> None:
        while self._due:
            callback = self._due.pop(0)
            try:
                await callback()
            except Exception as exc:
                log.warning("after_commit_failed", callback=repr(callback), error=repr(exc))

    def _committed(self) -> None:
        self._due.extend(callback for _, callback in self._pending)
        self._pending.clear()

    def _rolled_back(self, transaction: SessionTransaction) -> None:
        if not transaction.nested:
            self._pending.clear()
            return
        self._pending = [
            (registered, callback)
            for registered, callback in self._pending
            if not _within(registered, transaction)
        ]

    async def end(self, *, succeeded: bool) -> None:
        """The unit of work is over: effects registered outside any transaction count as
        committed when it succeeded; anything still pending otherwise belongs to a transaction
        that never committed."""
        if succeeded:
            self._committed()
        self._pending.clear()
        await self.run_due()


def _within(registered: SessionTransaction | None, ended: SessionTransaction) -> bool:
    current = registered
    while current is not None:
        if current is ended:
            return True
        current = current.parent
    return False


def on_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run `callback` once the data written so far in `session` is committed; never if it is
    rolled back. The session must belong to a unit of work (`Database.session()`: a job's or a
    request's)."""
    uow = session.info.get(_KEY)
    if not isinstance(uow, UnitOfWork):
        raise RuntimeError("on_commit needs a session of Database.session()")
    uow.on_commit(callback)


# Commits and rollbacks are observed on the ORM session itself, so an explicit
# `session.commit()` inside a unit of work counts as well as the one at its end. Class-level
# listeners: registering per session would cost every request.
@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    uow = session.info.get(_KEY) if "info" in session.__dict__ else None
    # `after_commit` also fires when a savepoint is released: only the outermost commit makes
    # the data durable (while a savepoint commits, it is still the session's nested one).
    if uow is not None and session.get_nested_transaction() is None:
        uow._committed()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: SessionTransaction) -> None:
    uow = session.info.get(_KEY) if "info" in session.__dict__ else None
    if uow is not None:
        uow._rolled_back(previous_transaction)


@asynccontextmanager
async def unit_of_work(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session of `sessions` as a unit of work (see the module docstring); what
    `Database.session()` opens."""
    async with sessions() as session:
        uow = UnitOfWork(session)
        succeeded = False
        try:
            yield session
            if session.in_transaction():
                await session.commit()
            succeeded = True
        except BaseException:
            if session.in_transaction():
                await session.rollback()
            raise
        finally:
            await uow.end(succeeded=succeeded)


# Code that may not need the database at all (a cached read, the session cache answering who
# the caller is) takes a session source and calls it only when a statement must run.
SessionSource = Callable[[], Awaitable[AsyncSession]]


def given(session: AsyncSession) -> SessionSource:
    """A source that returns a session opened already (a FastAPI dependency's)."""

    async def source() -> AsyncSession:
        return session

    return source
