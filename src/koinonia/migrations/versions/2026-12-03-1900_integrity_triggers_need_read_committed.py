"""integrity triggers refuse to run under an isolation level other than READ COMMITTED

The triggers that replace foreign keys and keep the branch member counters are correct only
under READ COMMITTED (src/koinonia/db/sql/read_committed.sql says why). The application's engine
asks for it on every connection; each of those trigger functions now also checks the
transaction's level first, so a transaction at REPEATABLE READ or SERIALIZABLE (psql, a script)
fails (SQLSTATE 25000) instead of leaving rows that point at nothing or miscounting.

Revision ID: 6b0bbe32887a
Revises: 5d2c8e1f7a30
Create Date: 2026-12-03 19:00:00
"""

from collections.abc import Sequence

from alembic import op

from koinonia.db.sql import statements

revision: str = "6b0bbe32887a"
down_revision: str | None = "5d2c8e1f7a30"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def apply(snapshot: str) -> None:
    for statement in statements(snapshot):
        op.execute(statement)


# Snapshots of src/koinonia/db/sql/<name>.sql at this revision. Frozen: never edit them here.

READ_COMMITTED = """
-- The triggers that replace foreign keys (foreign_keys.sql) and keep branch member counts
-- (branch_member_counts.sql) are correct only under READ COMMITTED, where every statement, the
-- ones these triggers run included, takes a fresh snapshot:
--
-- - a cascade (a group's, member's, church's or message's deletion deleting what referenced
--   it) waits for the row locks that inserts of referencing rows hold, then sees those rows,
--   committed meanwhile, and deletes them. Under REPEATABLE READ or SERIALIZABLE it reads the
--   transaction's first snapshot and leaves them behind, pointing at nothing: a real foreign
--   key re-checks with a cross-check snapshot there, these triggers cannot. SERIALIZABLE's
--   conflict detection does not save it either: it tracks only SERIALIZABLE transactions, and
--   the inserts run READ COMMITTED.
-- - the branch counters decide "first (or last) group of this branch" under a per-branch
--   advisory lock, from what the previous holder of the lock committed; an older snapshot
--   does not see it and counts a member twice (or never).
--
-- Every connection the application opens asks for READ COMMITTED (db/engine.py), whatever the
-- database's default_transaction_isolation. This is for everything else (psql, a script, a
-- transaction that asks for another level): each of those triggers calls this first and the
-- statement fails, rather than corrupt the data quietly. READ UNCOMMITTED is READ COMMITTED in
-- PostgreSQL. The message status counters (message_status_counts.sql) need no such check:
-- they only add deltas with upserts, which the stricter levels refuse with a serialization
-- failure rather than lose.
--
-- SQLSTATE 25000 (invalid_transaction_state): not a conflict to retry (db/outage.py), the
-- transaction has to be started again at READ COMMITTED.
CREATE OR REPLACE FUNCTION koinonia_require_read_committed(p_trigger name) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('transaction_isolation') NOT IN ('read committed', 'read uncommitted') THEN
        RAISE EXCEPTION 'trigger % needs READ COMMITTED, this transaction is %',
            p_trigger, upper(current_setting('transaction_isolation'))
            USING ERRCODE = 'invalid_transaction_state',
                  HINT = 'Start it at READ COMMITTED (see koinonia/db/sql/read_committed.sql).';
    END IF;
END $$;
"""

