"""search indexes lead with church

Revision ID: 8bf59f6cb82d
Revises: bd21dc6801b6
Create Date: 2026-11-24 21:11:55.472074
"""

from collections.abc import Sequence

from alembic import op

revision: str = "8bf59f6cb82d"
down_revision: str | None = "bd21dc6801b6"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public")
    op.execute("DROP INDEX IF EXISTS ix_members_name_trgm")
    op.execute("DROP INDEX IF EXISTS ix_members_phone_trgm")
    op.execute(
        "CREATE INDEX ix_members_name_trgm ON members USING gin"
        " (church_id, koinonia_fold(first_name || ' ' || last_name) gin_trgm_ops)"
    )
    op.execute(
        "CREATE INDEX ix_members_phone_trgm ON members USING gin (church_id, phone gin_trgm_ops)"
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_members_name_trgm")
    op.execute("DROP INDEX IF EXISTS ix_members_phone_trgm")
    op.execute(
        "CREATE INDEX ix_members_name_trgm ON members USING gin"
        " (koinonia_fold(first_name || ' ' || last_name) gin_trgm_ops)"
    )
    op.execute("CREATE INDEX ix_members_phone_trgm ON members USING gin (phone gin_trgm_ops)")
