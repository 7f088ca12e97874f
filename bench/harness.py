"""Bench plumbing: databases per size, timing with percentiles, statement counting."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.data import GENERATOR_VERSION, SIZES, Size, current_version, generate
from koinonia.config import Settings
from koinonia.db.database import Database
from koinonia.db.embedded import database_url, execute_on_server
from koinonia.db.engine import make_engine
from koinonia.db.migrate import migrate
from koinonia.messages.service import Outgoing, enqueue
from koinonia.models import Church

BENCH_PASSWORD = "bench-password-123"


async def broadcast_to_all(database: Database, church_id: int, content: str) -> int:
    """Queue one broadcast to every member of the church through the product's send path
    (committed, no plan limit, quiet hours ignored); returns the message id."""
    async with database.session() as s:
        church = await s.get(Church, church_id)
        assert church is not None
        queued = await enqueue(
            s,
            Outgoing(
                church=church,
                plan_texts=None,
                content=content,
                kind="broadcast",
                target_type="all",
                hold_for_quiet_hours=False,
            ),
        )
    return queued.id


async def prepare(settings: Settings, size: Size, log: Callable[[str], None]) -> Database:
    """The size's database, migrated and filled (reused when already generated); the caller
    disposes of it."""
    url = database_url(settings, size.database)
    engine = make_engine(settings, url)
    try:
        version = await current_version(engine)
    except Exception:
        version = None
    if version != GENERATOR_VERSION:
        await engine.dispose()
        log(f"generating {size.name} data (once; cached in database {size.database})")
        await execute_on_server(url, f'DROP DATABASE IF EXISTS "{size.database}" WITH (FORCE)')
        await execute_on_server(url, f'CREATE DATABASE "{size.database}"')
        engine = make_engine(settings, url)
        await migrate(engine)
        started = time.perf_counter()
        await generate(engine, size, PasswordHasher().hash(BENCH_PASSWORD))
        log(f"  generated in {time.perf_counter() - started:.1f} s")
    else:
        await migrate(engine)
    return Database(engine)


@dataclass
class Timing:
    samples_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        s = sorted(self.samples_ms)
        if not s:
            return {}

        def pct(p: float) -> float:
            return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]

        return {
            "n": len(s),
            "p50_ms": round(statistics.median(s), 3),
            "p95_ms": round(pct(95), 3),
            "p99_ms": round(pct(99), 3),
            "max_ms": round(s[-1], 3),
        }


async def timed(fn: Callable[[], Awaitable[Any]], runs: int, warmup: int = 1) -> Timing:
    for _ in range(warmup):
        await fn()
    t = Timing()
    for _ in range(runs):
        started = time.perf_counter()
        await fn()
        t.samples_ms.append((time.perf_counter() - started) * 1000)
    return t


class StatementCounter:
    """Counts SQL statements on an engine while active (COPY is counted by the caller)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine, self.count = engine, 0

    def _on(self, *args: Any) -> None:
        self.count += 1

    def __enter__(self) -> StatementCounter:
        event.listen(self.engine.sync_engine, "after_cursor_execute", self._on)
        return self

    def __exit__(self, *exc: Any) -> None:
        event.remove(self.engine.sync_engine, "after_cursor_execute", self._on)


__all__ = ["SIZES", "StatementCounter", "Timing", "prepare", "timed"]
