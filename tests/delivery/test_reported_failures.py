"""Failures a carrier reports only in a status callback, end to end: the real dispatcher sends
through the sandbox, the report comes through the app's webhook path, and the dispatcher sends
the text again (temporary failure) or the member is opted out (unsubscribed code), whether the
report comes after the write-back or beats it (parked, folded in by the write-back)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from delivery.reports import Blockers, more, post_report, provider_ids, true, until
from delivery.support import MakeBroadcast, MakeSettings, counted
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import Dispatcher
from koinonia_sandbox import RunningSandbox


@pytest.fixture
async def blockers(engine: AsyncEngine) -> AsyncIterator[Blockers]:
    held = Blockers(engine)
    yield held
    await held.close()


async def _one(session: AsyncSession, sql: str, **params: Any) -> Any:
    row = (await session.execute(text(sql), params)).one()
    await session.commit()
    return row


async def _recipient(session: AsyncSession, message_id: int) -> Any:
    return await _one(
        session,
        "SELECT status, error_code, provider_message_id, attempts, segments, sent_at"
        " FROM message_recipients WHERE message_id = :m",
        m=message_id,
    )


async def _due_now(session: AsyncSession, message_id: int) -> None:
    """Skip the backoff (its length is asserted in tests/webhooks)."""
    await session.execute(
        text("UPDATE message_recipients SET next_attempt_at = now() WHERE message_id = :m"),
        {"m": message_id},
    )
    await session.commit()


async def _usage(session: AsyncSession, church_id: int, message_id: int) -> tuple[int, int, int]:
    row = await _one(
        session,
        "SELECT (SELECT coalesce(sum(texts), 0) FROM usage WHERE church_id = :c) AS texts,"
        " (SELECT coalesce(sum(segments), 0) FROM usage WHERE church_id = :c) AS segments,"
        " (SELECT total_segments FROM messages WHERE id = :m) AS total",
        c=church_id,
        m=message_id,
    )
    return int(row.texts), int(row.segments), int(row.total)


LONG = "x" * 200  # two segments, so a double count shows as 4


async def test_a_temporary_failure_reported_after_the_write_back_is_sent_again_counted_once(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_client: httpx.AsyncClient,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 3_600_000})  # the test reports
    sandbox.carrier.reset()
    sent = await broadcast(1, content=LONG)
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        assert (await dispatcher.run_once()).sent == 1
        (first,) = provider_ids(sandbox)
        await post_report(committed_client, first, "sent")
        await post_report(committed_client, first, "failed", "30001")
        row = await _recipient(committed_session, sent.message_id)
        assert (row.status, row.error_code, row.provider_message_id) == ("queued", "30001", None)

        await _due_now(committed_session, sent.message_id)
        assert (await dispatcher.run_once()).sent == 1
    finally:
        await dispatcher.close()
    second = next(i for i in provider_ids(sandbox) if i != first)
    row = await _recipient(committed_session, sent.message_id)
    assert (row.status, row.error_code, row.provider_message_id, row.attempts) == (
        "sent",
        None,
        second,
        2,
    )
    # A late report for the first attempt finds no recipient: the second one is untouched.
    await post_report(committed_client, first, "delivered")
    assert (await _recipient(committed_session, sent.message_id)).status == "sent"
    await post_report(committed_client, second, "delivered")
    assert (await _recipient(committed_session, sent.message_id)).status == "delivered"
    assert await counted(committed_session, sent.message_id) == {"delivered": 1}
    # One text, its two segments counted once although it was handed over twice.
    assert await _usage(committed_session, sent.church.church_id, sent.message_id) == (1, 2, 2)


async def test_failures_that_beat_the_write_back_are_folded_in_by_it(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_client: httpx.AsyncClient,
    committed_session: AsyncSession,
    blockers: Blockers,
    committed_database: Database,
) -> None:
    """Parked reports: a temporary failure re-queues the text when its send is written back; an
    opt-out code opts the member out there."""
    sandbox.carrier.update_config({"delivery_delay_ms": 3_600_000})
    sandbox.carrier.reset()
    sent = await broadcast(2)
    dispatcher = Dispatcher(make_settings(), committed_database)
    lock = await blockers.hold(
        "SELECT 1 FROM messages WHERE id = :m FOR NO KEY UPDATE", m=sent.message_id
    )
    base = await blockers.lock_waiters()
    try:
        batch = asyncio.create_task(dispatcher.run_once())
        await until(lambda: true(len(provider_ids(sandbox)) == 2), "both texts accepted")
        await until(lambda: more(blockers.lock_waiters(), base), "the write-back waits")
        by_phone = {m.to: m.id for m in sandbox.carrier.messages}
        phones = dict(
            (
                await committed_session.execute(
                    text("SELECT id, phone FROM members WHERE id = ANY(:ids)"),
                    {"ids": sent.member_ids},
                )
            ).all()
        )
        await committed_session.commit()
        retried, opted = (by_phone[phones[m]] for m in sent.member_ids)
        await post_report(committed_client, retried, "undelivered", "30022")
        await post_report(committed_client, opted, "failed", "21610")
        await blockers.release(lock)
        assert (await batch).sent == 2
    finally:
        await blockers.close()
        await dispatcher.close()
    rows = (
        await committed_session.execute(
            text(
                "SELECT r.member_id, r.status, r.error_code, r.provider_message_id, m.consent,"
                " m.consent_source FROM message_recipients r JOIN members m ON m.id = r.member_id"
                " WHERE r.message_id = :m ORDER BY r.member_id"
            ),
            {"m": sent.message_id},
        )
    ).all()
    left = await committed_session.scalar(
        text(
            "SELECT count(*) FROM pending_status_reports"
            " WHERE provider_message_id = ANY(CAST(:ids AS varchar[]))"
        ),
        {"ids": [retried, opted]},
    )
    await committed_session.commit()
    assert [tuple(r)[1:] for r in rows] == [
        ("queued", "30022", None, "opted_in", None),
        ("failed", "21610", opted, "opted_out", "carrier"),
    ]
    assert left == 0
