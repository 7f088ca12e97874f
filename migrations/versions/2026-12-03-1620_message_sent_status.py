"""message status `sent`: all texts handed over, delivery reports still awaited

`completed` used to be set as soon as no text was left to hand to the provider, while many
still awaited their delivery report. A message is now `sent` then, and `completed` when every
text is final or its reports are overdue (koinonia.delivery.repository). `sent_at` records when
the message became `sent` (the report wait counts from it); the partial index keeps the sweep
that completes messages to the few in `sent`.

Revision ID: 4e8b2c7d1a90
Revises: 4e8a1c2d9b37
Create Date: 2026-12-03 16:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "4e8b2c7d1a90"
down_revision: str | None = "4e8a1c2d9b37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint(
        op.f("ck_messages_status"),
        "messages",
        "status IN ('scheduled', 'queued', 'sending', 'sent', 'completed', 'cancelled')",
    )
    op.add_column("messages", sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_messages_sent", "messages", ["id"], postgresql_where=sa.text("status = 'sent'")
    )


def downgrade() -> None:
    op.drop_index("ix_messages_sent", table_name="messages")
    op.drop_column("messages", "sent_at")
    op.execute("UPDATE messages SET status = 'completed' WHERE status = 'sent'")
    op.drop_constraint(op.f("ck_messages_status"), "messages", type_="check")
    op.create_check_constraint(
        op.f("ck_messages_status"),
        "messages",
        "status IN ('scheduled', 'queued', 'sending', 'completed', 'cancelled')",
    )
