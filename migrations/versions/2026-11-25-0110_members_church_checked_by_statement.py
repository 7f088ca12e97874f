"""members church checked by statement: the foreign key to churches replaced by triggers

Inserting an import's 100,000 members ran the church foreign key's lookup-and-lock once per row:
~270 ms of a ~2 s insert (EXPLAIN ANALYZE at L), to check the one church that the importer had
already locked. The same guarantees, set-based:

- Insert: the churches of the statement's rows are locked FOR KEY SHARE (the foreign key's lock;
  a concurrent delete of the church waits for this transaction and its cascade then sees these
  members; a delete committed first leaves nothing to lock) and must all exist, else
  foreign_key_violation (23503) as before.
- Update of church_id (nothing does it today): checked per row, only when it changes, so
  ordinary updates of members pay nothing.
- Delete of a church: a statement-level trigger deletes its members (ON DELETE CASCADE before);
  their memberships and conversations go with them as before.

Like the memberships' triggers (previous migration), this relies on READ COMMITTED.

Revision ID: 2b7e9d4f6a18
Revises: 8a4d2c6e1f37
Create Date: 2026-11-25 01:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "2b7e9d4f6a18"
down_revision: str | None = "8a4d2c6e1f37"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION koinonia_members_check_church_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_found bigint;
    v_wanted bigint;
BEGIN
    SELECT count(*) INTO v_found FROM (
        SELECT 1 FROM churches WHERE id IN (SELECT church_id FROM new_rows) FOR KEY SHARE) s;
    SELECT count(*) INTO v_wanted FROM (SELECT DISTINCT church_id FROM new_rows) s;
    IF v_found <> v_wanted THEN
        RAISE EXCEPTION 'members: % of % churches do not exist', v_wanted - v_found, v_wanted
            USING ERRCODE = 'foreign_key_violation', TABLE = 'members',
                  CONSTRAINT = 'members_church_checked';
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION koinonia_members_check_church_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM 1 FROM churches WHERE id = NEW.church_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'members: church % does not exist', NEW.church_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'members',
                  CONSTRAINT = 'members_church_checked';
    END IF;
    RETURN NULL;
END $$
""",
    """
CREATE OR REPLACE FUNCTION koinonia_delete_members_of_churches() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM members m USING old_rows o WHERE m.church_id = o.id;
    RETURN NULL;
END $$
""",
]

TRIGGERS = [
    "CREATE TRIGGER members_check_church_insert AFTER INSERT ON members"
    " REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION koinonia_members_check_church_insert()",
    "CREATE TRIGGER members_check_church_update AFTER UPDATE OF church_id ON members"
    " FOR EACH ROW WHEN (OLD.church_id IS DISTINCT FROM NEW.church_id)"
    " EXECUTE FUNCTION koinonia_members_check_church_update()",
    "CREATE TRIGGER churches_delete_members AFTER DELETE ON churches"
    " REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT"
    " EXECUTE FUNCTION koinonia_delete_members_of_churches()",
]

DROP_TRIGGERS = [
    "DROP TRIGGER IF EXISTS churches_delete_members ON churches",
    "DROP TRIGGER IF EXISTS members_check_church_update ON members",
    "DROP TRIGGER IF EXISTS members_check_church_insert ON members",
]

DROP_FUNCTIONS = [
    "koinonia_delete_members_of_churches()",
    "koinonia_members_check_church_update()",
    "koinonia_members_check_church_insert()",
]


def upgrade() -> None:
    op.drop_constraint("fk_members_church_id_churches", "members", type_="foreignkey")
    for ddl in FUNCTIONS:
        op.execute(ddl)
    for ddl in TRIGGERS:
        op.execute(ddl)


def downgrade() -> None:
    for ddl in DROP_TRIGGERS:
        op.execute(ddl)
    for fn in DROP_FUNCTIONS:
        op.execute(f"DROP FUNCTION IF EXISTS {fn}")
    op.create_foreign_key(
        "fk_members_church_id_churches",
        "members",
        "churches",
        ["church_id"],
        ["id"],
        ondelete="CASCADE",
    )
