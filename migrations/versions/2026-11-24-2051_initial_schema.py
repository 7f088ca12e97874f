"""initial schema

Revision ID: 61c797383feb
Revises:
Create Date: 2026-11-24 20:51:47.644492
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "61c797383feb"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Search folds case and accents; the index needs an IMMUTABLE function, and unaccent() alone is
# only STABLE (its dictionary could change), so we pin the dictionary and declare it immutable.
FOLD_FUNCTION = """
CREATE OR REPLACE FUNCTION koinonia_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$
"""


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    op.execute(FOLD_FUNCTION)
    op.create_table(
        "churches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("contact_email", sa.String(length=320), nullable=False),
        sa.Column(
            "timezone", sa.String(length=64), server_default="America/New_York", nullable=False
        ),
        sa.Column("sms_number", sa.String(length=20), nullable=True),
        sa.Column("sms_provider", sa.String(length=16), server_default="sandbox", nullable=False),
        sa.Column("plan", sa.String(length=16), server_default="starter", nullable=False),
        sa.Column(
            "subscription_status", sa.String(length=16), server_default="trial", nullable=False
        ),
        sa.Column("trial_ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "conversation_mode", sa.String(length=16), server_default="group_chat", nullable=False
        ),
        sa.Column("quiet_hours_start", sa.Time(), nullable=True),
        sa.Column("quiet_hours_end", sa.Time(), nullable=True),
        sa.Column("unknown_sender_reply", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "conversation_mode IN ('group_chat', 'inbox')", name=op.f("ck_churches_mode")
        ),
        sa.CheckConstraint("plan IN ('starter', 'growth', 'pro')", name=op.f("ck_churches_plan")),
        sa.CheckConstraint(
            "sms_provider IN ('sandbox', 'twilio', 'telnyx')", name=op.f("ck_churches_provider")
        ),
        sa.CheckConstraint(
            "subscription_status IN ('trial', 'active', 'past_due', 'cancelled')",
            name=op.f("ck_churches_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_churches")),
        sa.UniqueConstraint("sms_number", name=op.f("uq_churches_sms_number")),
    )
    op.create_table(
        "admins",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), server_default="", nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("must_change_password", sa.Boolean(), server_default="false", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("role IN ('PRIMARY', 'CO_ADMIN')", name=op.f("ck_admins_role")),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_admins_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admins")),
    )
    op.create_index(op.f("ix_admins_church_id"), "admins", ["church_id"], unique=False)
    op.create_index(
        "uq_admins_email_lower", "admins", [sa.literal_column("lower(email)")], unique=True
    )
    op.create_table(
        "branches",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("address", sa.String(length=500), nullable=True),
        sa.Column("phone", sa.String(length=20), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_branches_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branches")),
        sa.UniqueConstraint("church_id", "name", name=op.f("uq_branches_church_id_name")),
    )
    op.create_index(op.f("ix_branches_church_id"), "branches", ["church_id"], unique=False)
    op.create_table(
        "members",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("first_name", sa.String(length=100), nullable=False),
        sa.Column("last_name", sa.String(length=100), server_default="", nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("consent", sa.String(length=16), server_default="opted_in", nullable=False),
        sa.Column("consent_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("consent_source", sa.String(length=32), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint("consent IN ('opted_in', 'opted_out')", name=op.f("ck_members_consent")),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_members_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("church_id", "phone", name=op.f("uq_members_church_id_phone")),
    )
    op.create_index(op.f("ix_members_church_id"), "members", ["church_id"], unique=False)
    op.create_index(
        "ix_members_name_trgm",
        "members",
        [sa.literal_column("koinonia_fold(first_name || ' ' || last_name) gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_members_phone_trgm",
        "members",
        [sa.literal_column("phone gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_table(
        "templates",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("usage_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "category IN ('service_reminder', 'event', 'prayer', 'thank_you', 'welcome', 'offering')",
            name=op.f("ck_templates_category"),
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_templates_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_templates")),
        sa.UniqueConstraint("church_id", "name", name=op.f("uq_templates_church_id_name")),
    )
    op.create_index(op.f("ix_templates_church_id"), "templates", ["church_id"], unique=False)
    op.create_table(
        "usage",
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("month", sa.Date(), nullable=False),
        sa.Column("texts", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("segments", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_usage_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("church_id", "month", name=op.f("pk_usage")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("admin_id", sa.BigInteger(), nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("current_refresh_jti", sa.UUID(as_uuid=False), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=32), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["admin_id"],
            ["admins.id"],
            name=op.f("fk_auth_sessions_admin_id_admins"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_auth_sessions_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    op.create_index(op.f("ix_auth_sessions_admin_id"), "auth_sessions", ["admin_id"], unique=False)
    op.create_index(
        op.f("ix_auth_sessions_church_id"), "auth_sessions", ["church_id"], unique=False
    )
    op.create_table(
        "conversations",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("unread_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column(
            "last_message_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('open', 'closed', 'archived')", name=op.f("ck_conversations_status")
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_conversations_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_conversations_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversations")),
        sa.UniqueConstraint(
            "church_id", "member_id", name=op.f("uq_conversations_church_id_member_id")
        ),
    )
    op.create_index(
        op.f("ix_conversations_church_id"), "conversations", ["church_id"], unique=False
    )
    op.create_index(
        "ix_conversations_church_last",
        "conversations",
        ["church_id", sa.literal_column("last_message_at DESC"), "id"],
        unique=False,
    )
    op.create_table(
        "groups",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("branch_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("welcome_enabled", sa.Boolean(), server_default="false", nullable=False),
        sa.Column("welcome_text", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["branch_id"],
            ["branches.id"],
            name=op.f("fk_groups_branch_id_branches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_groups_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_groups")),
        sa.UniqueConstraint("branch_id", "name", name=op.f("uq_groups_branch_id_name")),
    )
    op.create_index(op.f("ix_groups_branch_id"), "groups", ["branch_id"], unique=False)
    op.create_index(op.f("ix_groups_church_id"), "groups", ["church_id"], unique=False)
    op.create_table(
        "recurring_messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("target_ids", sa.ARRAY(sa.BigInteger()), server_default="{}", nullable=False),
        sa.Column("frequency", sa.String(length=16), nullable=False),
        sa.Column("day_of_week", sa.SmallInteger(), nullable=True),
        sa.Column("day_of_month", sa.SmallInteger(), nullable=True),
        sa.Column("time_of_day", sa.Time(), nullable=False),
        sa.Column("next_send_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default="true", nullable=False),
        sa.Column("last_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "frequency IN ('daily', 'weekly', 'monthly')",
            name=op.f("ck_recurring_messages_frequency"),
        ),
        sa.CheckConstraint(
            "target_type IN ('all', 'branches', 'groups', 'members')",
            name=op.f("ck_recurring_messages_target"),
        ),
        sa.CheckConstraint(
            "day_of_month BETWEEN 1 AND 31", name=op.f("ck_recurring_messages_day_of_month")
        ),
        sa.CheckConstraint(
            "day_of_week BETWEEN 0 AND 6", name=op.f("ck_recurring_messages_day_of_week")
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_recurring_messages_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["admins.id"],
            name=op.f("fk_recurring_messages_created_by_admins"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recurring_messages")),
    )
    op.create_index(
        "ix_recurring_due",
        "recurring_messages",
        ["next_send_at"],
        unique=False,
        postgresql_where=sa.text("is_active"),
    )
    op.create_index(
        op.f("ix_recurring_messages_church_id"), "recurring_messages", ["church_id"], unique=False
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column(
            "joined_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("welcome_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("welcome_sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_group_members_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["group_id"],
            ["groups.id"],
            name=op.f("fk_group_members_group_id_groups"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["member_id"],
            ["members.id"],
            name=op.f("fk_group_members_member_id_members"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("group_id", "member_id", name=op.f("pk_group_members")),
    )
    op.create_index("ix_group_members_member_id", "group_members", ["member_id"], unique=False)
    op.create_index(
        "ix_group_members_welcome_due",
        "group_members",
        ["welcome_due_at"],
        unique=False,
        postgresql_where=sa.text("welcome_due_at IS NOT NULL AND welcome_sent_at IS NULL"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_type", sa.String(length=16), nullable=False),
        sa.Column("target_ids", sa.ARRAY(sa.BigInteger()), server_default="{}", nullable=False),
        sa.Column("encoding", sa.String(length=8), nullable=False),
        sa.Column("segments", sa.SmallInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipient_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("skipped_opted_out", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_segments", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("created_by", sa.BigInteger(), nullable=True),
        sa.Column("conversation_id", sa.BigInteger(), nullable=True),
        sa.Column("recurring_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("scheduled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("encoding IN ('GSM-7', 'UCS-2')", name=op.f("ck_messages_encoding")),
        sa.CheckConstraint(
            "kind IN ('broadcast', 'reply', 'recurring', 'welcome', 'relay', 'system')",
            name=op.f("ck_messages_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'queued', 'sending', 'completed', 'cancelled')",
            name=op.f("ck_messages_status"),
        ),
        sa.CheckConstraint(
            "target_type IN ('all', 'branches', 'groups', 'members')",
            name=op.f("ck_messages_target"),
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_messages_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_messages_conversation_id_conversations"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by"],
            ["admins.id"],
            name=op.f("fk_messages_created_by_admins"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["recurring_id"],
            ["recurring_messages.id"],
            name=op.f("fk_messages_recurring_id_recurring_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
    )
    op.create_index(
        "ix_messages_church_created",
        "messages",
        ["church_id", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
        unique=False,
    )
    op.create_index(op.f("ix_messages_church_id"), "messages", ["church_id"], unique=False)
    op.create_index(
        "ix_messages_scheduled_due",
        "messages",
        ["scheduled_at"],
        unique=False,
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.create_table(
        "conversation_messages",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("conversation_id", sa.BigInteger(), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("message_id", sa.BigInteger(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "direction IN ('inbound', 'outbound')", name=op.f("ck_conversation_messages_direction")
        ),
        sa.ForeignKeyConstraint(
            ["church_id"],
            ["churches.id"],
            name=op.f("fk_conversation_messages_church_id_churches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name=op.f("fk_conversation_messages_conversation_id_conversations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_conversation_messages_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conversation_messages")),
    )
    op.create_index(
        op.f("ix_conversation_messages_church_id"),
        "conversation_messages",
        ["church_id"],
        unique=False,
    )
    op.create_index(
        "ix_conversation_messages_thread",
        "conversation_messages",
        ["conversation_id", "id"],
        unique=False,
    )
    op.create_index(
        "uq_conversation_messages_provider_id",
        "conversation_messages",
        ["provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.create_table(
        "message_recipients",
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("member_id", sa.BigInteger(), nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("segments", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="queued", nullable=False),
        sa.Column("provider_message_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.SmallInteger(), server_default="0", nullable=False),
        sa.Column(
            "next_attempt_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=True,
        ),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.CheckConstraint(
            "status IN ('queued', 'sending', 'sent', 'delivered', 'undelivered', 'failed', 'skipped')",
            name=op.f("ck_message_recipients_status"),
        ),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_recipients_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("message_id", "member_id", name=op.f("pk_message_recipients")),
    )
    op.create_index(
        "ix_message_recipients_due",
        "message_recipients",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.create_index(
        "ix_message_recipients_lease",
        "message_recipients",
        ["lease_expires_at"],
        unique=False,
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.create_index(
        "ix_message_recipients_message_status",
        "message_recipients",
        ["message_id", "status"],
        unique=False,
    )
    op.create_index(
        "uq_message_recipients_provider_id",
        "message_recipients",
        ["provider_message_id"],
        unique=True,
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "uq_message_recipients_provider_id",
        table_name="message_recipients",
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.drop_index("ix_message_recipients_message_status", table_name="message_recipients")
    op.drop_index(
        "ix_message_recipients_lease",
        table_name="message_recipients",
        postgresql_where=sa.text("status = 'sending'"),
    )
    op.drop_index(
        "ix_message_recipients_due",
        table_name="message_recipients",
        postgresql_where=sa.text("status = 'queued'"),
    )
    op.drop_table("message_recipients")
    op.drop_index(
        "uq_conversation_messages_provider_id",
        table_name="conversation_messages",
        postgresql_where=sa.text("provider_message_id IS NOT NULL"),
    )
    op.drop_index("ix_conversation_messages_thread", table_name="conversation_messages")
    op.drop_index(op.f("ix_conversation_messages_church_id"), table_name="conversation_messages")
    op.drop_table("conversation_messages")
    op.drop_index(
        "ix_messages_scheduled_due",
        table_name="messages",
        postgresql_where=sa.text("status = 'scheduled'"),
    )
    op.drop_index(op.f("ix_messages_church_id"), table_name="messages")
    op.drop_index("ix_messages_church_created", table_name="messages")
    op.drop_table("messages")
    op.drop_index(
        "ix_group_members_welcome_due",
        table_name="group_members",
        postgresql_where=sa.text("welcome_due_at IS NOT NULL AND welcome_sent_at IS NULL"),
    )
    op.drop_index("ix_group_members_member_id", table_name="group_members")
    op.drop_table("group_members")
    op.drop_index(op.f("ix_recurring_messages_church_id"), table_name="recurring_messages")
    op.drop_index(
        "ix_recurring_due", table_name="recurring_messages", postgresql_where=sa.text("is_active")
    )
    op.drop_table("recurring_messages")
    op.drop_index(op.f("ix_groups_church_id"), table_name="groups")
    op.drop_index(op.f("ix_groups_branch_id"), table_name="groups")
    op.drop_table("groups")
    op.drop_index("ix_conversations_church_last", table_name="conversations")
    op.drop_index(op.f("ix_conversations_church_id"), table_name="conversations")
    op.drop_table("conversations")
    op.drop_index(op.f("ix_auth_sessions_church_id"), table_name="auth_sessions")
    op.drop_index(op.f("ix_auth_sessions_admin_id"), table_name="auth_sessions")
    op.drop_table("auth_sessions")
    op.drop_table("usage")
    op.drop_index(op.f("ix_templates_church_id"), table_name="templates")
    op.drop_table("templates")
    op.drop_index("ix_members_phone_trgm", table_name="members", postgresql_using="gin")
    op.drop_index("ix_members_name_trgm", table_name="members", postgresql_using="gin")
    op.drop_index(op.f("ix_members_church_id"), table_name="members")
    op.drop_table("members")
    op.drop_index(op.f("ix_branches_church_id"), table_name="branches")
    op.drop_table("branches")
    op.drop_index("uq_admins_email_lower", table_name="admins")
    op.drop_index(op.f("ix_admins_church_id"), table_name="admins")
    op.drop_table("admins")
    op.drop_table("churches")
    op.execute("DROP FUNCTION IF EXISTS koinonia_fold(text)")
