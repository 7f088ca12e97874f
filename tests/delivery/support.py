"""Helpers of the delivery tests (fixtures live in conftest.py)."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant
from koinonia.config import Settings
from koinonia.db.database import Database
from koinonia.db.session import UnitOfWork
from koinonia.delivery.dispatcher import Dispatcher
from koinonia.delivery.ratelimit import LocalRateLimiter, RedisRateLimiter
from koinonia.delivery.repository import DeliveryRepository
from koinonia.kit.tokenbucket import Grant
from koinonia.messages.service import Outgoing, enqueue
from koinonia.models import Church
from koinonia_sandbox import RunningSandbox


@dataclass
class Broadcast:
    church: Tenant
    message_id: int
    member_ids: list[int]


# The delivery fixtures' factories (conftest.py): `make_settings(**changes)`, `await broadcast(n)`.
MakeSettings = Callable[..., Settings]
MakeBroadcast = Callable[..., Awaitable[Broadcast]]


async def message_status(session: AsyncSession, message_id: int) -> str:
    row = await session.execute(
        text("SELECT status FROM messages WHERE id = :m"), {"m": message_id}
    )
    await session.commit()
    return str(row.scalar_one())


async def send_to_all(session: AsyncSession, church_id: int, content: str) -> int:
    uow = UnitOfWork(session)  # as a request's or a job's session is
    church = await session.get(Church, church_id)
    assert church is not None
    queued = await enqueue(
        session,
        Outgoing(
            church=church,
            plan_texts=None,
            content=content,
            kind="broadcast",
            target_type="all",
            hold_for_quiet_hours=False,
        ),
    )
    await uow.commit()
    return queued.id


async def complete_reported(session: AsyncSession, report_wait_s: float = 3600.0) -> list[int]:
    """What every worker's sweep does: `sent` messages whose reports are in become completed."""
    completed = await DeliveryRepository(session).complete_reported_messages(
        report_wait_s=report_wait_s
    )
    await session.commit()
    return completed


async def statuses(session: AsyncSession, message_id: int) -> dict[str, int]:
    """Recipients per status, from the rows themselves."""
    rows = await session.execute(
        text(
            "SELECT status, count(*) FROM message_recipients WHERE message_id = :m GROUP BY status"
        ),
        {"m": message_id},
    )
    await session.commit()
    return {r[0]: int(r[1]) for r in rows}


async def counted(session: AsyncSession, message_id: int) -> dict[str, int]:
    """Recipients per status, from the trigger-maintained counters (what dashboards read)."""
    rows = await session.execute(
        text(
            "SELECT status, sum(n) FROM message_status_counts WHERE message_id = :m"
            " GROUP BY status HAVING sum(n) <> 0"
        ),
        {"m": message_id},
    )
    await session.commit()
    return {r[0]: int(r[1]) for r in rows}


async def deliver_all(
    dispatcher: Dispatcher, session: AsyncSession, message_id: int, within_s: float = 30.0
) -> None:
    """Run batches until no recipient of the message is queued or sending (retries included)."""
    deadline = time.monotonic() + within_s
    while True:
        result = await dispatcher.run_once()
        if result.claimed:
            continue
        open_ = await session.execute(
            text(
                "SELECT count(*) FROM message_recipients WHERE message_id = :m"
                " AND status IN ('queued', 'sending')"
            ),
            {"m": message_id},
        )
        await session.commit()
        if open_.scalar_one() == 0:
            return
        assert time.monotonic() < deadline, "delivery did not finish in time"
        await asyncio.sleep(0.02)


async def deliver_with(
    settings: Settings, database: Database, session: AsyncSession, message_id: int
) -> None:
    """A fresh dispatcher on `database` delivers the message to the end (retries included),
    then closes."""
    dispatcher = Dispatcher(settings, database)
    try:
        await deliver_all(dispatcher, session, message_id)
    finally:
        await dispatcher.close()


def sent_phones(sandbox: RunningSandbox, from_: str | None = None) -> list[str]:
    return [m.to for m in sandbox.carrier.messages if from_ is None or m.from_ == from_]


class RecordingLimiter:
    """Mixed into a rate limiter: keeps every decision it makes (the schedule) for the test."""

    grants: list[Grant]

    async def _take(self, number: str, wanted: int) -> Grant:
        grant = await super()._take(number, wanted)  # type: ignore[misc]
        self.__dict__.setdefault("grants", []).append(grant)
        return grant


class RecordingLocalLimiter(RecordingLimiter, LocalRateLimiter):
    pass


class RecordingRedisLimiter(RecordingLimiter, RedisRateLimiter):
    pass


def granted_slots(*limiters: RecordingLimiter) -> list[float]:
    """Every slot the limiters handed out, in order, on the bucket's clock."""
    slots = []
    for limiter in limiters:
        for grant in limiter.__dict__.get("grants", []):
            interval = limiter.interval  # type: ignore[attr-defined]
            slots += [grant.first_slot + i * interval for i in range(grant.granted)]
    return sorted(slots)


def assert_paced(slots: list[float], rate: float) -> None:
    """No two slots closer than one interval: the limiter never decides to exceed the rate,
    whatever the machine's load does to the actual send times (the bench measures those)."""
    interval = 1.0 / rate
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    # 1 µs: the Redis bucket keeps its schedule in whole microseconds.
    assert min(gaps) >= interval - 1e-6, min(gaps)
