"""A message's status says what is true: `sending` → `sent` (all handed over, reports awaited) →
`completed` (every report in, or overdue), through the real dispatcher, the sandbox's signed
delivery reports to the real webhooks, and the worker's sweep."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from delivery.support import (
    Broadcast,
    MakeBroadcast,
    MakeSettings,
    complete_reported,
    counted,
    deliver_with,
    message_status,
)
from koinonia.db.database import Database
from koinonia.delivery.repository import DeliveryRepository
from koinonia.delivery.worker import sweep
from koinonia_sandbox import RunningSandbox


async def _get(client: httpx.AsyncClient, b: Broadcast) -> dict[str, object]:
    response = await client.get(f"/api/v1/messages/{b.message_id}", headers=b.church.headers)
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def _handed_over_61_minutes_ago(session: AsyncSession, b: Broadcast) -> None:
    """As if the last text went out 61 minutes ago: past the default hour of report wait."""
    await session.execute(
        text("UPDATE messages SET sent_at = now() - interval '61 minutes' WHERE id = :m"),
        {"m": b.message_id},
    )
    await session.commit()


async def test_a_message_is_sent_while_reports_are_awaited_and_completed_once_all_are_in(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_client: httpx.AsyncClient,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})  # reports held back
    b = await broadcast(3)
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)

    body = await _get(committed_client, b)
    assert body["status"] == "sent"  # every text handed over, no report yet
    assert body["sent_at"] is not None and body["completed_at"] is None
    assert await counted(committed_session, b.message_id) == {"sent": 3}
    assert await complete_reported(committed_session) == []  # nothing to complete yet

    # Two reports arrive, through the real webhook: still one text awaited.
    sandbox.carrier.update_config({"delivery_delay_ms": 0})
    first, second, third = sandbox.carrier.messages
    await asyncio.gather(
        *(sandbox.carrier._report_delivery(m, undelivered=False) for m in (first, second))
    )
    assert await complete_reported(committed_session) == []
    assert await message_status(committed_session, b.message_id) == "sent"

    await sandbox.carrier._report_delivery(third, undelivered=True)
    assert await counted(committed_session, b.message_id) == {"delivered": 2, "undelivered": 1}
    assert await complete_reported(committed_session) == [b.message_id]
    body = await _get(committed_client, b)
    assert body["status"] == "completed" and body["completed_at"] is not None


async def test_overdue_reports_complete_a_message_and_its_texts_stay_sent(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    overdue, recent = await broadcast(2), await broadcast(2)
    settings = make_settings()
    await deliver_with(settings, committed_database, committed_session, overdue.message_id)
    await deliver_with(settings, committed_database, committed_session, recent.message_id)
    await _handed_over_61_minutes_ago(committed_session, overdue)

    assert await complete_reported(committed_session, report_wait_s=3600) == [overdue.message_id]
    assert await message_status(committed_session, overdue.message_id) == "completed"
    assert await counted(committed_session, overdue.message_id) == {"sent": 2}  # no report came
    assert await message_status(committed_session, recent.message_id) == "sent"


async def test_a_sent_message_whose_text_is_queued_again_is_sending_again(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    b = await broadcast(2)
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    # A carrier's temporary failure sends a text back to the queue.
    await committed_session.execute(
        text(
            "UPDATE message_recipients SET status = 'queued', next_attempt_at = now()"
            " WHERE member_id = :id"
        ),
        {"id": b.member_ids[0]},
    )
    await committed_session.commit()
    assert await complete_reported(committed_session) == []
    assert await message_status(committed_session, b.message_id) == "sending"
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    assert await message_status(committed_session, b.message_id) == "sent"


async def test_a_sent_message_cannot_be_cancelled(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_client: httpx.AsyncClient,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    b = await broadcast(1)
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    response = await committed_client.post(
        f"/api/v1/messages/{b.message_id}/cancel", headers=b.church.headers
    )
    assert response.status_code == 409
    assert response.json()["error"] == "not_cancellable"
    assert await message_status(committed_session, b.message_id) == "sent"


async def test_a_text_sent_again_reopens_its_message_and_restarts_the_report_wait(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # A temporary failure reported after the report wait completed the message puts one text
    # back in the queue (tests/webhooks/test_reported_failures.py takes that path): once it is
    # sent again the message awaits its report, with no completion time and a fresh wait.
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    b = await broadcast(2)
    settings = make_settings()
    await deliver_with(settings, committed_database, committed_session, b.message_id)
    await _handed_over_61_minutes_ago(committed_session, b)
    assert await complete_reported(committed_session, report_wait_s=3600) == [b.message_id]
    await committed_session.execute(
        text(
            "UPDATE message_recipients SET status = 'queued', next_attempt_at = now(),"
            " provider_message_id = NULL WHERE message_id = :m AND member_id = :member"
        ),
        {"m": b.message_id, "member": b.member_ids[0]},
    )
    await committed_session.commit()

    await deliver_with(settings, committed_database, committed_session, b.message_id)
    row = (
        await committed_session.execute(
            text(
                "SELECT status, completed_at, sent_at > now() - interval '1 minute' AS fresh"
                " FROM messages WHERE id = :m"
            ),
            {"m": b.message_id},
        )
    ).one()
    assert (row.status, row.completed_at, row.fresh) == ("sent", None, True)
    assert await complete_reported(committed_session, report_wait_s=3600) == []


async def test_a_failing_sweep_part_does_not_keep_messages_from_completing(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    b = await broadcast(2)
    settings = make_settings(report_wait_s=3600)
    await deliver_with(settings, committed_database, committed_session, b.message_id)
    await _handed_over_61_minutes_ago(committed_session, b)

    async def broken(*args: object, **kwargs: object) -> int:
        raise RuntimeError("a bug in the lease sweep")

    monkeypatch.setattr(DeliveryRepository, "requeue_expired_leases", broken)
    with capture_logs() as logs:
        await sweep(settings, committed_database)
    assert [e.get("part") for e in logs if e["event"] == "delivery_sweep_part_failed"] == [
        "requeue_leases"
    ]
    assert await message_status(committed_session, b.message_id) == "completed"
