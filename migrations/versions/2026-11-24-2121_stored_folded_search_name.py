"""stored folded search name

Revision ID: 96f43b3fb4ac
Revises: 4d80d89839e4
Create Date: 2026-11-24 21:21:41.007081
"""

from collections.abc import Sequence

from alembic import op

revision: str = "96f43b3fb4ac"
down_revision: str | None = "4d80d89839e4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE members ADD COLUMN search_name text GENERATED ALWAYS AS"
        " (koinonia_fold(first_name || ' ' || last_name)) STORED"
    )
    op.execute("DROP INDEX IF EXISTS ix_members_name_trgm")
    op.execute(
        "CREATE INDEX ix_members_name_trgm ON members USING gin (church_id, search_name gin_trgm_ops)"
    )
    # Short (1–2 character) searches match name prefixes through this btree.
    op.execute(
        "CREATE INDEX ix_members_search_prefix ON members (church_id, search_name text_pattern_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_members_search_prefix")
    op.execute("DROP INDEX IF EXISTS ix_members_name_trgm")
    op.execute("ALTER TABLE members DROP COLUMN search_name")
    op.execute(
        "CREATE INDEX ix_members_name_trgm ON members USING gin"
        " (church_id, koinonia_fold(first_name || ' ' || last_name) gin_trgm_ops)"
    )
