"""search tier indexes: index-ordered name-prefix and last-name-prefix scans

A search page is ranked tier by tier (full name starts with q, last name starts with q, q
anywhere), each tier ordered by the folded name in byte order then id, so the first tiers are
read straight off these btrees with LIMIT: a page costs O(page), not O(matches). The old prefix
index (text_pattern_ops, no id) could answer the prefix but not the order.

Revision ID: 5e1c0a7d2b90
Revises: 03df59dbeaab
Create Date: 2026-11-25 00:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5e1c0a7d2b90"
down_revision: str | None = "03df59dbeaab"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_members_search_prefix")
    op.execute(
        'CREATE INDEX ix_members_search_prefix ON members (church_id, (search_name COLLATE "C"), id)'
    )
    op.execute(
        "CREATE INDEX ix_members_last_first_prefix ON members"
        " (church_id, (koinonia_fold(last_name || ' ' || first_name) COLLATE \"C\"), id)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_members_last_first_prefix")
    op.execute("DROP INDEX IF EXISTS ix_members_search_prefix")
    op.execute(
        "CREATE INDEX ix_members_search_prefix ON members (church_id, search_name text_pattern_ops)"
    )
