"""Failure codes that only a status callback carries: a temporary failure is retried (SPEC §4.2:
re-queued with backoff while attempts are left), an unsubscribed recipient is opted out."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import SeedFor, Tenant, make_members
from koinonia.config import get_settings
from koinonia.webhooks.repository import DeliveryReportRepository

Webhooks = Any  # conftest: posts signed provider webhooks
WebhookDb = Any  # conftest: rows through SQL


async def _next_attempt_in_s(session: AsyncSession, message_id: int, member_id: int) -> float:
    value = await session.scalar(
        text(
            "SELECT extract(epoch FROM next_attempt_at - now()) FROM message_recipients"
            " WHERE message_id = :m AND member_id = :i"
        ),
        {"m": message_id, "i": member_id},
    )
    return float(value)


async def test_temporary_failure_codes_put_the_text_back_in_the_queue_with_backoff(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, session: AsyncSession
) -> None:
    sent = await seed(tenant).sent_message(5)
    a, b, c, d, e = sent.provider_ids

    await webhooks.twilio_status(a, "failed", ErrorCode="30001", ErrorMessage="Queue overflow")
    await webhooks.twilio_status(b, "undelivered", ErrorCode="30022")
    await webhooks.telnyx_status(c, "delivery_failed", [{"code": 40004, "title": "Rejected"}])
    await webhooks.telnyx_status(d, "delivery_failed", [{"code": "40006", "title": "Down"}])
    await webhooks.twilio_status(e, "failed", ErrorCode="30007")  # filtered: permanent

    rows = [await db.recipient(sent.message_id, i) for i in (1, 2, 3, 4, 5)]
    assert [(r.status, r.error_code, r.provider_message_id) for r in rows] == [
        ("queued", "30001", None),
        ("queued", "30022", None),
        ("queued", "40004", None),
        ("queued", "40006", None),
        ("failed", "30007", e),
    ]
    # Backoff after the first attempt: between half and all of retry_base_s.
    base = get_settings().retry_base_s
    for member_id in (1, 2, 3, 4):
        wait = await _next_attempt_in_s(session, sent.message_id, member_id)
        assert base / 2 - 1 <= wait <= base
    assert await db.status_counts(sent.message_id) == {"queued": 4, "failed": 1}


async def test_a_later_report_for_the_failed_attempt_changes_nothing(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    """The provider id names one attempt; once the text is re-queued the row no longer carries
    it, so a repeated or late report for that attempt is parked (and expires), never applied
    to the row or its next attempt."""
    sent = await seed(tenant).sent_message(1)
    (sid,) = sent.provider_ids
    await webhooks.twilio_status(sid, "failed", ErrorCode="30001")
    await webhooks.twilio_status(sid, "failed", ErrorCode="30001")  # the carrier retried it
    await webhooks.twilio_status(sid, "delivered")
    row = await db.recipient(sent.message_id)
    assert (row.status, row.error_code, row.provider_message_id) == ("queued", "30001", None)
    assert (await db.pending(sid)).status == "failed"  # parked, purged after a day
    assert await db.status_counts(sent.message_id) == {"queued": 1}


async def test_a_temporary_failure_at_the_last_attempt_fails_for_good(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, session: AsyncSession
) -> None:
    sent = await seed(tenant).sent_message(2)
    await session.execute(
        text("UPDATE message_recipients SET attempts = :n WHERE message_id = :m"),
        {"n": get_settings().max_attempts, "m": sent.message_id},
    )
    await session.commit()
    first, second = sent.provider_ids
    await webhooks.twilio_status(first, "failed", ErrorCode="30001")
    await webhooks.telnyx_status(second, "delivery_failed", [{"code": 40006, "title": "Down"}])
    rows = [await db.recipient(sent.message_id, i) for i in (1, 2)]
    assert [(r.status, r.error_code, r.provider_message_id) for r in rows] == [
        ("failed", "30001", first),
        ("undelivered", "40006", second),
    ]


async def _members_consent(session: AsyncSession, member_ids: list[int]) -> list[Any]:
    rows = await session.execute(
        text(
            "SELECT consent, consent_source, consent_changed_at IS NOT NULL AS changed"
            " FROM members WHERE id = ANY(:ids) ORDER BY id"
        ),
        {"ids": member_ids},
    )
    return [tuple(r) for r in rows]


async def test_opt_out_codes_in_status_callbacks_opt_the_member_out(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, session: AsyncSession
) -> None:
    members = await make_members(session, tenant.church_id, 3)
    sent = await seed(tenant).sent_message(3)
    # The rows of this message belong to the three real members.
    await session.execute(
        text(
            "UPDATE message_recipients r SET member_id = m.id FROM"
            " (SELECT unnest(CAST(:ids AS bigint[])) AS id,"
            "  generate_series(1, 3) AS n) m"
            " WHERE r.message_id = :msg AND r.member_id = m.n"
        ),
        {"ids": members, "msg": sent.message_id},
    )
    await session.commit()
    twilio_sid, telnyx_id, other = sent.provider_ids

    await webhooks.twilio_status(twilio_sid, "failed", ErrorCode="21610")
    await webhooks.telnyx_status(
        telnyx_id, "sending_failed", [{"code": 40300, "title": "Blocked due to STOP message"}]
    )
    await webhooks.twilio_status(other, "failed", ErrorCode="30003")

    assert await _members_consent(session, members) == [
        ("opted_out", "carrier", True),
        ("opted_out", "carrier", True),
        ("opted_in", None, False),
    ]
    rows = [await db.recipient(sent.message_id, m) for m in members]
    assert [(r.status, r.error_code) for r in rows] == [
        ("failed", "21610"),
        ("failed", "40300"),
        ("failed", "30003"),
    ]


async def test_a_temporary_failure_of_a_cancelled_message_is_final(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, session: AsyncSession
) -> None:
    sent = await seed(tenant).sent_message(1)
    await session.execute(
        text("UPDATE messages SET status = 'cancelled' WHERE id = :m"), {"m": sent.message_id}
    )
    await session.commit()
    (sid,) = sent.provider_ids
    await webhooks.twilio_status(sid, "failed", ErrorCode="30001")
    row = await db.recipient(sent.message_id)
    assert (row.status, row.error_code, row.provider_message_id) == ("failed", "30001", sid)


async def test_the_sweep_applies_parked_failures_like_the_webhook(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, session: AsyncSession
) -> None:
    """A parked report the write-back did not fold in (the worker's periodic sweep is the
    safety net) keeps its meaning: re-queue, or opt the member out."""
    members = await make_members(session, tenant.church_id, 2)
    sent = await seed(tenant).sent_message(2, with_provider_ids=False)
    await webhooks.twilio_status("SMretry", "failed", ErrorCode="30022")
    await webhooks.telnyx_status("tx-stop", "sending_failed", [{"code": 40300, "title": "STOP"}])
    assert await db.pending_count() == 2
    await session.execute(
        text(
            "UPDATE message_recipients r SET member_id = m.id, provider_message_id = m.p FROM"
            " (SELECT unnest(CAST(:ids AS bigint[])) AS id,"
            "  unnest(CAST(:pids AS varchar[])) AS p, generate_series(1, 2) AS n) m"
            " WHERE r.message_id = :msg AND r.member_id = m.n"
        ),
        {"ids": members, "pids": ["SMretry", "tx-stop"], "msg": sent.message_id},
    )
    await session.commit()

    moved = await DeliveryReportRepository(session).apply_matched_pending_reports()
    await session.commit()
    assert moved == 2
    rows = [await db.recipient(sent.message_id, m) for m in members]
    assert [(r.status, r.error_code, r.provider_message_id) for r in rows] == [
        ("queued", "30022", None),
        ("failed", "40300", "tx-stop"),
    ]
    assert [c[0] for c in await _members_consent(session, members)] == ["opted_in", "opted_out"]
    assert await db.pending_count() == 0
