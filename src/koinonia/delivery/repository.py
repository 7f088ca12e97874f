"""All SQL of delivery: claim due recipients, write results back, requeue expired leases.

The recipient rows are the queue (DESIGN §5). Every method is one set-based statement whatever
the batch size, so a worker runs the same handful of statements for 10 texts or 10,000.
Cross-church by nature (workers serve every church), hence no `church_id` at construction.

Lock order (the one place it is written down; DESIGN §5). Every transaction that locks more than
one of these takes them in this order, so no two can wait on each other in a cycle:

    messages (by id) → message_recipients → members / pending_status_reports → usage

(A member or a pending report is locked only by a transaction that already holds the
recipient it belongs to, or that holds no recipient at all, so the two never form a cycle
between themselves.)

- write-back (`record_results`): messages FOR NO KEY UPDATE in id order, then transaction-scoped
  advisory locks on the provider ids it records (hash order), then its recipients, the members
  it opts out, the pending reports it folds in, usage. Delivery reports only *try* those
  advisory locks (webhooks.repository): a report whose text is being written back waits for the
  next batch instead of reading a snapshot that misses the write-back.
- lease sweep (`requeue_expired_leases`): messages with expired rows FOR NO KEY UPDATE SKIP
  LOCKED in id order first, then their expired recipients (SKIP LOCKED); completing messages
  whose rows failed for good touches no usage. It never waits at all: a message a write-back
  holds is left for the next sweep.
- report sweep (`complete_reported_messages`): messages only, SKIP LOCKED.
- claim (`claim_due_recipients`): recipients only, SKIP LOCKED (messages are read, not locked).
- cancel (koinonia.messages.repository.cancel): the message FOR NO KEY UPDATE, its recipients,
  usage.

Messages are locked FOR NO KEY UPDATE, never FOR UPDATE: writers still exclude each other, but
not the FOR KEY SHARE that a foreign key to the message takes. A claim's counter upserts insert
message_status_counts rows (their key references the message) while the claim holds
recipients; under FOR UPDATE that insert waited on a write-back holding the message, and a
write-back re-queuing a text (an upsert on a counter row the claim held) closed a cycle.
Counts in message_status_counts follow from the statement-level triggers of each statement;
nothing here touches them directly.

Message statuses (the lifecycle `GET /messages/{id}` reports): `scheduled` / `queued` → `sending`
(texts left to hand to the provider) → `sent` (all handed over; some still await their delivery
report) → `completed` (every text final, or no report for `report_wait_s` after the message
became `sent`); `cancelled` by an admin. The write-back moves a message to `sending`, `sent` or
`completed` (also one that was `completed`, when a delivery report re-queued one of its texts);
`complete_reported_messages`, run by every worker's sweep, moves `sent` to `completed` (or back
to `sending` when a text was re-queued). Both are set-based: one statement whatever the number
of messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.billing.repository import billing_month_of
from koinonia.config import Settings, get_settings

# Outcomes the dispatcher reports per claimed recipient. "released" = claimed but never handed
# to the provider (shutdown, or no rate-limit slot within the lease): back to the queue without
# spending an attempt.
SENT, RETRY, FAILED, RELEASED = "sent", "queued", "failed", "released"

_CLAIM = text(
    """
