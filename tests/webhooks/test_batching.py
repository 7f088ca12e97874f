"""webhooks.batching: concurrent delivery reports share one statement and one commit; each
request is answered with its own outcome once that commit is done."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fixtures.factories import SeedFor, Tenant
from koinonia.webhooks import batching
from koinonia.webhooks.repository import DeliveryReportRepository
from koinonia.webhooks.schemas import DeliveryReport, ReportOutcome

Webhooks = Any  # conftest: posts signed provider webhooks
WebhookDb = Any  # conftest: rows through SQL


async def test_concurrent_reports_are_stored_together(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, count_statements: Any
) -> None:
    sent = await seed(tenant).sent_message(recipients=20)
    with count_statements() as log:
        answers = await asyncio.gather(
            *(webhooks.twilio_status(sid, "delivered") for sid in sent.provider_ids)
        )
    assert [r.status_code for r in answers] == [200] * 20
    assert 1 <= log.count < 20, log.statements  # batches, not one statement per report
    assert await db.status_counts(sent.message_id) == {"delivered": 20}


async def test_reports_for_one_id_in_one_batch_keep_the_highest_status(
    db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(recipients=2)
    known, unknown = sent.provider_ids[0], "SM-not-recorded-yet"
    outcomes = await DeliveryReportRepository(db.session).record_delivery_reports(
        [
            DeliveryReport("twilio", known, "delivered"),
            DeliveryReport("twilio", known, "sent"),  # late: loses to delivered
            DeliveryReport("twilio", unknown, "sent"),
            DeliveryReport("twilio", unknown, "failed", "30003", "Unreachable"),
        ]
    )
    assert outcomes == [
        ReportOutcome.APPLIED,
        ReportOutcome.STALE,
        ReportOutcome.PENDING,
        ReportOutcome.PENDING,
    ]
    assert (await db.recipient(sent.message_id, 1)).status == "delivered"
    assert (await db.recipient(sent.message_id, 2)).status == "sending"
    assert await db.pending_count() == 1


async def test_a_failing_batch_is_retried_report_by_report() -> None:
    batches: list[list[str]] = []

    async def store(batch: Sequence[DeliveryReport]) -> list[ReportOutcome | None]:
        batches.append([r.provider_message_id for r in batch])
        await asyncio.sleep(0)
        if any(r.provider_message_id == "bad" for r in batch):
            raise RuntimeError("cannot store 'bad'")
        return [ReportOutcome.APPLIED] * len(batch)

    writer = batching.ReportWriter(store)
    results = await asyncio.gather(
        *(writer.record(DeliveryReport("twilio", sid, "sent")) for sid in ("a", "bad", "c")),
        return_exceptions=True,
    )
    assert results[0] == ReportOutcome.APPLIED and results[2] == ReportOutcome.APPLIED
    assert isinstance(results[1], RuntimeError)
    assert batches[0] == ["a", "bad", "c"] and sorted(batches[1:]) == [["a"], ["bad"], ["c"]]


async def test_a_report_is_answered_only_after_its_batch_commits() -> None:
    storing, committed = asyncio.Event(), asyncio.Event()

    async def store(batch: Sequence[DeliveryReport]) -> list[ReportOutcome | None]:
        storing.set()
        await committed.wait()
        return [ReportOutcome.APPLIED] * len(batch)

    writer = batching.ReportWriter(store)
    answer = asyncio.ensure_future(writer.record(DeliveryReport("twilio", "x", "sent")))
    await asyncio.wait_for(storing.wait(), 30)  # its batch is being stored, not yet committed
    assert not answer.done()
    committed.set()
    assert await answer == ReportOutcome.APPLIED
