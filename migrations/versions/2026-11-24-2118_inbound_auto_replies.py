"""inbound auto replies: at most one automatic reply per church, number, day and reason

Revision ID: 40c3f6675df4
Revises: 8bf59f6cb82d
Create Date: 2026-11-24 21:18:07.094296
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "40c3f6675df4"
down_revision: str | None = "8bf59f6cb82d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "inbound_auto_replies",
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("recipient_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "reason IN ('unknown_sender', 'help', 'stop', 'start')",
            name=op.f("ck_inbound_auto_replies_reason"),
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_inbound_auto_replies_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "church_id", "phone", "day", "reason", name=op.f("pk_inbound_auto_replies")
        ),
    )


def downgrade() -> None:
    op.drop_table("inbound_auto_replies")