WITH due AS (
    SELECT r.message_id, r.member_id, r.church_id
    FROM message_recipients r
    WHERE r.status = 'queued' AND r.next_attempt_at <= now()
    ORDER BY r.next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
),
fate AS (
    -- A member who opted out (or was deleted) since the message was written is skipped here,
    -- never sent. System texts (opt-out confirmations, HELP, the unknown-sender reply) go to
    -- the number whatever its consent: carriers require them. A row of a cancelled message
    -- (a retry a delivery report re-queued while the admin cancelled) is never sent either.
    SELECT due.message_id, due.member_id, mem.id IS NULL AS deleted,
           msg.status = 'cancelled' AS cancelled, mem.first_name, mem.last_name,
           (msg.status <> 'cancelled' AND (mem.consent = 'opted_in' OR msg.kind = 'system'))
               IS TRUE AS sendable
    FROM due
    JOIN messages msg ON msg.id = due.message_id
    LEFT JOIN members mem ON mem.id = due.member_id AND mem.church_id = due.church_id
),
claimed AS (
    UPDATE message_recipients r
    SET status = CASE WHEN f.sendable THEN 'sending' ELSE 'skipped' END,
        attempts = CASE WHEN f.sendable THEN r.attempts + 1 ELSE r.attempts END,
        lease_expires_at = CASE WHEN f.sendable THEN now() + make_interval(secs => :lease_s) END,
        next_attempt_at = CASE WHEN f.sendable THEN r.next_attempt_at END,
        error_code = CASE WHEN f.sendable THEN r.error_code WHEN f.cancelled THEN 'cancelled'
                          WHEN f.deleted THEN 'member_deleted' ELSE 'opted_out' END,
        error_text = CASE WHEN f.sendable THEN r.error_text
                          WHEN f.cancelled THEN 'cancelled by an admin'
                          WHEN f.deleted THEN 'the member was deleted before sending'
                          ELSE 'the member opted out before sending' END,
        updated_at = now()
    FROM fate f
    WHERE r.message_id = f.message_id AND r.member_id = f.member_id
    RETURNING r.message_id, r.member_id, r.church_id, r.phone, r.status, r.attempts,
              r.lease_expires_at, f.first_name, f.last_name
)
SELECT c.message_id, c.member_id, c.church_id, c.phone, c.status, c.attempts,
       c.lease_expires_at, c.first_name, c.last_name, m.content, m.kind,
       ch.name AS church_name, ch.sms_number, ch.sms_provider
FROM claimed c
JOIN messages m ON m.id = c.message_id
JOIN churches ch ON ch.id = c.church_id
"""
)

# Taken first in every write-back, in id order: serialises workers finishing the same message,
# so the last one to commit sees every other's results when it decides "completed".
_LOCK_MESSAGES = text(
    "SELECT id FROM messages WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id FOR NO KEY UPDATE"
)

# The write-back's first statement: its messages as above, then (once they are held: the
# function runs on the one row the count produces) an advisory lock per provider id it records
# (koinonia_lock_provider_ids, hash order), the same locks a batch of delivery reports takes
# before it reads (webhooks.repository). A report for one of these ids that is being stored now
# commits before _RECORD takes its snapshot, so _RECORD folds it in; one that comes later waits
# for this transaction and then finds the recipient carrying the id. Without them both sides
# read snapshots that missed each other and a report could be lost (README, delivery reports).
_LOCK_BATCH = text(
    """
WITH locked AS (
    SELECT id FROM messages WHERE id = ANY(CAST(:ids AS bigint[])) ORDER BY id
    FOR NO KEY UPDATE
)
SELECT koinonia_lock_provider_ids(CAST(:provider_ids AS varchar[]))
FROM (SELECT count(*) FROM locked) AS m
"""
)

# Backoff of a re-queued text in SQL, as the dispatcher's backoff_s (equal jitter): attempt n
# waits between half and all of min(max, base * 2**(n-1)) seconds. `{attempts}` is the column
# holding the attempts made so far.
BACKOFF_SQL = (
    "make_interval(secs => least(CAST(:retry_max_s AS float8), CAST(:retry_base_s AS float8)"
    " * power(2, greatest(0, {attempts} - 1))) * (0.5 + random() / 2))"
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how soon a temporary failure is tried again (settings: max_attempts,
    retry_base_s, retry_max_s); the write-back and the status webhook use it in SQL."""

    max_attempts: int
    base_s: float
    max_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(settings.max_attempts, settings.retry_base_s, settings.retry_max_s)

    def params(self) -> dict[str, float | int]:
        return {
            "max_attempts": self.max_attempts,
            "retry_base_s": float(self.base_s),
            "retry_max_s": float(self.max_s),
        }


