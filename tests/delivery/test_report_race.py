"""Delivery reports racing the dispatcher's write-back: the real dispatcher (claim, send through
the sandbox over HTTP, write back) and the real webhook path (signed Twilio callbacks through
the app, group-committed by webhooks.batching), with the interleavings forced by row locks that
the test holds, so each order happens every time rather than by luck.

After every order, each recipient's status is the last report the carrier sent ('delivered'
after 'sent') and nothing is left parked in pending_status_reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from delivery.reports import (
    Blockers,
    done_or_more,
    more,
    provider_ids,
    report_all,
    true,
    until,
)
from delivery.support import Broadcast, counted
from koinonia.config import Settings
from koinonia.delivery.dispatcher import Dispatcher
from koinonia.sms.sandbox import RunningSandbox

MakeSettings = Callable[..., Settings]
MakeBroadcast = Callable[..., Awaitable[Broadcast]]
ORDERS = ["before", "during_write_back_first", "during_report_first", "after"]


async def race_once(
    order: str,
    *,
    broadcast: MakeBroadcast,
    settings: Settings,
    sandbox: RunningSandbox,
    client: httpx.AsyncClient,
    blockers: Blockers,
    session: AsyncSession,
    n: int,
) -> None:
    sent = await broadcast(n)
    m = sent.message_id
    dispatcher = Dispatcher(settings)
    # The write-back begins by locking its messages (FOR UPDATE): held here, it waits until we
    # let it go. NO KEY, so the claim's counter rows (a foreign key to the message) still go in.
    message_lock = await blockers.hold(
        "SELECT 1 FROM messages WHERE id = :m FOR NO KEY UPDATE", m=m
    )
    base = await blockers.lock_waiters()
    try:
        batch = asyncio.create_task(dispatcher.run_once())
        await until(
            lambda: true(len(provider_ids(sandbox)) == n), "the carrier accepted every text"
        )
        await until(
            lambda: more(blockers.lock_waiters(), base), "the write-back waits on its message"
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
                lambda: more(blockers.lock_waiters(), base), "the write-back waits on its rows"
            )
            reports = asyncio.create_task(report_all(client, sids, "delivered"))
            await until(
                lambda: done_or_more(reports, blockers.lock_waiters(), base + 1),
                "the reports are stored or wait for the write-back",
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
                lambda: more(blockers.lock_waiters(), base), "the reports wait on parked rows"
            )
            await blockers.release(message_lock)
            await until(
                lambda: more(blockers.lock_waiters(), base + 1), "the write-back waits as well"
            )
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
            n=5,
        )
