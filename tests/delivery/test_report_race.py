"""Delivery reports racing the dispatcher's write-back: the real dispatcher (claim, send through
the sandbox over HTTP, write back) and the real webhook path (signed Twilio callbacks through
the app, group-committed by webhooks.batching), with the interleavings forced by row locks that
the test holds, so each order happens every time rather than by luck.

After every order, each recipient's status is the last report the carrier sent ('delivered'
after 'sent') and nothing is left parked in pending_status_reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from delivery.reports import (
    Blockers,
    deferred_reports,
    more,
    provider_ids,
    report_all,
    true,
    until,
)
from delivery.support import MakeBroadcast, MakeSettings, counted, deliver_all, statuses
from koinonia.config import Settings
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import Dispatcher
from koinonia_sandbox import RunningSandbox

ORDERS = ["before", "during_write_back_first", "during_report_first", "after"]
# Fragments of the statements the waits are recognised by (pg_stat_activity.query).
LOCK_MESSAGES = "FROM messages WHERE id = ANY"  # the write-back's first statement
WRITE_BACK = "WITH v AS"  # the write-back's statement that records the batch
STORE_REPORTS = "WITH input AS"  # a batch of delivery reports being stored


async def race_once(
    order: str,
    *,
    broadcast: MakeBroadcast,
    settings: Settings,
    sandbox: RunningSandbox,
    client: httpx.AsyncClient,
    blockers: Blockers,
    session: AsyncSession,
    database: Database,
    n: int,
) -> None:
    sent = await broadcast(n)
    m = sent.message_id
    dispatcher = Dispatcher(settings, database)
    # The write-back begins by locking its messages (FOR UPDATE): held here, it waits until we
    # let it go. NO KEY, so the claim's counter rows (a foreign key to the message) still go in.
    message_lock = await blockers.hold(
        "SELECT 1 FROM messages WHERE id = :m FOR NO KEY UPDATE", m=m
    )
    try:
        batch = asyncio.create_task(dispatcher.run_once())
        await until(
            lambda: true(len(provider_ids(sandbox)) == n), "the carrier accepted every text"
        )
        await until(
            lambda: more(blockers.lock_waiters(query=LOCK_MESSAGES)),
            "the write-back waits on its message",
        )
        sids = provider_ids(sandbox)
        await report_all(client, sids, "sent")  # parked: no recipient carries the ids yet
        if order == "before":
            await report_all(client, sids, "delivered")
            await blockers.release(message_lock)
            await batch
        elif order == "after":
            await blockers.release(message_lock)
            await batch
            await report_all(client, sids, "delivered")
        elif order == "during_write_back_first":
            # The write-back statement starts (its snapshot sees the parked 'sent') and then
            # waits on the recipient rows; the 'delivered' reports come in meanwhile.
            rows = await blockers.hold(
                "SELECT 1 FROM message_recipients WHERE message_id = :m FOR UPDATE", m=m
            )
            await blockers.release(message_lock)
            await until(
                lambda: more(blockers.lock_waiters(query=WRITE_BACK)),
                "the write-back waits on its rows",
            )
            deferred = deferred_reports()
            reports = asyncio.create_task(report_all(client, sids, "delivered"))
            await until(
                lambda: true(reports.done() or deferred_reports() >= deferred + n),
                "the reports are stored or left for after the write-back",
            )
            await blockers.release(rows)
            await batch
            await reports
        else:  # during_report_first: the reports' transaction holds the parked rows first
            parked = await blockers.hold(
                "SELECT 1 FROM pending_status_reports"
                " WHERE provider_message_id = ANY(CAST(:ids AS varchar[])) FOR UPDATE",
                ids=sids,
            )
            reports = asyncio.create_task(report_all(client, sids, "delivered"))
            await until(
                lambda: more(blockers.lock_waiters(query=STORE_REPORTS)),
                "the reports wait on the parked rows",
            )
            await blockers.release(message_lock)
            # The write-back now waits for the reports' ids (or, before the fix, went ahead and
            # waits on the parked rows).

            async def write_back_waits() -> bool:
                return (
                    await blockers.lock_waiters(event="advisory") > 0
                    or await blockers.lock_waiters(query=WRITE_BACK) > 0
                )

            await until(write_back_waits, "the write-back waits as well")
            await blockers.release(parked)
            await reports
            await batch
    finally:
        await blockers.close()
        await dispatcher.close()
    rows = (
        await session.execute(
            text(
                "SELECT status, count(*) AS n FROM message_recipients WHERE message_id = :m"
                " GROUP BY status"
            ),
            {"m": m},
        )
    ).all()
    left = await session.scalar(
        text(
            "SELECT count(*) FROM pending_status_reports"
            " WHERE provider_message_id = ANY(CAST(:ids AS varchar[]))"
        ),
        {"ids": sids},
    )
    await session.commit()
    assert ({r.status: r.n for r in rows}, left) == ({"delivered": n}, 0), order
    assert await counted(session, m) == {"delivered": n}, order


@pytest.fixture
async def blockers(engine: AsyncEngine) -> AsyncIterator[Blockers]:
    held = Blockers(engine)
    yield held
    await held.close()


@pytest.mark.parametrize("order", ORDERS)
async def test_reports_racing_the_write_back_end_at_the_carriers_last_report(
    order: str,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_client: httpx.AsyncClient,
    committed_session: AsyncSession,
    committed_database: Database,
    blockers: Blockers,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 3_600_000})  # the test reports
    for _ in range(3):
        sandbox.carrier.reset()
        await race_once(
            order,
            broadcast=broadcast,
            settings=make_settings(),
            sandbox=sandbox,
            client=committed_client,
            blockers=blockers,
            session=committed_session,
            database=committed_database,
            n=5,
        )


@pytest.mark.parametrize("delay_ms", [0, 20])
async def test_a_broadcast_whose_reports_overlap_its_write_backs_ends_delivered(
    delay_ms: int,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    """The bench scenario (bench/reports.py) made small: the sandbox's own signed reports reach
    the API over HTTP while small batches are still being written back. Whatever the timing,
    once every report is acknowledged every text reads 'delivered'."""
    sandbox.carrier.update_config({"delivery_delay_ms": delay_ms, "callback_attempts": 5})
    sandbox.carrier.reset()
    sent = await broadcast(200)
    dispatcher = Dispatcher(make_settings(claim_batch_size=25), committed_database)
    try:
        await deliver_all(dispatcher, committed_session, sent.message_id)
    finally:
        await dispatcher.close()
    await sandbox.carrier.wait_for_callbacks()
    stats = sandbox.carrier.stats()["callbacks"]
    assert (stats["delivered"], stats["failed"]) == (400, 0)
    assert await statuses(committed_session, sent.message_id) == {"delivered": 200}
    assert await counted(committed_session, sent.message_id) == {"delivered": 200}