# Plan: the redundant `= ANY(...)` conditions on the primary key make the rows an index scan
# the planner cannot miss (joined to unnest alone, it hashes a seq scan of the whole table),
# and the lease travels as a column of v rather than as a constant, which looks selective
# enough for the planner to seq-scan the table for it.
# Fenced by (attempts, lease): a claim increments attempts and sets a fresh lease, so a row
# whose lease expired and was claimed again by another worker no longer matches and keeps the
# newer claim's state. A row requeued after lease expiry but not yet claimed again still
# matches: recording its result then avoids a needless second send.
# A delivery report that beat the write-back (pending_status_reports) is folded in here and
# deleted: a final status, or, for a temporary failure (p.retry) with attempts left and the
# message not cancelled, back to the queue with backoff and without the provider id (later
# reports for that attempt then match no recipient); an opt-out code (p.opt_out) opts the
# member out like the API's error.
# The per-id locks of _LOCK_BATCH keep reports for these ids out while this runs; the DELETE
# still removes only the version it folded in (`p.status = rec.seen`): a DELETE that meets a
# row updated since its snapshot re-checks its conditions on the newest version, and the join
# on the id alone would delete a newer report that was never applied.
# `prior`: whether the row's segments already reached usage (an earlier attempt was handed
# over; sent_at survives a re-queue), so a re-sent text is counted once.
_RECORD = text(
    f"""
WITH v AS (
    SELECT * FROM unnest(
        CAST(:message_ids AS bigint[]), CAST(:member_ids AS bigint[]),
        CAST(:attempts AS int[]), CAST(:outcomes AS text[]), CAST(:provider_ids AS text[]),
        CAST(:error_codes AS text[]), CAST(:error_texts AS text[]),
        CAST(:delays AS float8[]), CAST(:segments AS int[]), CAST(:opted_out AS boolean[]),
        CAST(:leases AS timestamptz[]), CAST(:refunds AS boolean[])
    ) AS v(message_id, member_id, attempts, outcome, provider_id, error_code, error_text,
           delay_s, segments, opted_out, lease, refund)
),
prior AS (
    SELECT r.message_id, r.member_id, r.sent_at IS NOT NULL AS counted
    FROM message_recipients r
    WHERE r.message_id = ANY(CAST(:distinct_message_ids AS bigint[]))
      AND r.member_id = ANY(CAST(:member_ids AS bigint[]))
),
w AS (
    SELECT v.*, p.status AS seen, p.error_code AS p_error_code, p.error_text AS p_error_text,
           p.received_at AS p_received_at,
           v.outcome = 'sent' AND koinonia_status_rank(p.status) > 2 AS reported,
           v.outcome = 'sent' AND koinonia_status_rank(p.status) > 2 AND p.retry
               AND v.attempts < :max_attempts
               AND NOT EXISTS (SELECT 1 FROM messages m
                               WHERE m.id = v.message_id AND m.status = 'cancelled')
               AS requeue,
           v.outcome = 'sent' AND koinonia_status_rank(p.status) > 2 AND p.opt_out
               AS reported_opt_out
    FROM v LEFT JOIN pending_status_reports p ON p.provider_message_id = v.provider_id
),
rec AS (
    UPDATE message_recipients r
    SET status = CASE
            WHEN w.outcome = 'released' THEN 'queued'
            WHEN w.requeue THEN 'queued'
            WHEN w.reported THEN w.seen
            ELSE w.outcome END,
        attempts = CASE WHEN w.outcome = 'released' THEN r.attempts - 1 ELSE r.attempts END,
        provider_message_id = CASE WHEN w.requeue THEN NULL
                                   ELSE coalesce(w.provider_id, r.provider_message_id) END,
        segments = CASE WHEN w.outcome = 'sent' THEN w.segments ELSE r.segments END,
        sent_at = CASE WHEN w.outcome = 'sent' THEN now() ELSE r.sent_at END,
        delivered_at = CASE WHEN w.outcome = 'sent' AND w.seen = 'delivered'
                            THEN w.p_received_at ELSE r.delivered_at END,
        error_code = CASE
            WHEN w.outcome = 'sent' THEN CASE WHEN w.seen IN ('undelivered', 'failed')
                                              THEN w.p_error_code END
            WHEN w.outcome = 'released' THEN r.error_code
            ELSE w.error_code END,
        error_text = CASE
            WHEN w.outcome = 'sent' THEN CASE WHEN w.seen IN ('undelivered', 'failed')
                                              THEN w.p_error_text END
            WHEN w.outcome = 'released' THEN r.error_text
            ELSE w.error_text END,
        next_attempt_at = CASE WHEN w.outcome IN ('queued', 'released')
                               THEN now() + make_interval(secs => w.delay_s)
                               WHEN w.requeue
                               THEN now() + {BACKOFF_SQL.format(attempts="w.attempts")} END,
        lease_expires_at = NULL,
        updated_at = now()
    FROM w
    WHERE r.message_id = ANY(CAST(:distinct_message_ids AS bigint[]))
      AND r.member_id = ANY(CAST(:member_ids AS bigint[]))
      AND r.message_id = w.message_id AND r.member_id = w.member_id
      AND r.attempts = w.attempts AND r.lease_expires_at = w.lease
      AND r.status IN ('sending', 'queued')
    RETURNING r.message_id, r.member_id, w.provider_id, w.seen, w.outcome, w.segments,
              w.opted_out OR w.reported_opt_out AS opted_out, w.refund
),
applied AS (
    DELETE FROM pending_status_reports p
    USING rec
    WHERE rec.outcome = 'sent' AND p.provider_message_id = rec.provider_id
      AND p.status = rec.seen
),
opted AS (
    UPDATE members mem
    SET consent = 'opted_out', consent_changed_at = now(), consent_source = 'carrier'
    FROM rec
    WHERE rec.opted_out AND mem.id = rec.member_id AND mem.consent <> 'opted_out'
)
SELECT rec.message_id,
       coalesce(sum(rec.segments) FILTER (WHERE rec.outcome = 'sent' AND NOT pr.counted), 0)
           AS segments,
       count(*) FILTER (WHERE rec.refund) AS refunded,
       count(*) AS recorded
FROM rec JOIN prior pr ON pr.message_id = rec.message_id AND pr.member_id = rec.member_id
GROUP BY rec.message_id
"""
)