FOREIGN_KEYS = """
-- Foreign keys replaced by statement-level triggers, where their per-row checks cost more than
-- the inserts they guarded:
--
-- - message_recipients.message_id: the per-row check was 60% of inserting a broadcast's
--   recipients (10,000 rows: 127 ms with it, 50 ms without). Recipients are only ever written
--   in the statement that writes their message, so only the delete side is kept;
-- - group_members (group, member, church): an import adds 100,000 memberships in one statement,
--   and their three foreign keys ran one lookup-and-lock per row each, ~0.8 s of the 1.2 s
--   insert (measured at L: 1.18 s with them, 0.44 s without);
-- - members.church_id: ~270 ms of inserting an import's 100,000 members, to check the one church
--   the importer had already locked.
--
-- The same guarantees are kept set-based, once per statement. Inserts lock what they reference
-- FOR KEY SHARE, exactly the lock a foreign key takes, in one pass: a concurrent delete of it
-- waits for this transaction, and its cascade then sees the new rows; a delete committed first
-- leaves the row missing here and the statement fails with foreign_key_violation (23503), as a
-- foreign key would. Updates of the keys are checked row by row, only when a key changes, so
-- ordinary updates pay nothing. Deletes cascade through statement-level triggers (ON DELETE
-- CASCADE before).
--
-- These guarantees hold under READ COMMITTED only: the cascade's DELETE takes a fresh snapshot
-- and sees rows committed while it waited. Every trigger function here checks the transaction's
-- level first (read_committed.sql says why, and what happens otherwise).

-- messages -> message_recipients: a message's deletion deletes its recipients.
CREATE OR REPLACE FUNCTION koinonia_delete_message_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    DELETE FROM message_recipients r USING old_rows o WHERE r.message_id = o.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER messages_delete_recipients AFTER DELETE ON messages
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_delete_message_recipients();


-- group_members -> groups, members (and churches): every new (group, member, church) must name
-- an existing group and member of that same church (stricter than the foreign keys were: the
-- church of each is checked, not only that some church exists). What the locking scans return
-- is compared with the distinct pairs asked for, which checks existence and church in the same
-- pass; the distinct pairs are only counted when the rows are not all found and distinct
-- already.
CREATE OR REPLACE FUNCTION koinonia_check_memberships(
    p_group bigint[], p_member bigint[], p_church bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_found bigint;
    v_wanted bigint;
BEGIN
    SELECT count(*) INTO v_found FROM (
        SELECT 1 FROM groups
        WHERE (id, church_id) IN (SELECT g, c FROM unnest(p_group, p_church) AS t(g, c))
        FOR KEY SHARE) s;
    IF v_found <> cardinality(p_group) THEN
        SELECT count(*) INTO v_wanted FROM (
            SELECT DISTINCT g, c FROM unnest(p_group, p_church) AS t(g, c)) s;
        IF v_found <> v_wanted THEN
            RAISE EXCEPTION 'group_members: % of % (group, church) pairs do not exist',
                v_wanted - v_found, v_wanted
                USING ERRCODE = 'foreign_key_violation', TABLE = 'group_members',
                      CONSTRAINT = 'group_members_group_checked';
        END IF;
    END IF;
    SELECT count(*) INTO v_found FROM (
        SELECT 1 FROM members
        WHERE (id, church_id) IN (SELECT m, c FROM unnest(p_member, p_church) AS t(m, c))
        FOR KEY SHARE) s;
    IF v_found <> cardinality(p_member) THEN
        SELECT count(*) INTO v_wanted FROM (
            SELECT DISTINCT m, c FROM unnest(p_member, p_church) AS t(m, c)) s;
        IF v_found <> v_wanted THEN
            RAISE EXCEPTION 'group_members: % of % (member, church) pairs do not exist',
                v_wanted - v_found, v_wanted
                USING ERRCODE = 'foreign_key_violation', TABLE = 'group_members',
                      CONSTRAINT = 'group_members_member_checked';
        END IF;
    END IF;
END $$;

CREATE OR REPLACE FUNCTION koinonia_group_members_check_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_check_memberships(
        array_agg(group_id), array_agg(member_id), array_agg(church_id))
    FROM new_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Row-level, and only when a key changes: other updates (welcome_sent_at) pay nothing.
CREATE OR REPLACE FUNCTION koinonia_group_members_check_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_check_memberships(
        ARRAY[NEW.group_id], ARRAY[NEW.member_id], ARRAY[NEW.church_id]);
    RETURN NULL;
END $$;

-- A group's or a member's deletion deletes its memberships. A church's deletion cascades to its
-- groups (a foreign key) and members (below), hence to these.
CREATE OR REPLACE FUNCTION koinonia_delete_memberships_of_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    DELETE FROM group_members gm USING old_rows o WHERE gm.group_id = o.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION koinonia_delete_memberships_of_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    DELETE FROM group_members gm USING old_rows o WHERE gm.member_id = o.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER group_members_check_insert AFTER INSERT ON group_members
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_group_members_check_insert();

CREATE OR REPLACE TRIGGER group_members_check_update
AFTER UPDATE OF group_id, member_id, church_id ON group_members FOR EACH ROW
WHEN (OLD.group_id IS DISTINCT FROM NEW.group_id
      OR OLD.member_id IS DISTINCT FROM NEW.member_id
      OR OLD.church_id IS DISTINCT FROM NEW.church_id)
EXECUTE FUNCTION koinonia_group_members_check_update();

CREATE OR REPLACE TRIGGER groups_delete_memberships AFTER DELETE ON groups
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_delete_memberships_of_groups();

CREATE OR REPLACE TRIGGER members_delete_memberships AFTER DELETE ON members
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_delete_memberships_of_members();


-- members -> churches: the churches of a statement's rows are locked FOR KEY SHARE and must all
-- exist. Nothing updates members.church_id today; it is checked per row, only when it changes.
CREATE OR REPLACE FUNCTION koinonia_members_check_church_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    v_found bigint;
    v_wanted bigint;
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    SELECT count(*) INTO v_found FROM (
        SELECT 1 FROM churches WHERE id IN (SELECT church_id FROM new_rows) FOR KEY SHARE) s;
    SELECT count(*) INTO v_wanted FROM (SELECT DISTINCT church_id FROM new_rows) s;
    IF v_found <> v_wanted THEN
        RAISE EXCEPTION 'members: % of % churches do not exist', v_wanted - v_found, v_wanted
            USING ERRCODE = 'foreign_key_violation', TABLE = 'members',
                  CONSTRAINT = 'members_church_checked';
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION koinonia_members_check_church_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM 1 FROM churches WHERE id = NEW.church_id FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'members: church % does not exist', NEW.church_id
            USING ERRCODE = 'foreign_key_violation', TABLE = 'members',
                  CONSTRAINT = 'members_church_checked';
    END IF;
    RETURN NULL;
END $$;

-- A church's deletion deletes its members; their memberships and conversations go with them.
CREATE OR REPLACE FUNCTION koinonia_delete_members_of_churches() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    DELETE FROM members m USING old_rows o WHERE m.church_id = o.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER members_check_church_insert AFTER INSERT ON members
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_members_check_church_insert();

CREATE OR REPLACE TRIGGER members_check_church_update AFTER UPDATE OF church_id ON members
FOR EACH ROW WHEN (OLD.church_id IS DISTINCT FROM NEW.church_id)
EXECUTE FUNCTION koinonia_members_check_church_update();

CREATE OR REPLACE TRIGGER churches_delete_members AFTER DELETE ON churches
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_delete_members_of_churches();
"""

