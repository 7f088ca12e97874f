"""message status counters

Revision ID: d77aa882386d
Revises: 61c797383feb
Create Date: 2026-11-24 20:59:30.551286
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d77aa882386d"
down_revision: str | None = "61c797383feb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Statement-level: one upsert per (message, status) a statement touches, whatever its size.
# Recipients are only ever deleted with their message (the counts cascade with it), so there is
# no delete trigger.
COUNT_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION koinonia_count_recipient_inserts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_status_counts AS c (message_id, status, shard, n)
    SELECT message_id, status, pg_backend_pid() % 16, count(*)
    FROM new_rows GROUP BY message_id, status
    ON CONFLICT (message_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION koinonia_count_recipient_updates() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_status_counts AS c (message_id, status, shard, n)
    SELECT message_id, status, pg_backend_pid() % 16, sum(delta)
    FROM (
        SELECT o.message_id, o.status, -1 AS delta
        FROM old_rows o JOIN new_rows n USING (message_id, member_id)
        WHERE o.status <> n.status
        UNION ALL
        SELECT n.message_id, n.status, 1
        FROM old_rows o JOIN new_rows n USING (message_id, member_id)
        WHERE o.status <> n.status
    ) AS changes
    GROUP BY message_id, status
    HAVING sum(delta) <> 0
    ON CONFLICT (message_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$
""",
]


def upgrade() -> None:
    op.create_table(
        "message_status_counts",
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_status_counts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "message_id", "status", "shard", name=op.f("pk_message_status_counts")
        ),
    )
    for ddl in COUNT_FUNCTIONS:
        op.execute(ddl)
    op.execute(
        "CREATE TRIGGER message_recipients_count_insert AFTER INSERT ON message_recipients"
        " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION koinonia_count_recipient_inserts()"
    )
    op.execute(
        "CREATE TRIGGER message_recipients_count_update AFTER UPDATE ON message_recipients"
        " REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION koinonia_count_recipient_updates()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS message_recipients_count_update ON message_recipients")
    op.execute("DROP TRIGGER IF EXISTS message_recipients_count_insert ON message_recipients")
    op.execute("DROP FUNCTION IF EXISTS koinonia_count_recipient_updates()")
    op.execute("DROP FUNCTION IF EXISTS koinonia_count_recipient_inserts()")
    op.drop_table("message_status_counts")