# Segments reach usage (the texts were reserved when the message was written) and texts no
# attempt handed to a provider go back to the quota (Outcome.refund, and rows skipped at claim
# before any attempt); segments reach the message's total; a message with no queued or sending
# recipient left is `sent` while some text awaits its delivery report, else `completed`. The
# usage row always exists: the reservation made it, in the same month (both use the database
# clock), so the refund's negative insert never lands.
# Runs after _LOCK_MESSAGES in its own statement, so its snapshot includes every competing
# write-back. "Left" is read from the trigger-maintained counters (an index lookup of a few
# rows), not from the recipients: EXISTS over a million recipients of which none is open is a
# full scan when the planner bets on finding one early.
_FINISH = text(
    f"""
WITH batch AS (
    SELECT * FROM unnest(
        CAST(:message_ids AS bigint[]), CAST(:segments AS bigint[]), CAST(:refunds AS bigint[])
    ) AS b(message_id, segments, refunds)
),
usage_add AS (
    INSERT INTO usage AS u (church_id, month, segments, texts)
    SELECT m.church_id, {billing_month_of("m.created_at")},
           sum(b.segments), -sum(b.refunds)
    FROM batch b JOIN messages m ON m.id = b.message_id
    WHERE b.segments > 0 OR b.refunds > 0
    GROUP BY 1, 2
    ORDER BY 1, 2
    ON CONFLICT (church_id, month) DO UPDATE
    SET segments = u.segments + EXCLUDED.segments, texts = greatest(u.texts + EXCLUDED.texts, 0)
)
UPDATE messages m
SET status = CASE WHEN m.status = 'cancelled' THEN m.status
                  WHEN o.open THEN 'sending' WHEN o.awaiting THEN 'sent' ELSE 'completed' END,
    -- The report wait counts from the last hand-over: a text re-queued by a temporary
    -- failure and sent again restarts it (and re-opens a message completed meanwhile).
    sent_at = CASE WHEN m.status <> 'cancelled' AND NOT o.open THEN now() ELSE m.sent_at END,
    completed_at = CASE WHEN m.status = 'cancelled' THEN m.completed_at
                        WHEN o.open OR o.awaiting THEN NULL
                        WHEN m.status = 'completed' THEN m.completed_at
                        ELSE now() END,
    total_segments = m.total_segments + b.segments
FROM batch b
CROSS JOIN LATERAL (
    SELECT coalesce(sum(c.n) FILTER (WHERE c.status IN ('queued', 'sending')), 0) > 0 AS open,
           coalesce(sum(c.n) FILTER (WHERE c.status = 'sent'), 0) > 0 AS awaiting
    FROM message_status_counts c
    WHERE c.message_id = b.message_id AND c.status IN ('queued', 'sending', 'sent')
) o
WHERE m.id = b.message_id
RETURNING m.id, m.status
"""
)

