"""Claim → send → record through the sandbox over real HTTP, on committed rows."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from delivery.support import (
    MakeBroadcast,
    MakeSettings,
    RecordingLocalLimiter,
    assert_paced,
    complete_reported,
    counted,
    deliver_all,
    deliver_with,
    granted_slots,
    message_status,
    send_to_all,
    sent_phones,
    statuses,
)
from fixtures.factories import make_members
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import Dispatcher, drain
from koinonia.delivery.repository import DeliveryRepository, Outcome
from koinonia.kit.segments import count_segments, render
from koinonia_sandbox import RunningSandbox

# 151 characters around the first name: "Member7" fits one SMS, "Member123" needs two, so the
# recorded segments must come from each rendered body, not from the message's estimate.
LONG = "Hi {first_name}! " + "x" * 141 + " {church_name}"


async def _one(session: AsyncSession, sql: str, **params: Any) -> Any:
    row = (await session.execute(text(sql), params)).one()
    await session.commit()
    return row


async def _texts_used(session: AsyncSession, church_id: int) -> int:
    row = await _one(
        session, "SELECT coalesce(sum(texts), 0) AS n FROM usage WHERE church_id = :c", c=church_id
    )
    return int(row.n)


async def test_broadcast_to_1000_members_is_sent_counted_and_billed(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    church_name = "Grace"
    b = await broadcast(1000, content=LONG.replace("{church_name}", church_name))
    names = (
        await committed_session.execute(
            text("SELECT first_name, last_name FROM members WHERE church_id = :c"),
            {"c": b.church.church_id},
        )
    ).all()
    expected_segments = sum(
        count_segments(
            render(LONG, {"first_name": f, "last_name": ln, "church_name": church_name})
        ).segments
        for f, ln in names
    )
    assert 1000 < expected_segments < 2000  # both kinds are in the broadcast

    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        assert await drain(dispatcher) == 1000
    finally:
        await dispatcher.close()

    assert len(set(sent_phones(sandbox))) == 1000 == len(sent_phones(sandbox))
    await sandbox.carrier.wait_for_callbacks()  # delivery reports settle before we read
    by_status = await statuses(committed_session, b.message_id)
    assert set(by_status) <= {"sent", "delivered"} and sum(by_status.values()) == 1000
    assert await counted(committed_session, b.message_id) == by_status
    await complete_reported(committed_session)  # the worker's sweep
    message = await _one(
        committed_session,
        "SELECT status, completed_at, total_segments FROM messages WHERE id = :m",
        m=b.message_id,
    )
    # Completed once every report is in (a lost report would leave it `sent`, awaiting it).
    if "sent" in by_status:
        assert message.status == "sent" and message.completed_at is None
    else:
        assert message.status == "completed" and message.completed_at is not None
    assert message.total_segments == expected_segments
    row = await _one(
        committed_session,
        "SELECT sum(segments) AS segments, count(*) FILTER (WHERE attempts = 1) AS once,"
        " count(*) FILTER (WHERE provider_message_id IS NOT NULL AND sent_at IS NOT NULL"
        "   AND lease_expires_at IS NULL AND next_attempt_at IS NULL) AS recorded"
        " FROM message_recipients WHERE message_id = :m",
        m=b.message_id,
    )
    assert (row.segments, row.once, row.recorded) == (expected_segments, 1000, 1000)
    usage = await _one(
        committed_session,
        "SELECT texts, segments FROM usage WHERE church_id = :c",
        c=b.church.church_id,
    )
    assert (usage.texts, usage.segments) == (1000, expected_segments)
    bodies = {m.body for m in sandbox.carrier.messages}
    assert f"Hi Member0! {'x' * 141} {church_name}" in bodies


async def test_statements_per_batch_do_not_grow_with_its_size(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    count_statements: Any,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})  # no webhooks in the count
    counts = []
    for size in (10, 500):
        await broadcast(size)
        dispatcher = Dispatcher(make_settings(claim_batch_size=size), committed_database)
        try:
            with count_statements() as log:
                result = await dispatcher.run_once()
        finally:
            await dispatcher.close()
        assert result.claimed == result.sent == size
        counts.append((log.count, result.statements))
    assert counts[0] == counts[1]
    assert counts[0][0] == 4  # claim; lock messages, record, finish


async def test_two_dispatchers_never_send_a_recipient_twice(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"latency_ms": 5, "delivery_delay_ms": 60_000})
    b = await broadcast(1000)
    settings = make_settings(claim_batch_size=50)
    first, second = (
        Dispatcher(settings, committed_database),
        Dispatcher(settings, committed_database),
    )
    try:
        claimed = await asyncio.gather(drain(first), drain(second))
    finally:
        await first.close()
        await second.close()
    assert sum(claimed) == 1000 and min(claimed) > 0  # both took part
    phones = Counter(sent_phones(sandbox))
    assert len(phones) == 1000 and set(phones.values()) == {1}
    assert set(await statuses(committed_session, b.message_id)) <= {"sent", "delivered"}


async def test_rate_limit_storm_and_server_errors_are_retried_until_sent(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # The carrier takes one text per millisecond, one at a time; we hand it 60 at once (our
    # bucket grants them in one go), so all but a few are refused with 429 + Retry-After
    # whatever the machine's load (a race of 60 against 40/s left no 429 when a busy CPU
    # spread our sends out). A fifth of what it does take fails with 500/503 on top.
    sandbox.carrier.update_config(
        {"rate_limit_mps": 1000, "rate_limit_burst": 1, "transient_failure_rate": 0.2}
    )
    b = await broadcast(60)
    await deliver_with(
        make_settings(
            send_rate_per_number=10_000.0,
            retry_max_s=0.05,  # Retry-After (1 s) capped: many rounds, quickly
            max_attempts=100,
            max_rate_limited_attempts=100,
        ),
        committed_database,
        committed_session,
        b.message_id,
    )

    assert set(await statuses(committed_session, b.message_id)) <= {"sent", "delivered"}
    stats = sandbox.carrier.stats()
    assert stats["rejected"]["rate_limited"] > 0 and stats["rejected"]["transient"] > 0
    assert stats["accepted"] == 60
    row = await _one(
        committed_session,
        "SELECT sum(attempts) AS total, max(attempts) AS most FROM message_recipients"
        " WHERE message_id = :m",
        m=b.message_id,
    )
    # Every request the carrier saw is an attempt on some recipient's row.
    assert row.total == 60 + stats["rejected"]["rate_limited"] + stats["rejected"]["transient"]
    assert row.most > 1


async def test_permanent_failure_fails_once_with_the_provider_code(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"permanent_failure_rate": 1.0})
    b = await broadcast(5)
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        await deliver_all(dispatcher, committed_session, b.message_id)
        await asyncio.sleep(0.2)  # longer than any retry delay these settings allow
        assert (await dispatcher.run_once()).claimed == 0
    finally:
        await dispatcher.close()
    rows = (
        await committed_session.execute(
            text(
                "SELECT status, attempts, error_code, error_text, next_attempt_at"
                " FROM message_recipients WHERE message_id = :m"
            ),
            {"m": b.message_id},
        )
    ).all()
    assert len(rows) == 5
    assert {(r.status, r.attempts, r.error_code, r.next_attempt_at) for r in rows} == {
        ("failed", 1, "30006", None)
    }
    assert all("Landline" in r.error_text for r in rows)
    assert len(sent_phones(sandbox)) == 0 and sandbox.carrier.stats()["rejected"]["permanent"] == 5
    assert await counted(committed_session, b.message_id) == {"failed": 5}
    assert await message_status(committed_session, b.message_id) == "completed"
    # No provider took them: the five reserved texts go back to the month's quota.
    assert await _texts_used(committed_session, b.church.church_id) == 0


async def test_unsubscribed_recipient_fails_and_opts_the_member_out(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    b = await broadcast(3)
    phone = (await _phones(committed_session, b.member_ids[:1]))[0]
    sandbox.carrier.update_config({"opted_out_numbers": [phone]})
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    row = await _one(
        committed_session,
        "SELECT r.status, r.attempts, r.error_code, m.consent, m.consent_source,"
        " m.consent_changed_at FROM message_recipients r JOIN members m ON m.id = r.member_id"
        " WHERE r.message_id = :msg AND r.member_id = :id",
        msg=b.message_id,
        id=b.member_ids[0],
    )
    assert (row.status, row.attempts, row.error_code) == ("failed", 1, "21610")
    assert (row.consent, row.consent_source) == ("opted_out", "carrier")
    assert row.consent_changed_at is not None
    assert sorted(sent_phones(sandbox)) == sorted(
        p for p in await _phones(committed_session, b.member_ids) if p != phone
    )


async def test_member_who_opted_out_after_the_send_was_written_is_skipped(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    b = await broadcast(4)
    await committed_session.execute(
        text("UPDATE members SET consent = 'opted_out' WHERE id = :id"), {"id": b.member_ids[0]}
    )
    await committed_session.execute(
        text("DELETE FROM members WHERE id = :id"), {"id": b.member_ids[1]}
    )
    await committed_session.commit()
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        result = await dispatcher.run_once()
    finally:
        await dispatcher.close()
    assert (result.claimed, result.sent, result.skipped) == (4, 2, 2)
    rows = dict(
        (
            await committed_session.execute(
                text(
                    "SELECT member_id, error_code FROM message_recipients"
                    " WHERE message_id = :m AND status = 'skipped'"
                ),
                {"m": b.message_id},
            )
        ).all()
    )
    assert rows == {b.member_ids[0]: "opted_out", b.member_ids[1]: "member_deleted"}
    assert len(sent_phones(sandbox)) == 2
    await sandbox.carrier.wait_for_callbacks()
    await complete_reported(committed_session)
    assert await message_status(committed_session, b.message_id) == "completed"
    # Four texts were reserved when the message was written; the two skipped are refunded.
    assert await _texts_used(committed_session, b.church.church_id) == 2


async def test_a_retry_requeued_into_a_cancelled_message_is_never_sent(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # A delivery report that re-queues a temporary failure can commit just as an admin cancels
    # the message; the claim is what keeps the text from going out again.
    b = await broadcast(2)
    for stmt in (
        "UPDATE message_recipients SET attempts = 1 WHERE message_id = :m",
        "UPDATE messages SET status = 'cancelled' WHERE id = :m",
    ):
        await committed_session.execute(text(stmt), {"m": b.message_id})
    await committed_session.commit()
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        result = await dispatcher.run_once()
    finally:
        await dispatcher.close()
    assert (result.claimed, result.sent, result.skipped) == (2, 0, 2)
    assert sent_phones(sandbox) == []
    codes = (
        await committed_session.execute(
            text(
                "SELECT DISTINCT status, error_code FROM message_recipients WHERE message_id = :m"
            ),
            {"m": b.message_id},
        )
    ).all()
    assert [tuple(r) for r in codes] == [("skipped", "cancelled")]
    assert await message_status(committed_session, b.message_id) == "cancelled"


async def test_a_message_whose_every_recipient_opted_out_still_completes(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    b = await broadcast(2)
    await committed_session.execute(
        text("UPDATE members SET consent = 'opted_out' WHERE id = ANY(:ids)"),
        {"ids": b.member_ids},
    )
    await committed_session.commit()
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        assert (await dispatcher.run_once()).skipped == 2
    finally:
        await dispatcher.close()
    assert await message_status(committed_session, b.message_id) == "completed"


async def test_telnyx_church_sends_through_the_telnyx_adapter(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    b = await broadcast(3, provider="telnyx")
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    sent = list(sandbox.carrier.messages)
    assert {m.carrier for m in sent} == {"telnyx"} and len(sent) == 3
    assert {m.status_callback for m in sent} == {
        f"{make_settings().public_url}/api/v1/webhooks/telnyx"
    }


async def test_pending_delivery_report_is_applied_when_the_send_is_recorded(
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Any]],
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_database: Database,
) -> None:
    """The carrier can report 'delivered' before the batch is written back; the write-back
    folds the parked report in (forward only) and removes it."""
    church = await committed_tenants()
    await make_members(committed_session, church.church_id, 1)
    message_id = await send_to_all(committed_session, church.church_id, "hello")
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    parked: list[str] = []

    class ReportBeatsWriteBack(Dispatcher):
        async def _record(self, outcomes: list[Outcome], **kwargs: Any) -> Any:
            parked.extend(o.provider_id for o in outcomes if o.provider_id)
            await committed_session.execute(
                text(
                    "INSERT INTO pending_status_reports (provider_message_id, status)"
                    " SELECT unnest(CAST(:ids AS varchar[])), 'delivered'"
                ),
                {"ids": parked},
            )
            await committed_session.commit()
            return await super()._record(outcomes, **kwargs)

    dispatcher = ReportBeatsWriteBack(make_settings(), committed_database)
    try:
        assert (await dispatcher.run_once()).sent == 1
    finally:
        await dispatcher.close()
    row = await _one(
        committed_session,
        "SELECT status, delivered_at, provider_message_id FROM message_recipients"
        " WHERE message_id = :m",
        m=message_id,
    )
    assert (row.status, row.provider_message_id) == ("delivered", parked[0])
    assert row.delivered_at is not None
    left = await _one(
        committed_session,
        "SELECT count(*) AS n FROM pending_status_reports WHERE provider_message_id = :id",
        id=parked[0],
    )
    assert left.n == 0
    assert await counted(committed_session, message_id) == {"delivered": 1}


async def _phones(session: AsyncSession, member_ids: list[int]) -> list[str]:
    rows = await session.execute(
        text("SELECT phone FROM members WHERE id = ANY(:ids)"), {"ids": member_ids}
    )
    await session.commit()
    return [r[0] for r in rows]


async def test_sends_to_one_number_wait_for_slots_one_interval_apart(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    """Every text goes through the number's bucket, and the bucket's schedule never puts two
    texts closer than 1/rate (the rate a machine achieves is measured by the bench)."""
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    rate = 100.0
    b = await broadcast(101)
    limiter = RecordingLocalLimiter(rate)
    dispatcher = Dispatcher(
        make_settings(send_rate_per_number=rate), committed_database, limiter=limiter
    )
    try:
        await deliver_all(dispatcher, committed_session, b.message_id)
    finally:
        await dispatcher.close()
    assert len(set(sent_phones(sandbox))) == 101 == len(sent_phones(sandbox))
    slots = granted_slots(limiter)
    assert len(slots) >= 101
    assert_paced(slots, rate)


async def test_system_texts_reach_opted_out_members_verbatim_and_relays_keep_braces(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    """A STOP confirmation must reach the member who just opted out; a relayed text is sent as
    written, its braces not taken for merge fields."""
    b = await broadcast(1)
    await committed_session.execute(
        text(
            "UPDATE messages SET kind = 'system', content = 'Unsubscribed {first_name}'"
            " WHERE id = :m"
        ),
        {"m": b.message_id},
    )
    await committed_session.execute(
        text("UPDATE members SET consent = 'opted_out' WHERE id = :id"), {"id": b.member_ids[0]}
    )
    await committed_session.commit()
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        result = await dispatcher.run_once()
    finally:
        await dispatcher.close()
    assert (result.sent, result.skipped) == (1, 0)
    [sent] = sandbox.carrier.messages
    assert sent.body == "Unsubscribed {first_name}"


async def test_a_text_whose_workers_keep_dying_fails_after_max_attempts_and_stays_counted(
    broadcast: MakeBroadcast, committed_session: AsyncSession
) -> None:
    b = await broadcast(2)
    # Both rows were claimed by a worker that died on its last allowed attempt.
    await committed_session.execute(
        text(
            "UPDATE message_recipients SET status = 'sending', attempts = 5,"
            " lease_expires_at = now() - interval '1 second' WHERE message_id = :m"
        ),
        {"m": b.message_id},
    )
    await committed_session.commit()
    await DeliveryRepository(committed_session).requeue_expired_leases(max_attempts=5)
    await committed_session.commit()
    assert await counted(committed_session, b.message_id) == {"failed": 2}
    assert await message_status(committed_session, b.message_id) == "completed"
    # They may have reached the provider before the crash: no refund.
    assert await _texts_used(committed_session, b.church.church_id) == 2


async def test_a_text_that_timed_out_for_good_stays_counted(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # The carrier answers too late: it may well have taken the texts, so nothing is refunded.
    sandbox.carrier.update_config({"latency_ms": 400})
    b = await broadcast(3)
    await deliver_with(
        make_settings(sms_timeout_s=0.1, max_attempts=1),
        committed_database,
        committed_session,
        b.message_id,
    )
    assert await counted(committed_session, b.message_id) == {"failed": 3}
    assert await _texts_used(committed_session, b.church.church_id) == 3


async def test_a_rejection_after_an_earlier_attempt_stays_counted(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # Attempt 1 timed out (the carrier may have taken it), attempt 2 is rejected: no refund.
    b = await broadcast(2)
    await committed_session.execute(
        text(
            "UPDATE message_recipients SET attempts = 1, error_code = 'timeout'"
            " WHERE message_id = :m"
        ),
        {"m": b.message_id},
    )
    await committed_session.commit()
    sandbox.carrier.update_config({"permanent_failure_rate": 1.0})
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    assert await counted(committed_session, b.message_id) == {"failed": 2}
    assert await _texts_used(committed_session, b.church.church_id) == 2


async def test_a_member_who_opted_out_after_an_attempt_is_skipped_but_stays_counted(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    # The row was tried once already (a worker died mid-send, or a timeout): the text may have
    # gone out, so skipping it now refunds nothing; the untried one is refunded.
    b = await broadcast(2)
    await committed_session.execute(
        text("UPDATE message_recipients SET attempts = 1 WHERE member_id = :id"),
        {"id": b.member_ids[0]},
    )
    await committed_session.execute(
        text("UPDATE members SET consent = 'opted_out' WHERE id = ANY(:ids)"),
        {"ids": b.member_ids},
    )
    await committed_session.commit()
    dispatcher = Dispatcher(make_settings(), committed_database)
    try:
        assert (await dispatcher.run_once()).skipped == 2
    finally:
        await dispatcher.close()
    assert await _texts_used(committed_session, b.church.church_id) == 1


async def test_a_text_grown_beyond_the_provider_limit_fails_unsent_and_refunded(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    """A recurring or welcome text reaches whoever is in the audience when it fires: a member
    whose name makes it longer than the provider takes is failed with the reason, not sent
    (the carrier would refuse it), and refunded; the others still get theirs (issue 10)."""
    b = await broadcast(3, content="x" * 1590 + "{first_name}")  # "Member0": 1,597 characters
    long_name, *others = b.member_ids
    await committed_session.execute(
        text("UPDATE members SET first_name = 'Bartholomew' WHERE id = :m"), {"m": long_name}
    )
    await committed_session.commit()
    await deliver_with(make_settings(), committed_database, committed_session, b.message_id)
    rows = (
        await committed_session.execute(
            text(
                "SELECT member_id, status, attempts, error_code, error_text"
                " FROM message_recipients WHERE message_id = :m ORDER BY member_id"
            ),
            {"m": b.message_id},
        )
    ).all()
    by_member = {r.member_id: r for r in rows}
    failed = by_member[long_name]
    assert (failed.status, failed.error_code) == ("failed", "text_too_long")
    assert "1,601 characters" in failed.error_text and "(1 too many)" in failed.error_text
    assert {by_member[m].status for m in others} <= {"sent", "delivered"}
    assert len(sent_phones(sandbox)) == 2
    # Every text handed over or final: delivery reports may or may not have come in yet.
    assert await message_status(committed_session, b.message_id) in {"sent", "completed"}
    assert await _texts_used(committed_session, b.church.church_id) == 2  # one refunded
