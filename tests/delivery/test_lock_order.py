"""The lock order of delivery's writers (koinonia.delivery.repository's docstring): messages →
recipients → ... A write-back and a lease sweep are interleaved by hand, statement by statement,
in two transactions, and pg_locks (pg_blocking_pids) says who waits on whom; no timing."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from delivery.support import Broadcast, MakeBroadcast
from fixtures.locks import backend_pid, blocked_by, run_unless_blocked
from koinonia.db.database import Database
from koinonia.delivery.repository import (
    _LOCK_MESSAGES,
    SENT,
    DeliveryRepository,
    Outcome,
    Recorded,
)


async def _expired_claim(session: AsyncSession, message_id: int, attempts: int) -> datetime:
    """The message's rows as a worker left them: claimed, sent, its lease already over."""
    lease = (
        await session.execute(
            text(
                "UPDATE message_recipients SET status = 'sending', attempts = :a,"
                " lease_expires_at = now() - interval '1 second' WHERE message_id = :m"
                " RETURNING lease_expires_at"
            ),
            {"m": message_id, "a": attempts},
        )
    ).scalars()
    value = next(iter(lease))
    await session.commit()
    return value


def _sent(b: Broadcast, attempts: int) -> list[Outcome]:
    return [
        Outcome(b.message_id, member, attempts, SENT, provider_id=f"SMlock{member}")
        for member in b.member_ids
    ]


async def test_a_lease_sweep_never_waits_on_a_write_back_that_holds_the_message(
    broadcast: MakeBroadcast, committed_session: AsyncSession, committed_database: Database
) -> None:
    """The deadlock this order prevents: the write-back holds the message and wants the
    recipients; the sweep held the recipients and wanted the message."""
    b = await broadcast(2)
    lease = await _expired_claim(committed_session, b.message_id, attempts=5)  # its last try
    maker = committed_database.sessions
    async with maker() as writer, maker() as sweeper:
        writer_pid, sweeper_pid = await backend_pid(writer), await backend_pid(sweeper)
        sweep: asyncio.Task[Any] | None = None
        try:
            # 1. The write-back takes its first lock, the message ...
            await writer.execute(_LOCK_MESSAGES, {"ids": [b.message_id]})
            # 2. ... and the lease sweep runs meanwhile: it must not wait for it.
            sweep, blockers = await run_unless_blocked(
                DeliveryRepository(sweeper).requeue_expired_leases(max_attempts=5),
                sweeper_pid,
                committed_session,
            )
            assert blockers == [], "the lease sweep waits on a lock the write-back holds"
            assert sweep.result() == 0  # the message is the write-back's: left for later
            # 3. The write-back goes on to the recipients: nothing of them is locked.
            record, blockers = await run_unless_blocked(
                DeliveryRepository(writer).record_results(
                    _sent(b, 5), lease=lease, message_ids=[b.message_id]
                ),
                writer_pid,
                committed_session,
            )
            assert blockers == []
            recorded: Recorded = record.result()
            assert recorded.recorded == 2
            await writer.commit()
            await sweeper.commit()
        finally:
            await writer.rollback()  # lets a sweep stuck on the message go (before the fix)
            if sweep is not None:
                await asyncio.gather(sweep, return_exceptions=True)
            await sweeper.rollback()
    rows = await committed_session.execute(
        text("SELECT status FROM message_recipients WHERE message_id = :m"), {"m": b.message_id}
    )
    assert [r.status for r in rows] == ["sent", "sent"]
    await committed_session.commit()


async def test_a_write_back_after_a_sweep_waits_for_it_in_order_and_still_records(
    broadcast: MakeBroadcast, committed_session: AsyncSession, committed_database: Database
) -> None:
    """The other interleaving: the sweep went first and holds message and recipients; the
    write-back waits for the sweep alone (a wait, no cycle), then records what it sent: the
    requeued rows are not sent a second time."""
    b = await broadcast(2)
    lease = await _expired_claim(committed_session, b.message_id, attempts=1)
    maker = committed_database.sessions
    async with maker() as writer, maker() as sweeper:
        writer_pid, sweeper_pid = await backend_pid(writer), await backend_pid(sweeper)
        record: asyncio.Task[Recorded] | None = None
        try:
            sweep, blockers = await run_unless_blocked(
                DeliveryRepository(sweeper).requeue_expired_leases(max_attempts=5),
                sweeper_pid,
                committed_session,
            )
            assert blockers == [] and sweep.result() == 2
            record, blockers = await run_unless_blocked(
                DeliveryRepository(writer).record_results(
                    _sent(b, 1), lease=lease, message_ids=[b.message_id]
                ),
                writer_pid,
                committed_session,
            )
            assert blockers == [sweeper_pid]
            assert await blocked_by(committed_session, sweeper_pid) == []  # no cycle
            await sweeper.commit()
            assert (await record).recorded == 2
            await writer.commit()
        finally:
            await sweeper.rollback()
            if record is not None:
                await asyncio.gather(record, return_exceptions=True)
            await writer.rollback()
    rows = await committed_session.execute(
        text("SELECT status FROM message_recipients WHERE message_id = :m"), {"m": b.message_id}
    )
    assert [r.status for r in rows] == ["sent", "sent"]
    await committed_session.commit()


async def test_a_claim_never_waits_on_a_write_back_that_holds_the_message(
    broadcast: MakeBroadcast, committed_session: AsyncSession, committed_database: Database
) -> None:
    """A claim locks recipients only; its counter upserts insert message_status_counts rows,
    whose foreign key takes FOR KEY SHARE on the message. Writers lock messages FOR NO KEY
    UPDATE, which that does not conflict with: were it FOR UPDATE, the claim would wait on the
    write-back while holding recipients, and a write-back re-queuing a text (an upsert on a
    counter row the claim holds) would close a cycle (seen as a deadlock between two
    dispatchers)."""
    b = await broadcast(2)
    maker = committed_database.sessions
    async with maker() as writer, maker() as claimer:
        claimer_pid = await backend_pid(claimer)
        claim: asyncio.Task[Any] | None = None
        try:
            await writer.execute(_LOCK_MESSAGES, {"ids": [b.message_id]})  # a write-back's first
            claim, blockers = await run_unless_blocked(
                DeliveryRepository(claimer).claim_due_recipients(limit=10, lease_s=60),
                claimer_pid,
                committed_session,
            )
            assert blockers == [], "the claim waits on the write-back's message lock"
            claimed = [(c.message_id, c.member_id) for c in claim.result()]
            assert sorted(claimed) == sorted((b.message_id, m) for m in b.member_ids)
            await claimer.commit()
            await writer.commit()
        finally:
            await writer.rollback()
            if claim is not None:
                await asyncio.gather(claim, return_exceptions=True)
            await claimer.rollback()
