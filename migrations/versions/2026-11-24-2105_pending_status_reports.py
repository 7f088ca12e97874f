"""pending status reports

Revision ID: bd21dc6801b6
Revises: d77aa882386d
Create Date: 2026-11-24 21:05:10.382255
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "bd21dc6801b6"
down_revision: str | None = "d77aa882386d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Delivery statuses only move forward: queued 0 → sending 1 → sent 2 → final 3
# (delivered / undelivered / failed / skipped). Unknown statuses rank lowest.
RANK_FUNCTION = """
CREATE OR REPLACE FUNCTION koinonia_status_rank(text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE $1
        WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
        WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3 WHEN 'failed' THEN 3
        WHEN 'skipped' THEN 3 ELSE -1 END
$$
"""


def upgrade() -> None:
    op.execute(RANK_FUNCTION)
    op.create_table(
        "pending_status_reports",
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("provider_message_id", name=op.f("pk_pending_status_reports")),
    )


def downgrade() -> None:
    op.drop_table("pending_status_reports")
    op.execute("DROP FUNCTION IF EXISTS koinonia_status_rank(text)")
