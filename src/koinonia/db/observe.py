"""Database observability: statement counts per unit of work, slow queries, N+1, pool pressure.

A unit of work (a request, a job) opens `track(label)`; every statement executed inside it is
counted with its duration and shape (the SQL text; parameters are bound so one shape = one text).
A shape repeated `n_plus_one_threshold` times inside one unit is an N+1: logged as a warning
event and counted, or raised when `n_plus_one_raise` is on (the test suite turns it on).

The thresholds are the settings of the engine a statement ran on (`instrument` keeps them per
connection pool, which the engine's option views share: the AUTOCOMMIT view of read-only
sessions), so two engines of one process (a test's and a server's) each keep their own.
"""

from __future__ import annotations

import time
import weakref
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import AsyncAdaptedQueuePool, Pool

from koinonia.config import Settings
from koinonia.kit import metrics
from koinonia.kit.logging import log


class NPlusOneDetected(RuntimeError):
    pass


@dataclass
class QueryStats:
    label: str
    count: int = 0
    db_seconds: float = 0.0
    shapes: Counter[str] = field(default_factory=Counter)
    statements: list[str] = field(default_factory=list)
    flagged: set[str] = field(default_factory=set)


_current: ContextVar[QueryStats | None] = ContextVar("koinonia_query_stats", default=None)
# The settings each instrumented engine was made with (its thresholds), by its pool.
_settings_of: weakref.WeakKeyDictionary[Pool, Settings] = weakref.WeakKeyDictionary()


@contextmanager
def track(label: str) -> Iterator[QueryStats]:
    stats = QueryStats(label)
    token = _current.set(stats)
    try:
        yield stats
    finally:
        _current.reset(token)


def current() -> QueryStats | None:
    return _current.get()


def record(statement: str, seconds: float, settings: Settings | None) -> None:
    """Account one statement run under `settings`' thresholds (None: an engine that was not
    instrumented: no slow-query log, the default N+1 threshold)."""
    metrics.DB_STATEMENTS.inc()
    metrics.DB_SECONDS.observe(seconds)
    if settings is not None:
        ms = seconds * 1000
        if ms >= settings.slow_query_warn_ms:
            level = "critical" if ms >= settings.slow_query_critical_ms else "warning"
            metrics.DB_SLOW.labels(level).inc()
            log.warning("slow_query", level=level, ms=round(ms, 1), statement=statement[:500])
    stats = _current.get()
    if stats is None:
        return
    stats.count += 1
    stats.db_seconds += seconds
    stats.statements.append(statement)
    stats.shapes[statement] += 1
    threshold = settings.n_plus_one_threshold if settings else 5
    if stats.shapes[statement] >= threshold and statement not in stats.flagged:
        stats.flagged.add(statement)
        metrics.N_PLUS_ONE.labels(stats.label).inc()
        log.warning("n_plus_one", unit=stats.label, repeats=threshold, statement=statement[:500])
        if settings is not None and settings.n_plus_one_raise:
            raise NPlusOneDetected(f"{stats.label}: statement repeated {threshold}x: {statement}")


@contextmanager
def timed(statement: str, conn: AsyncConnection) -> Iterator[None]:
    """Account work on `conn` that bypasses SQLAlchemy's cursor events (asyncpg COPY) as a
    statement."""
    started = time.perf_counter()
    try:
        yield
    finally:
        record(statement, time.perf_counter() - started, _settings_of.get(conn.sync_engine.pool))


def _before(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
    conn.info.setdefault("koinonia_t0", []).append(time.perf_counter())


def _after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> None:
    started = conn.info["koinonia_t0"].pop()
    record(statement, time.perf_counter() - started, _settings_of.get(conn.engine.pool))


class ObservedPool(AsyncAdaptedQueuePool):
    """The queue pool, timing every checkout and counting the tasks waiting for one."""

    waiters = 0

    def _do_get(self) -> Any:
        ObservedPool.waiters += 1
        metrics.POOL_WAITERS.set(ObservedPool.waiters)
        started = time.perf_counter()
        try:
            return super()._do_get()
        finally:
            waited = time.perf_counter() - started
            ObservedPool.waiters -= 1
            metrics.POOL_WAITERS.set(ObservedPool.waiters)
            metrics.POOL_WAIT.observe(waited)
            if waited > 1.0:
                log.warning("pool_wait", seconds=round(waited, 3), **pool_status(self))
            metrics.POOL_CHECKED_OUT.set(self.checkedout())
            metrics.POOL_OVERFLOW.set(max(self.overflow(), 0))


def pool_status(pool: Any) -> dict[str, int]:
    return {
        "size": pool.size(),
        "checked_out": pool.checkedout(),
        "overflow": max(pool.overflow(), 0),
        "waiters": ObservedPool.waiters,
    }


def instrument(engine: AsyncEngine, settings: Settings) -> None:
    metrics.POOL_SIZE.set(settings.pool_size)
    sync = engine.sync_engine
    _settings_of[sync.pool] = settings
    event.listen(sync, "before_cursor_execute", _before)
    event.listen(sync, "after_cursor_execute", _after)

    last_warned = [0.0]

    def _checkin(dbapi_conn: Any, record_: Any) -> None:
        pool = sync.pool
        checked_out = pool.checkedout()  # type: ignore[attr-defined]
        metrics.POOL_CHECKED_OUT.set(checked_out)
        # Above 80% use the pool is close to making requests wait; say so at most every 10 s.
        now = time.monotonic()
        if checked_out > 0.8 * settings.pool_size and now - last_warned[0] > 10:
            last_warned[0] = now
            log.warning("pool_pressure", **pool_status(pool))

    event.listen(sync.pool, "checkin", _checkin)
