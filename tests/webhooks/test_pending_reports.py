"""Pending delivery reports: applied once a recipient carries their id, purged when stale."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import SeedFor, Tenant
from koinonia.webhooks.repository import DeliveryReportRepository, purge_stale_pending_reports

Webhooks = Any  # conftest: posts signed provider webhooks
WebhookDb = Any  # conftest: rows through SQL


async def add_pending(session: AsyncSession, provider_id: str, status: str, age: timedelta) -> None:
    await session.execute(
        text(
            "INSERT INTO pending_status_reports (provider_message_id, status, received_at)"
            " VALUES (:p, :s, now() - CAST(:age AS interval))"
        ),
        {"p": provider_id, "s": status, "age": age},
    )
    await session.commit()


async def test_purge_deletes_only_reports_older_than_the_cutoff(
    session: AsyncSession, db: WebhookDb, count_statements: Any
) -> None:
    await add_pending(session, "SMold1", "delivered", timedelta(hours=25))
    await add_pending(session, "SMold2", "sent", timedelta(days=3))
    await add_pending(session, "SMfresh", "delivered", timedelta(hours=23))
    await add_pending(session, "SMnew", "sent", timedelta(seconds=1))

    with count_statements() as log:
        purged = await purge_stale_pending_reports(session)
    await session.commit()
    assert (purged, log.count) == (2, 1)
    assert [await db.pending(p) is not None for p in ("SMold1", "SMold2", "SMfresh", "SMnew")] == [
        False,
        False,
        True,
        True,
    ]

    assert await purge_stale_pending_reports(session, older_than=timedelta(minutes=5)) == 1
    assert await db.pending_count() == 1


async def test_matched_pending_reports_are_applied_forward_only_and_removed(
    webhooks: Webhooks,
    session: AsyncSession,
    db: WebhookDb,
    tenant: Tenant,
    seed: SeedFor,
    count_statements: Any,
) -> None:
    sent = await seed(tenant).sent_message(4, with_provider_ids=False)
    # Reports beat the write-back for members 1-3; member 4's id is never reported.
    await webhooks.twilio_status("SMp1", "delivered")
    await webhooks.twilio_status("SMp2", "undelivered", ErrorCode="30003")
    await webhooks.telnyx_status("tx-p3", "sent")
    await webhooks.twilio_status("SMnever", "delivered")
    assert await db.pending_count() == 4

    for member_id, provider_id in [(1, "SMp1"), (2, "SMp2"), (3, "tx-p3"), (4, "SMp4")]:
        await db.record_provider_id(sent.message_id, member_id, provider_id)
    # Member 3 moved on before its pending 'sent' gets applied: it must not move back.
    await webhooks.telnyx_status("tx-p3", "delivered")

    repo = DeliveryReportRepository(session)
    with count_statements() as log:
        moved = await repo.apply_matched_pending_reports(["SMp1"])
    assert (moved, log.count) == (1, 1)
    with count_statements() as log:
        moved = await repo.apply_matched_pending_reports()
    await session.commit()
    assert (moved, log.count) == (1, 1)  # SMp2; tx-p3 was already further along

    rows = [await db.recipient(sent.message_id, i) for i in (1, 2, 3, 4)]
    assert [(r.status, r.error_code) for r in rows] == [
        ("delivered", None),
        ("undelivered", "30003"),
        ("delivered", None),
        ("sending", None),
    ]
    assert rows[0].delivered_at is not None
    assert await db.status_counts(sent.message_id) == {
        "delivered": 2,
        "undelivered": 1,
        "sending": 1,
    }
    # Applied ones are gone; the id nobody recorded stays until it is purged.
    assert await db.pending_count() == 1 and await db.pending("SMnever") is not None