BRANCH_MEMBER_COUNTS = """
-- Distinct members per branch (a member in two groups of one branch counts once), read by
-- branch stats (SPEC §5: p95 <= 25 ms uncached), where counting every membership of the church
-- cost ~300,000 rows and 65-100 ms at L. Like message_status_counts, branch_member_counts
-- (branch, shard) -> distinct members is kept set-based by statement-level triggers (DESIGN
-- §5): writers add to their own shard (backend pid mod 16), readers sum the shards. Cost,
-- measured on 100,000 new memberships of one group (an import): +50 ms on a 1.3 s insert (a
-- maintained (branch, member) table was measured at +40%).
--
-- "Is this the member's first (or last) group of the branch?" is answered by looking at the
-- other memberships, under a transaction-scoped advisory lock per branch (taken in branch
-- order), so two transactions adding one member to two groups of a branch cannot both count
-- them. That needs READ COMMITTED: each statement of the trigger sees what the previous lock
-- holder committed. Every trigger function here checks it first (read_committed.sql).
--
-- Kept on group_members insert / delete / update of its keys, on a group's deletion (BEFORE:
-- its memberships are about to cascade, after which its branch can no longer be looked up) and
-- move to another branch; counters go with their branch.

-- 1262636355 ('KBMC'): the advisory-lock namespace of branch membership writers.
CREATE OR REPLACE FUNCTION koinonia_lock_branches(p_branch bigint[]) RETURNS void
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(1262636355, (b % 2147483647)::int))
    FROM (SELECT DISTINCT unnest(p_branch) AS b ORDER BY 1) s
$$;

-- Counter deltas per branch; branches already gone (cascades of their deletion) are skipped.
CREATE OR REPLACE FUNCTION koinonia_branch_members_count(p_branch bigint[], p_delta bigint[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO branch_member_counts AS c (branch_id, shard, church_id, n)
    SELECT d.branch_id, pg_backend_pid() % 16, b.church_id, d.n
    FROM unnest(p_branch, p_delta) AS d(branch_id, n) JOIN branches b ON b.id = d.branch_id
    WHERE d.n <> 0
    ON CONFLICT (branch_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
$$;

-- Memberships (group, branch, member) just added: a member whose memberships in the branch are
-- all among them is new to the branch. Up to 1000 are looked up member by member (index on
-- group_members.member_id); more into one group (an import) are the members not in the
-- branch's other groups; more into several groups, one pass over the branches' memberships.
CREATE OR REPLACE FUNCTION koinonia_branch_members_added(
    p_group bigint[], p_branch bigint[], p_member bigint[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_branch bigint[];
    v_delta bigint[];
BEGIN
    PERFORM koinonia_lock_branches(p_branch);
    IF cardinality(p_member) > 1000 AND p_group <@ p_group[1:1] THEN
        v_branch := p_branch[1:1];
        SELECT ARRAY[count(*)] INTO v_delta FROM (
            SELECT unnest(p_member)
            EXCEPT
            SELECT gm.member_id FROM group_members gm
            WHERE gm.group_id IN (SELECT g.id FROM groups g
                                  WHERE g.branch_id = p_branch[1] AND g.id <> p_group[1])
        ) s;
    ELSIF cardinality(p_member) <= 1000 THEN
        SELECT array_agg(branch_id), array_agg(n) INTO v_branch, v_delta FROM (
            SELECT a.branch_id, count(*) AS n
            FROM (SELECT branch_id, member_id, count(*) AS k
                  FROM unnest(p_branch, p_member) AS p(branch_id, member_id)
                  GROUP BY branch_id, member_id) a
            CROSS JOIN LATERAL (
                SELECT count(*) AS total FROM group_members gm JOIN groups g ON g.id = gm.group_id
                WHERE gm.member_id = a.member_id AND g.branch_id = a.branch_id
            ) now
            WHERE now.total = a.k
            GROUP BY a.branch_id
        ) d;
    ELSE
        SELECT array_agg(branch_id), array_agg(n) INTO v_branch, v_delta FROM (
            WITH added AS (
                SELECT branch_id, member_id, count(*) AS k
                FROM unnest(p_branch, p_member) AS p(branch_id, member_id)
                GROUP BY branch_id, member_id
            ),
            now AS (
                SELECT g.branch_id, gm.member_id, count(*) AS total
                FROM groups g JOIN group_members gm ON gm.group_id = g.id
                WHERE g.branch_id = ANY (SELECT DISTINCT branch_id FROM added)
                GROUP BY g.branch_id, gm.member_id
            )
            SELECT a.branch_id, count(*) AS n
            FROM added a
            JOIN now ON now.branch_id = a.branch_id AND now.member_id = a.member_id
            WHERE now.total = a.k
            GROUP BY a.branch_id
        ) d;
    END IF;
    PERFORM koinonia_branch_members_count(v_branch, v_delta);
END $$;

-- Memberships (group, branch, member) removed (or, with p_leaving_group, about to be): a member
-- with no other membership left in the branch leaves it. Same three ways as above.
CREATE OR REPLACE FUNCTION koinonia_branch_members_removed(
    p_group bigint[], p_branch bigint[], p_member bigint[], p_leaving_group bigint DEFAULT NULL
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    v_branch bigint[];
    v_delta bigint[];
BEGIN
    PERFORM koinonia_lock_branches(p_branch);
    IF cardinality(p_member) > 1000 AND p_group <@ p_group[1:1] THEN
        v_branch := p_branch[1:1];
        SELECT ARRAY[-count(*)] INTO v_delta FROM (
            SELECT unnest(p_member)
            EXCEPT
            SELECT gm.member_id FROM group_members gm
            WHERE gm.group_id IN (SELECT g.id FROM groups g
                                  WHERE g.branch_id = p_branch[1] AND g.id <> p_group[1]
                                    AND g.id IS DISTINCT FROM p_leaving_group)
        ) s;
    ELSIF cardinality(p_member) <= 1000 THEN
        SELECT array_agg(branch_id), array_agg(n) INTO v_branch, v_delta FROM (
            SELECT r.branch_id, -count(*) AS n
            FROM (SELECT DISTINCT branch_id, member_id
                  FROM unnest(p_branch, p_member) AS p(branch_id, member_id)) r
            WHERE NOT EXISTS (
                SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id
                WHERE gm.member_id = r.member_id AND g.branch_id = r.branch_id
                  AND g.id IS DISTINCT FROM p_leaving_group
            )
            GROUP BY r.branch_id
        ) d;
    ELSE
        SELECT array_agg(branch_id), array_agg(n) INTO v_branch, v_delta FROM (
            WITH removed AS (
                SELECT DISTINCT branch_id, member_id
                FROM unnest(p_branch, p_member) AS p(branch_id, member_id)
            ),
            still AS (
                SELECT DISTINCT g.branch_id, gm.member_id
                FROM groups g JOIN group_members gm ON gm.group_id = g.id
                WHERE g.branch_id = ANY (SELECT DISTINCT branch_id FROM removed)
                  AND g.id IS DISTINCT FROM p_leaving_group
            )
            SELECT r.branch_id, -count(*) AS n
            FROM removed r
            LEFT JOIN still s ON s.branch_id = r.branch_id AND s.member_id = r.member_id
            WHERE s.member_id IS NULL
            GROUP BY r.branch_id
        ) d;
    END IF;
    PERFORM koinonia_branch_members_count(v_branch, v_delta);
END $$;

-- group_members, statement-level. The groups read are locked FOR SHARE: a concurrent move of
-- one waits for this transaction (or this for it, then reads its new branch). Groups that no
-- longer exist (this statement is the cascade of their deletion) are skipped: the groups
-- trigger below already accounted for them.
CREATE OR REPLACE FUNCTION koinonia_branch_members_on_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_branch_members_added(
        array_agg(g.id), array_agg(g.branch_id), array_agg(n.member_id))
    FROM new_rows n
    JOIN (SELECT id, branch_id FROM groups
          WHERE id IN (SELECT group_id FROM new_rows) FOR SHARE) g ON g.id = n.group_id
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION koinonia_branch_members_on_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_branch_members_removed(
        array_agg(g.id), array_agg(g.branch_id), array_agg(o.member_id))
    FROM old_rows o
    JOIN (SELECT id, branch_id FROM groups
          WHERE id IN (SELECT group_id FROM old_rows) FOR SHARE) g ON g.id = o.group_id
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Only re-pointed memberships matter; other updates (welcome_sent_at) net out to nothing.
CREATE OR REPLACE FUNCTION koinonia_branch_members_on_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_branch_members_removed(
        array_agg(g.id), array_agg(g.branch_id), array_agg(o.member_id))
    FROM (SELECT group_id, member_id FROM old_rows
          EXCEPT ALL SELECT group_id, member_id FROM new_rows) o
    JOIN (SELECT id, branch_id FROM groups
          WHERE id IN (SELECT group_id FROM old_rows) FOR SHARE) g ON g.id = o.group_id
    HAVING count(*) > 0;
    PERFORM koinonia_branch_members_added(
        array_agg(g.id), array_agg(g.branch_id), array_agg(n.member_id))
    FROM (SELECT group_id, member_id FROM new_rows
          EXCEPT ALL SELECT group_id, member_id FROM old_rows) n
    JOIN (SELECT id, branch_id FROM groups
          WHERE id IN (SELECT group_id FROM new_rows) FOR SHARE) g ON g.id = n.group_id
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- groups, row-level. The DELETE holds the group's row lock when this runs, so writers of its
-- memberships have committed (or wait, then fail their check).
CREATE OR REPLACE FUNCTION koinonia_branch_members_on_group_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_branch_members_removed(
        array_agg(OLD.id), array_agg(OLD.branch_id), array_agg(gm.member_id), OLD.id)
    FROM group_members gm WHERE gm.group_id = OLD.id
    HAVING count(*) > 0;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION koinonia_branch_members_on_group_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    PERFORM koinonia_lock_branches(ARRAY[OLD.branch_id, NEW.branch_id]);
    PERFORM koinonia_branch_members_removed(
        array_agg(NEW.id), array_agg(OLD.branch_id), array_agg(gm.member_id))
    FROM group_members gm WHERE gm.group_id = NEW.id
    HAVING count(*) > 0;
    PERFORM koinonia_branch_members_added(
        array_agg(NEW.id), array_agg(NEW.branch_id), array_agg(gm.member_id))
    FROM group_members gm WHERE gm.group_id = NEW.id
    HAVING count(*) > 0;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION koinonia_branch_members_on_branch_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_require_read_committed(TG_NAME);
    DELETE FROM branch_member_counts WHERE branch_id IN (SELECT id FROM old_rows);
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER group_members_branch_insert AFTER INSERT ON group_members
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_branch_members_on_insert();

CREATE OR REPLACE TRIGGER group_members_branch_delete AFTER DELETE ON group_members
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_branch_members_on_delete();

CREATE OR REPLACE TRIGGER group_members_branch_update AFTER UPDATE ON group_members
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_branch_members_on_update();

CREATE OR REPLACE TRIGGER groups_branch_members_delete BEFORE DELETE ON groups
FOR EACH ROW EXECUTE FUNCTION koinonia_branch_members_on_group_delete();

CREATE OR REPLACE TRIGGER groups_branch_members_move AFTER UPDATE OF branch_id ON groups
FOR EACH ROW WHEN (OLD.branch_id IS DISTINCT FROM NEW.branch_id)
EXECUTE FUNCTION koinonia_branch_members_on_group_move();

CREATE OR REPLACE TRIGGER branches_branch_members_cleanup AFTER DELETE ON branches
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_branch_members_on_branch_delete();
"""

# The one line this revision adds to each trigger function of the two files: without it, they
# are the baseline's functions again.
GUARD = "    PERFORM koinonia_require_read_committed(TG_NAME);\n"


def upgrade() -> None:
    apply(READ_COMMITTED)
    apply(FOREIGN_KEYS)
    apply(BRANCH_MEMBER_COUNTS)


def downgrade() -> None:
    apply(FOREIGN_KEYS.replace(GUARD, ""))
    apply(BRANCH_MEMBER_COUNTS.replace(GUARD, ""))
    op.execute("DROP FUNCTION koinonia_require_read_committed(name)")
