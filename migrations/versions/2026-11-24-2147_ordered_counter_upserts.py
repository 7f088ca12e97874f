"""ordered counter upserts

Revision ID: c56d24f39e9d
Revises: 96f43b3fb4ac
Create Date: 2026-11-24 21:47:00.742866
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c56d24f39e9d"
down_revision: str | None = "96f43b3fb4ac"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Same counters as "message status counters", with the upserts in a fixed (message, status)
# order: two statements touching the same counter rows (a webhook and a worker's write-back)
# then lock them in the same order and cannot deadlock.
ORDERED = [
    """
CREATE OR REPLACE FUNCTION koinonia_count_recipient_inserts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_status_counts AS c (message_id, status, shard, n)
    SELECT message_id, status, pg_backend_pid() % 16, count(*)
    FROM new_rows GROUP BY message_id, status
    ORDER BY message_id, status
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
    ORDER BY message_id, status
    ON CONFLICT (message_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$
""",
]


def upgrade() -> None:
    for ddl in ORDERED:
        op.execute(ddl)


def downgrade() -> None:
    # The unordered versions are equivalent in result; keeping the ordered ones is harmless.
    pass
