"""All SQL of the provider webhooks.

Webhooks are cross-church by nature: a delivery report names a provider message id, never a
church, so these queries are keyed by provider id and named so (DESIGN §4). They load no ORM
objects; each report is one statement. Counts in message_status_counts follow through the
statement-level triggers on message_recipients.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.webhooks.schemas import DeliveryReport, ReportOutcome

# One statement per report (READ COMMITTED, one snapshot for all parts):
#   applied: move the recipient with this provider id forward, only if the new status ranks
#            higher (koinonia_status_rank: queued 0, sending 1, sent 2, final 3), so a late
#            'sent' after 'delivered', or a duplicate, changes nothing. Concurrent reports for one
#            recipient serialise on its row lock and Postgres re-checks the rank on the latest
#            version, so the higher status always wins.
#   pending: no recipient carries this provider id yet (the carrier answered before the
#            dispatcher wrote the send back, or an id we never sent): keep the report, upserted
#            so the pending row holds the highest-ranked status seen.
#   known:   whether a recipient has the id: decides pending, and tells "stale" from "pending".
# Every comparison is against the bound parameter itself (not a join column), so both lookups
# are index scans on the partial unique index uq_message_recipients_provider_id.
_RECORD_REPORT = text(
    """
WITH known AS (
    SELECT EXISTS (
        SELECT 1 FROM message_recipients
        WHERE provider_message_id = CAST(:provider_message_id AS varchar)
    ) AS known
),
applied AS (
    UPDATE message_recipients AS r
    SET status = CAST(:status AS varchar),
        delivered_at = CASE WHEN CAST(:status AS varchar) = 'delivered'
                            THEN coalesce(r.delivered_at, now()) ELSE r.delivered_at END,
        error_code = CASE WHEN CAST(:status AS varchar) IN ('undelivered', 'failed')
                          THEN CAST(:error_code AS varchar) ELSE r.error_code END,
        error_text = CASE WHEN CAST(:status AS varchar) IN ('undelivered', 'failed')
                          THEN CAST(:error_text AS text) ELSE r.error_text END,
        updated_at = now()
    WHERE r.provider_message_id = CAST(:provider_message_id AS varchar)
      AND koinonia_status_rank(CAST(:status AS varchar)) > koinonia_status_rank(r.status)
    RETURNING r.message_id
),
pending AS (
    INSERT INTO pending_status_reports AS p (provider_message_id, status, error_code, error_text)
    SELECT CAST(:provider_message_id AS varchar), CAST(:status AS varchar),
           CAST(:error_code AS varchar), CAST(:error_text AS text)
    FROM known WHERE NOT known.known
    ON CONFLICT (provider_message_id) DO UPDATE
    SET status = EXCLUDED.status,
        error_code = EXCLUDED.error_code,
        error_text = EXCLUDED.error_text,
        received_at = now()
    WHERE koinonia_status_rank(EXCLUDED.status) > koinonia_status_rank(p.status)
    RETURNING 1
)
SELECT (SELECT count(*) FROM applied) AS applied,
       (SELECT count(*) FROM pending) AS pending,
       known.known
FROM known
"""
)

# Pending reports whose provider id a recipient now carries: applied (forward only) and removed,
# in one statement. The dispatcher applies pending reports when it writes a send back; this is
# the safety net for the one race a single statement cannot close (a report whose snapshot
# predates the write-back's commit lands in pending just after the dispatcher looked there).
_APPLY_MATCHED = """
WITH matched AS (
    DELETE FROM pending_status_reports AS p
    USING message_recipients AS r
    WHERE r.provider_message_id = p.provider_message_id {only_ids}
    RETURNING p.provider_message_id, p.status, p.error_code, p.error_text
),
applied AS (
    UPDATE message_recipients AS r
    SET status = m.status,
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
    RETURNING 1
)
SELECT (SELECT count(*) FROM applied)
"""
_APPLY_MATCHED_ALL = text(_APPLY_MATCHED.format(only_ids=""))
_APPLY_MATCHED_IDS = text(
    _APPLY_MATCHED.format(only_ids="AND p.provider_message_id = ANY(CAST(:ids AS varchar[]))")
)

_PURGE_STALE = text(
    "DELETE FROM pending_status_reports WHERE received_at < now() - CAST(:age AS interval)"
)


class DeliveryReportRepository:
    """Delivery reports, across all churches, keyed by the provider's message id."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def record_delivery_report_by_provider_id(self, report: DeliveryReport) -> ReportOutcome:
        """Store one report in one statement: move the recipient forward, or keep it pending."""
        row = (
            await self.session.execute(
                _RECORD_REPORT,
                {
                    "provider_message_id": report.provider_message_id,
                    "status": report.status,
                    "error_code": report.error_code,
                    "error_text": report.error_text,
                },
            )
        ).one()
        if row.applied:
            return ReportOutcome.APPLIED
        return ReportOutcome.STALE if row.known else ReportOutcome.PENDING

    async def apply_matched_pending_reports(self, provider_ids: Sequence[str] | None = None) -> int:
        """Apply and delete the pending reports a recipient now matches (all, or only these
        provider ids); returns how many recipients moved forward. One statement."""
        if provider_ids is None:
            result = await self.session.execute(_APPLY_MATCHED_ALL)
        else:
            result = await self.session.execute(_APPLY_MATCHED_IDS, {"ids": list(provider_ids)})
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
