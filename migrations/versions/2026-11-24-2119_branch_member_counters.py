"""branch member counters (superseded)

Held the first drafts of the branch member counters while they were written; databases were
migrated through it in several of those states. The work now lives in revision 03df59dbeaab
("branch member counters v2"), written to bring every such database to one state. Kept, empty,
because later revisions chain on it.

Revision ID: 4d80d89839e4
Revises: 40c3f6675df4
Create Date: 2026-11-24 21:19:04.884662
"""

from collections.abc import Sequence

revision: str = "4d80d89839e4"
down_revision: str | None = "40c3f6675df4"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
