"""All SQL of the provider webhooks.

Webhooks are cross-church by nature: a delivery report names a provider message id, never a
church, so these queries are keyed by provider id and named so (DESIGN §4). They load no ORM
objects; a batch of reports is two statements (lock the ids, store). Counts in
message_status_counts follow through the statement-level triggers on message_recipients.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.config import get_settings
from koinonia.delivery.repository import BACKOFF_SQL, RetryPolicy
from koinonia.webhooks.schemas import DeliveryReport, ReportOutcome

# Taken first in a batch's transaction, in its own statement: an advisory lock per provider id
# (koinonia_try_lock_provider_ids), the locks the dispatcher's write-back holds from before it
# reads until it commits (delivery.repository._LOCK_BATCH). Tried, never waited for: an id
# whose lock is taken is being written back right now; its report is left out of this batch
# and stored in a later one (webhooks.batching), so one write-back in progress holds up only the
# reports of its own texts. Every id this batch holds either was written back before
# _RECORD_REPORTS below takes its snapshot (the recipient carries the id: the report is
# applied), or its write-back waits for this batch to commit (and then folds the parked report
# in). One statement cannot do this: its snapshot is taken before anything it locks.
_LOCK_IDS = text("SELECT koinonia_try_lock_provider_ids(CAST(:ids AS varchar[]))")

# One statement per batch of reports, one report per provider id (the caller keeps the winner
# of several reports for one id: RANKS below), READ COMMITTED, one snapshot for all parts:
#   applied: move each recipient with one of these provider ids forward, only if the new status
#            ranks higher (koinonia_status_rank: queued 0, sending 1, sent 2, final 3), so a late
#            'sent' after 'delivered', or a duplicate, changes nothing. Concurrent reports for one
#            recipient serialise on its row lock and Postgres re-checks the rank on the latest
#            version, so the higher status always wins. A temporary failure (retry) with
#            attempts left puts the text back in the queue with backoff instead, and takes the
#            provider id off the row: that id named the failed attempt, so later reports for it
#            match no recipient (they park and expire) and cannot touch the next attempt.
#   opted:   an opt-out code opts the member out, as the dispatcher does for the API's error.
#   pending: ids no recipient carries yet (the carrier answered before the dispatcher wrote the
#            send back, or an id we never sent): keep the report, upserted so the pending row
#            holds the highest-ranked status seen (with its retry / opt-out flags).
#   known:   whether a recipient has the id: decides pending, and tells "stale" from "pending".
# The ids come sorted and the pending upsert inserts in that order; the UPDATE locks recipients
# in whatever order its join produces, so two batches can deadlock: the writer retries a
# deadlocked batch whole (webhooks.batching). `IS NOT NULL` lets every lookup use the partial
# unique index uq_message_recipients_provider_id.
# A temporary failure goes back to the queue while attempts are left, unless an admin
# cancelled the message meanwhile (its texts then end here, failed as reported).
# `{report}`: the alias of the report's row.
_REQUEUE = (
    "({report}.retry AND r.attempts < :max_attempts AND NOT EXISTS ("
    "SELECT 1 FROM messages AS g WHERE g.id = r.message_id AND g.status = 'cancelled'))"
)
_REQUEUE_REPORT = _REQUEUE.format(report="i")
_RECORD_REPORTS = text(
    f"""
