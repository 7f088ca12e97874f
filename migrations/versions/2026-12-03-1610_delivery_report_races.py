"""delivery reports: per-id locks against the write-back race; retry and opt-out flags

A delivery report and the dispatcher's write-back of the same send can commit in either order.
Each ran one READ COMMITTED statement that could not see the other's uncommitted work: the report
parked itself (no recipient carried the id yet) while the write-back, working from its own
snapshot, folded in an older parked report and then deleted the newer one (its DELETE re-checked
only the join on the provider id when it met the row a concurrent report had upgraded). Both
now take a transaction-scoped advisory lock per provider id before the statement that reads:
the write-back waits for its locks (in hash order, so write-backs cannot deadlock), a batch of
reports only tries them and leaves the ids being written back for its next batch, so one
write-back in progress never holds up the reports of other texts. Whoever holds the lock of an
id second sees the work of the first.

Parked reports also keep whether the carrier's code is a temporary failure (the text is
re-queued when its send is written back) or an opt-out (the member is opted out then).

Revision ID: 4e8a1c2d9b37
Revises: 7c3f5a9e2d14
Create Date: 2026-12-03 16:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "4e8a1c2d9b37"
down_revision: str | None = "7c3f5a9e2d14"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# 'KPRI': the advisory-lock namespace of writers of delivery reports by provider id.
LOCK_NAMESPACE = 1263555145

LOCK_FUNCTIONS = [
    # The write-back: waits for each lock (in hash order, so two write-backs cannot deadlock).
    f"""
CREATE OR REPLACE FUNCTION koinonia_lock_provider_ids(p_ids varchar[]) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock({LOCK_NAMESPACE}, h))
    FROM (SELECT DISTINCT hashtext(i) AS h FROM unnest(p_ids) AS i WHERE i IS NOT NULL
          ORDER BY 1) AS s
$$
""",
    # A batch of reports: never waits; returns the ids it holds, the others are being written
    # back right now and are stored in a later batch (webhooks.batching).
    f"""
CREATE OR REPLACE FUNCTION koinonia_try_lock_provider_ids(p_ids varchar[]) RETURNS varchar[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(i), '{{}}')
    FROM unnest(p_ids) AS i
    WHERE pg_try_advisory_xact_lock({LOCK_NAMESPACE}, hashtext(i))
$$
""",
]


def upgrade() -> None:
    for function in LOCK_FUNCTIONS:
        op.execute(function)
    op.execute(
        "ALTER TABLE pending_status_reports"
        " ADD COLUMN retry boolean NOT NULL DEFAULT false,"
        " ADD COLUMN opt_out boolean NOT NULL DEFAULT false"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE pending_status_reports DROP COLUMN retry, DROP COLUMN opt_out")
    op.execute("DROP FUNCTION IF EXISTS koinonia_try_lock_provider_ids(varchar[])")
    op.execute("DROP FUNCTION IF EXISTS koinonia_lock_provider_ids(varchar[])")