# `sent` → `completed` for every message whose texts all have their final status, or whose
# reports are overdue (`report_wait_s` after the message became `sent`: a carrier that has not
# reported by then most likely never will; a late report still updates its recipient). A message
# a text of which went back to the queue meanwhile is `sending` again. One statement for all
# messages; SKIP LOCKED, so it never waits on a write-back (messages come first in the lock
# order anyway). The partial index ix_messages_sent keeps the candidates to messages in `sent`.
_COMPLETE_REPORTED = text(
    """
WITH candidate AS (
    SELECT id FROM messages WHERE status = 'sent' ORDER BY id FOR NO KEY UPDATE SKIP LOCKED
)
UPDATE messages m
SET status = CASE WHEN o.open THEN 'sending' ELSE 'completed' END,
    completed_at = CASE WHEN o.open THEN m.completed_at ELSE now() END
FROM candidate
CROSS JOIN LATERAL (
    SELECT coalesce(sum(c.n) FILTER (WHERE c.status IN ('queued', 'sending')), 0) > 0 AS open,
           coalesce(sum(c.n) FILTER (WHERE c.status = 'sent'), 0) > 0 AS awaiting
    FROM message_status_counts c
    WHERE c.message_id = candidate.id AND c.status IN ('queued', 'sending', 'sent')
) o
WHERE m.id = candidate.id
  AND (o.open OR NOT o.awaiting
       OR m.sent_at < now() - make_interval(secs => CAST(:report_wait_s AS float8)))
RETURNING m.id, m.status
"""
)

# First step of the lease sweep, per the lock order: the messages that have expired rows,
# locked in id order, skipping any a write-back (or another sweep) holds.
_LOCK_EXPIRED_MESSAGES = text(
    """
SELECT m.id FROM messages m
WHERE m.id IN (SELECT r.message_id FROM message_recipients r
               WHERE r.status = 'sending' AND r.lease_expires_at < now())
ORDER BY m.id
FOR NO KEY UPDATE OF m SKIP LOCKED
"""
)