WITH input AS (
    SELECT *
    FROM unnest(CAST(:ids AS varchar[]), CAST(:statuses AS varchar[]),
                CAST(:error_codes AS varchar[]), CAST(:error_texts AS text[]),
                CAST(:retries AS boolean[]), CAST(:opt_outs AS boolean[]))
         WITH ORDINALITY AS i(provider_message_id, status, error_code, error_text, retry,
                              opt_out, n)
),
known AS (
    SELECT i.provider_message_id, EXISTS (
        SELECT 1 FROM message_recipients AS r
        WHERE r.provider_message_id = i.provider_message_id
          AND r.provider_message_id IS NOT NULL
    ) AS known
    FROM input AS i
),
applied AS (
    UPDATE message_recipients AS r
    SET status = CASE WHEN {_REQUEUE_REPORT} THEN 'queued' ELSE i.status END,
        provider_message_id = CASE WHEN {_REQUEUE_REPORT} THEN NULL
                                   ELSE r.provider_message_id END,
        next_attempt_at = CASE WHEN {_REQUEUE_REPORT}
                               THEN now() + {BACKOFF_SQL.format(attempts="r.attempts")}
                               ELSE r.next_attempt_at END,
        delivered_at = CASE WHEN i.status = 'delivered'
                            THEN coalesce(r.delivered_at, now()) ELSE r.delivered_at END,
        error_code = CASE WHEN i.status IN ('undelivered', 'failed')
                          THEN i.error_code ELSE r.error_code END,
        error_text = CASE WHEN i.status IN ('undelivered', 'failed')
                          THEN i.error_text ELSE r.error_text END,
        updated_at = now()
    FROM input AS i
    WHERE r.provider_message_id = i.provider_message_id
      AND r.provider_message_id IS NOT NULL
      AND koinonia_status_rank(i.status) > koinonia_status_rank(r.status)
    RETURNING i.provider_message_id, r.member_id, i.opt_out
),
opted AS (
    UPDATE members AS mem
    SET consent = 'opted_out', consent_changed_at = now(), consent_source = 'carrier'
    FROM applied AS a
    WHERE a.opt_out AND mem.id = a.member_id AND mem.consent <> 'opted_out'
),
pending AS (
    INSERT INTO pending_status_reports AS p
        (provider_message_id, status, error_code, error_text, retry, opt_out)
    SELECT i.provider_message_id, i.status, i.error_code, i.error_text, i.retry, i.opt_out
    FROM input AS i JOIN known AS k USING (provider_message_id)
    WHERE NOT k.known
    ORDER BY i.n
    ON CONFLICT (provider_message_id) DO UPDATE
    SET status = EXCLUDED.status,
        error_code = EXCLUDED.error_code,
        error_text = EXCLUDED.error_text,
        retry = EXCLUDED.retry,
        opt_out = EXCLUDED.opt_out,
        received_at = now()
    WHERE koinonia_status_rank(EXCLUDED.status) > koinonia_status_rank(p.status)
)
SELECT k.provider_message_id,
       k.known,
       EXISTS (SELECT 1 FROM applied AS a WHERE a.provider_message_id = k.provider_message_id)
           AS applied
