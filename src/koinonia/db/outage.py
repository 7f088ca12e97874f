"""Is this exception a database outage, and what is its cause? One answer for the API (503
`database_unavailable`, koinonia.app) and the worker (backoff, koinonia.delivery.outage).

An outage is a condition of the server or of the way to it, never of the request or the job:
retrying the same work later succeeds without changing anything. What counts, with the cause
`outage_cause` names it by:

- `pool_timeout`: no pooled connection became free within the pool's timeout (SQLAlchemy's
  TimeoutError): the database is too slow or too busy for the load.
- `connection_lost`: SQLAlchemy reports the connection invalidated (reset, closed by the
  server, broken pipe): the pool replaces it on the next checkout.
- `sqlstate_<code>`: the server (or the driver on its behalf) answered with a connection
  exception (class 08), an admin / crash shutdown or "cannot connect now" (57P01-57P03: the
  server is stopping, restarting or starting up) or too many connections (53300).
- `connect_failed`: an OSError (refused, reset, unreachable, name not found, connect timeout)
  raised inside the driver, asyncpg.

Everything else is not an outage: constraints, conflicts (40P01, 40001: the database is fine,
the transaction lost a race), bugs. Retrying those as if the server were away would hide them.

Why "raised inside the driver" for the exceptions SQLAlchemy does not wrap: connecting is the
one step SQLAlchemy leaves to asyncpg unwrapped, so a refused connection (OSError) or a server
error at connect time ("the database system is starting up", an asyncpg exception with a
`sqlstate`) reaches the caller as is. But an OSError is no evidence about the database by
itself: an HTTP call to a carrier or a webhook, a file, a socket of our own all raise it too,
and in the API it would turn a carrier failure into "database unavailable", in the worker into
a backoff that hides a bug. Asking whether asyncpg raised it (its frames are in the traceback)
keeps exactly the database's failures, for both sides: every database statement of either goes
through asyncpg. Only the exception itself and what it wraps (`orig`, `__cause__`) are looked
at, never `__context__`: an error raised while handling an outage is not an outage.
"""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

# Connection exceptions are the whole class 08 (see `is_outage_sqlstate`); these besides:
# admin shutdown, crash shutdown, cannot connect now (starting up / shutting down), too many
# connections.
OUTAGE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_outage_sqlstate(state: str | None) -> bool:
    return state is not None and (state.startswith("08") or state in OUTAGE_SQLSTATES)


def _wrapped(exc: BaseException) -> Iterator[BaseException]:
    """The exception, then what it wraps: SQLAlchemy's `orig` (the DB-API error) and each
    explicit `__cause__` (asyncpg's error under the DB-API adapter's), each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__


# Conflicts between transactions (deadlock detected, serialization failure): worth another
# try, but the database is fine.
CONFLICT_SQLSTATES = frozenset({"40P01", "40001"})


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE the server (or the driver) gave, from `exc` or what it wraps."""
    for e in _wrapped(exc):
        state = getattr(e, "sqlstate", None)
        if isinstance(state, str):
            return state
    return None


def outage_cause(exc: BaseException) -> str | None:
    """A short cause (`pool_timeout`, `connection_lost`, `sqlstate_<code>`, `connect_failed`)
    when `exc` is a database outage as the module docstring defines it, else None."""
    if isinstance(exc, PoolTimeoutError):
        return "pool_timeout"
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return "connection_lost"
        state = sqlstate(exc)
    elif not raised_in_driver(exc):
        return None
    elif isinstance(exc, OSError):
        return "connect_failed"
    else:
        state = sqlstate(exc)
    return f"sqlstate_{state}" if is_outage_sqlstate(state) else None


def raised_in_driver(exc: BaseException) -> bool:
    """Whether asyncpg's code is on `exc`'s traceback (it raised it or let it through)."""
    tb = exc.__traceback__
    while tb is not None:
        if str(tb.tb_frame.f_globals.get("__name__", "")).startswith("asyncpg"):
            return True
        tb = tb.tb_next
    return False
