"""recipients without message fk

Revision ID: 03b791aecfde
Revises: c56d24f39e9d
Create Date: 2026-11-24 21:50:21.102594
"""

from collections.abc import Sequence

from alembic import op

revision: str = "03b791aecfde"
down_revision: str | None = "c56d24f39e9d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


CASCADE_FUNCTION = """
CREATE OR REPLACE FUNCTION koinonia_delete_message_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM message_recipients r USING old_rows o WHERE r.message_id = o.id;
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    # See models/message.py: the per-row FK check cost more than the insert it guarded.
    op.drop_constraint(
        "fk_message_recipients_message_id_messages", "message_recipients", type_="foreignkey"
    )
    op.execute(CASCADE_FUNCTION)
    op.execute(
        "CREATE TRIGGER messages_delete_recipients AFTER DELETE ON messages"
        " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
        " EXECUTE FUNCTION koinonia_delete_message_recipients()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS messages_delete_recipients ON messages")
    op.execute("DROP FUNCTION IF EXISTS koinonia_delete_message_recipients()")
    op.create_foreign_key(
        "fk_message_recipients_message_id_messages",
        "message_recipients",
        "messages",
        ["message_id"],
        ["id"],
        ondelete="CASCADE",
    )