FROM known AS k
"""
)

# Rank of each status a report can carry (koinonia_status_rank), to pick one report per id.
RANKS = {"sent": 2, "delivered": 3, "undelivered": 3, "failed": 3}

# Pending reports whose provider id a recipient now carries: applied (forward only, with the
# same re-queue and opt-out rules as a report stored directly) and removed, in one statement.
# The dispatcher applies pending reports when it writes a send back, and the per-id locks make
# sure it sees every report parked before it (see _LOCK_IDS); this periodic sweep is the safety
# net for anything else (a write-back that failed after its send, a row fixed by hand).
_APPLY_MATCHED = """
WITH matched AS (
    DELETE FROM pending_status_reports AS p
    USING message_recipients AS r
    WHERE r.provider_message_id = p.provider_message_id {only_ids}
    RETURNING p.provider_message_id, p.status, p.error_code, p.error_text, p.retry, p.opt_out
),
applied AS (
    UPDATE message_recipients AS r
    SET status = CASE WHEN {requeue} THEN 'queued' ELSE m.status END,
        provider_message_id = CASE WHEN {requeue} THEN NULL ELSE r.provider_message_id END,
        next_attempt_at = CASE WHEN {requeue} THEN now() + {backoff}
                               ELSE r.next_attempt_at END,
        delivered_at = CASE WHEN m.status = 'delivered'
                            THEN coalesce(r.delivered_at, now()) ELSE r.delivered_at END,
        error_code = CASE WHEN m.status IN ('undelivered', 'failed')
                          THEN m.error_code ELSE r.error_code END,
        error_text = CASE WHEN m.status IN ('undelivered', 'failed')
                          THEN m.error_text ELSE r.error_text END,
        updated_at = now()
    FROM matched AS m
    WHERE r.provider_message_id = m.provider_message_id
      AND koinonia_status_rank(m.status) > koinonia_status_rank(r.status)
    RETURNING r.member_id, m.opt_out
),
opted AS (
    UPDATE members AS mem
    SET consent = 'opted_out', consent_changed_at = now(), consent_source = 'carrier'
    FROM applied AS a
    WHERE a.opt_out AND mem.id = a.member_id AND mem.consent <> 'opted_out'
)
SELECT (SELECT count(*) FROM applied)
"""
_SWEEP_PARTS = {
    "requeue": _REQUEUE.format(report="m"),
    "backoff": BACKOFF_SQL.format(attempts="r.attempts"),
}
_APPLY_MATCHED_ALL = text(_APPLY_MATCHED.format(only_ids="", **_SWEEP_PARTS))
_APPLY_MATCHED_IDS = text(
    _APPLY_MATCHED.format(
        only_ids="AND p.provider_message_id = ANY(CAST(:ids AS varchar[]))", **_SWEEP_PARTS
    )
)

_PURGE_STALE = text(
    "DELETE FROM pending_status_reports WHERE received_at < now() - CAST(:age AS interval)"
)


class DeliveryReportRepository:
    """Delivery reports, across all churches, keyed by the provider's message id."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_delivery_reports(
        self, reports: Sequence[DeliveryReport], retry: RetryPolicy | None = None
    ) -> list[ReportOutcome | None]:
        """Store reports in two statements, whatever their number (lock their ids, then store):
        move each recipient forward (or back to the queue: a temporary failure with attempts
        left under `retry`, default the process settings), or keep the report pending. Returns
        each report's outcome, in order; None for a report whose provider id is being written
        back at this moment (nothing stored for it: store it again shortly).

        Several reports for one id: the highest-ranked (the first of equals) is stored, as if
        they had come one by one; the others are `stale` (superseded), or `pending` with it."""
        if not reports:
            return []
        winners: dict[str, DeliveryReport] = {}
        for report in reports:
            best = winners.get(report.provider_message_id)
            if best is None or RANKS[report.status] > RANKS[best.status]:
                winners[report.provider_message_id] = report
        held = set((await self.session.execute(_LOCK_IDS, {"ids": sorted(winners)})).scalar_one())
        chosen = [winners[i] for i in sorted(held)]
        by_id: dict[str, ReportOutcome] = {}
        if chosen:
            policy = retry or RetryPolicy.from_settings(get_settings())
            rows = (
                await self.session.execute(
                    _RECORD_REPORTS,
                    {
                        "ids": [r.provider_message_id for r in chosen],
                        "statuses": [r.status for r in chosen],
                        "error_codes": [r.error_code for r in chosen],
                        "error_texts": [r.error_text for r in chosen],
                        "retries": [r.retry for r in chosen],
                        "opt_outs": [r.opt_out for r in chosen],
                        **policy.params(),
                    },
                )
            ).all()
            by_id = {
                row.provider_message_id: ReportOutcome.APPLIED
                if row.applied
                else (ReportOutcome.STALE if row.known else ReportOutcome.PENDING)
                for row in rows
            }
        # A report that lost to another for its id is stale (superseded), or pending with it.
        return [
            None
            if outcome is None
            else outcome
            if r is winners[r.provider_message_id] or outcome is ReportOutcome.PENDING
            else ReportOutcome.STALE
            for r in reports
            for outcome in (by_id.get(r.provider_message_id),)
        ]

    async def apply_matched_pending_reports(
        self, provider_ids: Sequence[str] | None = None, retry: RetryPolicy | None = None
    ) -> int:
        """Apply and delete the pending reports a recipient now matches (all, or only these
        provider ids); returns how many recipients moved forward. One statement."""
        params = (retry or RetryPolicy.from_settings(get_settings())).params()
        if provider_ids is None:
            result = await self.session.execute(_APPLY_MATCHED_ALL, params)
        else:
            result = await self.session.execute(
                _APPLY_MATCHED_IDS, {"ids": list(provider_ids), **params}
            )
        return int(result.scalar_one())


async def purge_stale_pending_reports(
    session: AsyncSession, older_than: timedelta = timedelta(days=1)
) -> int:
    """Delete pending reports received more than `older_than` ago (ids nobody recorded a send
    for: another account's traffic, or sends lost before write-back). Returns how many.

    Run periodically by the worker, after `apply_matched_pending_reports`, in its own job
    session (the caller commits)."""
    result = await session.execute(_PURGE_STALE, {"age": older_than})
    return int(result.rowcount)  # type: ignore[attr-defined]