# Rows of a worker that died: back to the queue. Attempts already count the lost try, so a
# text that keeps killing workers fails after max_attempts instead of looping forever. The
# lease is kept: the original worker, if merely slow, may still record what it sent.
# Only rows of messages this transaction locked (_LOCK_EXPIRED_MESSAGES).
_REQUEUE_EXPIRED = text(
    """
WITH expired AS (
    SELECT message_id, member_id FROM message_recipients
    WHERE status = 'sending' AND lease_expires_at < now()
      AND message_id = ANY(CAST(:message_ids AS bigint[]))
    FOR UPDATE SKIP LOCKED
),
requeued AS (
    UPDATE message_recipients r
    SET status = CASE WHEN r.attempts >= :max_attempts THEN 'failed' ELSE 'queued' END,
        next_attempt_at = CASE WHEN r.attempts >= :max_attempts THEN NULL ELSE now() END,
        error_code = CASE WHEN r.attempts >= :max_attempts THEN 'lease_expired'
                          ELSE r.error_code END,
        error_text = CASE WHEN r.attempts >= :max_attempts
                          THEN 'the worker sending it stopped too often' ELSE r.error_text END,
        updated_at = now()
    FROM expired e
    WHERE r.message_id = e.message_id AND r.member_id = e.member_id
    RETURNING r.message_id, r.status
)
SELECT message_id, count(*) AS n, bool_or(status = 'failed') AS any_failed
FROM requeued GROUP BY message_id
"""
)


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    message_id: int
    member_id: int
    church_id: int
    phone: str
    status: str  # 'sending' (ours to send) or 'skipped' (opted out / deleted since)
    attempts: int  # including this one; with `lease`, the fence for the write-back
    lease: datetime | None
    first_name: str | None
    last_name: str | None
    content: str
    kind: str
    church_name: str
    sms_number: str | None
    sms_provider: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one claimed recipient, as the write-back needs it."""

    message_id: int
    member_id: int
    attempts: int
    outcome: str  # SENT, RETRY, FAILED or RELEASED
    provider_id: str | None = None
    error_code: str | None = None
    error_text: str | None = None
    delay_s: float = 0.0  # for RETRY: seconds until the next attempt
    segments: int = 1  # of the rendered body, for SENT
    opted_out: bool = False
    # FAILED with certainty that no attempt reached a provider: its text goes back to the quota.
    refund: bool = False


@dataclass(frozen=True, slots=True)
class Recorded:
    recorded: int  # rows written (fewer than outcomes when a lease was lost)
    segments: int
    completed: list[int]  # messages completed by this write-back


class DeliveryRepository:
    """Queue operations across all churches (workers claim work for every tenant)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due_recipients(self, *, limit: int, lease_s: float) -> list[ClaimedRecipient]:
        """Lock up to `limit` due recipients (SKIP LOCKED: workers never wait on each other),
        lease them and return what sending needs. The caller commits before sending."""
        rows = await self.session.execute(_CLAIM, {"limit": limit, "lease_s": float(lease_s)})
        return [
            ClaimedRecipient(
                message_id=int(r.message_id),
                member_id=int(r.member_id),
                church_id=int(r.church_id),
                phone=r.phone,
                status=r.status,
                attempts=int(r.attempts),
                lease=r.lease_expires_at,
                first_name=r.first_name,
                last_name=r.last_name,
                content=r.content,
                kind=r.kind,
                church_name=r.church_name,
                sms_number=r.sms_number,
                sms_provider=r.sms_provider,
            )
            for r in rows
        ]

    async def record_results(
        self,
        outcomes: Sequence[Outcome],
        *,
        lease: datetime | None,
        message_ids: Sequence[int],
        skipped_unsent: Sequence[int] = (),
        retry: RetryPolicy | None = None,
    ) -> Recorded:
        """Write a batch back: three statements whatever its size (lock the messages, write
        every recipient + pending reports + opt-outs, then usage + message completion).

        `message_ids` are all messages the claim touched, including those whose rows were
        only skipped, so a message whose last recipients opted out still completes.
        `skipped_unsent` has a message id per row the claim skipped before any attempt: those
        texts go back to the quota. (Refunded here, not in the claim, so that claims never wait
        on a church's usage row; a worker that dies in between under-refunds, never over.)
        `retry` re-queues texts whose parked delivery report is a temporary failure (default:
        the process settings)."""
        ids = sorted(set(message_ids))
        if not ids:
            return Recorded(0, 0, [])
        policy = retry or RetryPolicy.from_settings(get_settings())
        await self.session.execute(
            _LOCK_BATCH,
            {"ids": ids, "provider_ids": [o.provider_id for o in outcomes if o.provider_id]},
        )
        per_message: dict[int, int] = {}
        refunds = Counter(skipped_unsent)
        recorded = 0
        if outcomes:
            rows = await self.session.execute(
                _RECORD,
                {
                    "message_ids": [o.message_id for o in outcomes],
                    "member_ids": [o.member_id for o in outcomes],
                    "attempts": [o.attempts for o in outcomes],
                    "outcomes": [o.outcome for o in outcomes],
                    "provider_ids": [o.provider_id for o in outcomes],
                    "error_codes": [o.error_code for o in outcomes],
                    "error_texts": [o.error_text for o in outcomes],
                    "delays": [float(o.delay_s) for o in outcomes],
                    "segments": [o.segments for o in outcomes],
                    "opted_out": [o.opted_out for o in outcomes],
                    "leases": [lease] * len(outcomes),
                    "refunds": [o.refund for o in outcomes],
                    "distinct_message_ids": sorted({o.message_id for o in outcomes}),
                    **policy.params(),
                },
            )
            for row in rows:
                per_message[int(row.message_id)] = int(row.segments)
                refunds[int(row.message_id)] += int(row.refunded)
                recorded += int(row.recorded)
        completed = await self._finish(ids, per_message, refunds)
        return Recorded(recorded, sum(per_message.values()), completed)

    async def _finish(
        self, ids: list[int], segments: Mapping[int, int], refunds: Mapping[int, int]
    ) -> list[int]:
        rows = await self.session.execute(
            _FINISH,
            {
                "message_ids": ids,
                "segments": [segments.get(i, 0) for i in ids],
                "refunds": [refunds.get(i, 0) for i in ids],
            },
        )
        return [int(r.id) for r in rows if r.status == "completed"]

    async def requeue_expired_leases(self, *, max_attempts: int) -> int:
        """Put the rows of dead workers back in the queue; messages whose rows failed for good
        here are finished in the same transaction. Takes its locks in the module's lock order
        and never waits for one (at most three statements). Returns rows requeued."""
        locked = [int(r.id) for r in await self.session.execute(_LOCK_EXPIRED_MESSAGES)]
        if not locked:
            return 0
        rows = (
            await self.session.execute(
                _REQUEUE_EXPIRED, {"max_attempts": max_attempts, "message_ids": locked}
            )
        ).all()
        failed = sorted(int(r.message_id) for r in rows if r.any_failed)
        if failed:
            # No refund: a text in flight when its worker died may have reached the provider.
            await self._finish(failed, {}, {})
        return sum(int(r.n) for r in rows)

    async def complete_reported_messages(self, *, report_wait_s: float) -> list[int]:
        """`sent` messages whose texts are all final, or whose reports are overdue, become
        `completed` (one statement). Returns the ids completed."""
        rows = await self.session.execute(_COMPLETE_REPORTED, {"report_wait_s": report_wait_s})
        return [int(r.id) for r in rows if r.status == "completed"]
