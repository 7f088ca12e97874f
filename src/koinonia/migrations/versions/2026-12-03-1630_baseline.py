"""baseline: the whole schema before the first release, squashed from the 17 migrations that built it

Koinonia had not been released when its migrations were squashed into this one: it builds, from
an empty database, the schema they built (extensions, tables, constraints, indexes, functions,
triggers), with nothing of their history (data repairs, drafts undone, functions written four
times). A pg_dump --schema-only of a database built by the old chain and one of a database built
by this revision were compared when squashing: identical.

The revision id is that of the last squashed migration ("church timezone check"): a database
migrated through the old chain (a developer's `.koinonia/`, a bench database) is at this
revision already, and upgrading it runs only what came after.

Functions and triggers are applied from frozen copies of src/koinonia/db/sql/*.sql as they were
at this revision (see koinonia.db.sql): a later change to a file comes with a later migration
applying the new text.

Revision ID: 5d2c8e1f7a30
Revises:
Create Date: 2026-12-03 16:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from koinonia.db.sql import statements

revision: str = "5d2c8e1f7a30"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def apply(snapshot: str) -> None:
    for statement in statements(snapshot):
        op.execute(statement)


# Snapshots of src/koinonia/db/sql/<name>.sql at this revision. Frozen: never edit them here.

SEARCH = """
-- Member search folds case and accents: `members.search_name` (a stored generated column), its
-- trigram and prefix indexes, and the search queries call this function.
--
-- An index needs an IMMUTABLE function, and unaccent() alone is only STABLE (its dictionary
-- could change), so the dictionary is pinned (schema-qualified, as the function runs with any
-- search_path) and the function declared immutable. Changing it means rebuilding search_name and
-- the indexes on it.

CREATE OR REPLACE FUNCTION koinonia_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;
"""

TIMEZONE = """
-- A church's timezone must be a zone PostgreSQL can convert to: the churches table CHECKs it
-- (ck_churches_timezone). Python's zoneinfo accepted names the server's tz database does not
-- know (`right/...`, `posix/...`, `localtime`, `posixrules`), and a church saved with one made
-- every statement converting to its local time fail (stats, every inbound text: a STOP never
-- applied). The API accepts canonical IANA names only (kit/schemas.py); the names it refuses as
-- not canonical are refused here too.
--
-- IMMUTABLE: the answer changes only with the server's tz database, i.e. a reinstall. The
-- conversion is tried on a fixed instant (no scan of pg_timezone_names, which reads every zone
-- file).

CREATE OR REPLACE FUNCTION koinonia_is_timezone(tz text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF tz IS NULL OR tz ~ '^(posix|right)/' OR tz IN ('localtime', 'posixrules', 'Factory') THEN
        RETURN false;
    END IF;
    PERFORM TIMESTAMPTZ '2000-01-01 00:00:00+00' AT TIME ZONE tz;
    RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
    RETURN false;
END $$;
"""

DELIVERY_REPORTS = """
-- Delivery reports and the dispatcher's write-back (delivery/repository.py,
-- webhooks/repository.py).

-- Delivery statuses only move forward: queued 0 -> sending 1 -> sent 2 -> final 3
-- (delivered / undelivered / failed / skipped). Unknown statuses rank lowest.
CREATE OR REPLACE FUNCTION koinonia_status_rank(text) RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE $1
        WHEN 'queued' THEN 0 WHEN 'sending' THEN 1 WHEN 'sent' THEN 2
        WHEN 'delivered' THEN 3 WHEN 'undelivered' THEN 3 WHEN 'failed' THEN 3
        WHEN 'skipped' THEN 3 ELSE -1 END
$$;

-- A delivery report and the write-back of the same send can commit in either order, and each
-- is one READ COMMITTED statement that cannot see the other's uncommitted work: the report
-- would park itself (no recipient carries the id yet) while the write-back, working from its
-- own snapshot, folded in an older parked report and deleted the newer one. So both take a
-- transaction-scoped advisory lock per provider id before the statement that reads; whoever
-- holds an id's lock second sees the work of the first.
--
-- 1263555145 ('KPRI') is the advisory-lock namespace of writers of delivery reports by
-- provider id.

-- The write-back waits for each lock, in hash order, so two write-backs cannot deadlock.
CREATE OR REPLACE FUNCTION koinonia_lock_provider_ids(p_ids varchar[]) RETURNS bigint
LANGUAGE sql AS $$
    SELECT count(pg_advisory_xact_lock(1263555145, h))
    FROM (SELECT DISTINCT hashtext(i) AS h FROM unnest(p_ids) AS i WHERE i IS NOT NULL
          ORDER BY 1) AS s
$$;

-- A batch of reports never waits: it returns the ids it holds; the others are being written
-- back right now and are stored in a later batch (webhooks/batching.py), so one write-back in
-- progress never holds up the reports of other texts.
CREATE OR REPLACE FUNCTION koinonia_try_lock_provider_ids(p_ids varchar[]) RETURNS varchar[]
LANGUAGE sql AS $$
    SELECT coalesce(array_agg(i), '{}')
    FROM unnest(p_ids) AS i
    WHERE pg_try_advisory_xact_lock(1263555145, hashtext(i))
$$;
"""

MESSAGE_STATUS_COUNTS = """
-- Recipients per message and status (message_status_counts), kept by statement-level triggers
-- on message_recipients: one upsert per (message, status) a statement touches, whatever its
-- size. Writers add to their own shard (backend pid mod 16), so webhooks and workers updating
-- one message never queue on a hot row; readers sum the shards.
--
-- The upserts run in a fixed (message, status) order: two statements touching the same counter
-- rows (a webhook and a worker's write-back) lock them in the same order and cannot deadlock.
--
-- Recipients are only ever deleted with their message, whose counters go with it (a foreign key
-- ON DELETE CASCADE), so there is no delete trigger.
--
-- Safe under any isolation level: the counters only ever change by adding deltas with
-- INSERT ... ON CONFLICT DO UPDATE, which under REPEATABLE READ or SERIALIZABLE fails with a
-- serialization error rather than lose a concurrent delta.

CREATE OR REPLACE FUNCTION koinonia_count_recipient_inserts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_status_counts AS c (message_id, status, shard, n)
    SELECT message_id, status, pg_backend_pid() % 16, count(*)
    FROM new_rows GROUP BY message_id, status
    ORDER BY message_id, status
    ON CONFLICT (message_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

-- No join of the OLD and NEW transition tables: PL/pgSQL plans that join once per connection,
-- with the row counts of its first call, and a connection whose first update touched 0 or 1
-- rows (the lease sweep at worker start, a status webhook) then ran every 500-row write-back as
-- a nested loop over two tuplestores (measured on the delivery bench: PostgreSQL CPU for 10,000
-- texts 1.2 s -> 0.3 s without it). The counts are the same: every updated row is once in each
-- table, so -1 for its old status and +1 for its new one cancel out when the status is
-- unchanged (HAVING drops them); the plan is a hash aggregate whatever the batch size.
CREATE OR REPLACE FUNCTION koinonia_count_recipient_updates() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_status_counts AS c (message_id, status, shard, n)
    SELECT message_id, status, pg_backend_pid() % 16, sum(delta)
    FROM (
        SELECT message_id, status, -1 AS delta FROM old_rows
        UNION ALL
        SELECT message_id, status, 1 FROM new_rows
    ) AS changes
    GROUP BY message_id, status
    HAVING sum(delta) <> 0
    ORDER BY message_id, status
    ON CONFLICT (message_id, status, shard) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER message_recipients_count_insert AFTER INSERT ON message_recipients
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_count_recipient_inserts();

CREATE OR REPLACE TRIGGER message_recipients_count_update AFTER UPDATE ON message_recipients
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT
EXECUTE FUNCTION koinonia_count_recipient_updates();
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
-- These guarantees hold under READ COMMITTED, the isolation every transaction here uses: the
-- cascade's DELETE takes a fresh snapshot and sees rows committed while it waited. A real
-- foreign key also re-checks with a cross-check snapshot under REPEATABLE READ / SERIALIZABLE;
-- these triggers do not, so a deletion in such a transaction could miss a row committed
-- concurrently.

-- messages -> message_recipients: a message's deletion deletes its recipients.
CREATE OR REPLACE FUNCTION koinonia_delete_message_recipients() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
    PERFORM koinonia_check_memberships(
        array_agg(group_id), array_agg(member_id), array_agg(church_id))
    FROM new_rows HAVING count(*) > 0;
    RETURN NULL;
END $$;

-- Row-level, and only when a key changes: other updates (welcome_sent_at) pay nothing.
CREATE OR REPLACE FUNCTION koinonia_group_members_check_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM koinonia_check_memberships(
        ARRAY[NEW.group_id], ARRAY[NEW.member_id], ARRAY[NEW.church_id]);
    RETURN NULL;
END $$;

-- A group's or a member's deletion deletes its memberships. A church's deletion cascades to its
-- groups (a foreign key) and members (below), hence to these.
CREATE OR REPLACE FUNCTION koinonia_delete_memberships_of_groups() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    DELETE FROM group_members gm USING old_rows o WHERE gm.group_id = o.id;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION koinonia_delete_memberships_of_members() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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
-- holder committed.
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
    PERFORM koinonia_branch_members_removed(
        array_agg(OLD.id), array_agg(OLD.branch_id), array_agg(gm.member_id), OLD.id)
    FROM group_members gm WHERE gm.group_id = OLD.id
    HAVING count(*) > 0;
    RETURN OLD;
END $$;

CREATE OR REPLACE FUNCTION koinonia_branch_members_on_group_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
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


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")
    op.execute("CREATE EXTENSION IF NOT EXISTS unaccent WITH SCHEMA public")
    # church_id leads the trigram indexes (a GIN index over a bigint and a trigram column).
    op.execute("CREATE EXTENSION IF NOT EXISTS btree_gin WITH SCHEMA public")
    # Before the tables: members.search_name, the members' prefix index and ck_churches_timezone
    # call these.
    apply(SEARCH)
    apply(TIMEZONE)
    op.create_table(
        "branch_member_counts",
        sa.Column("branch_id", sa.BigInteger(), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("church_id", sa.BigInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("branch_id", "shard", name=op.f("pk_branch_member_counts")),
    )
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
        sa.CheckConstraint("koinonia_is_timezone(timezone)", name=op.f("ck_churches_timezone")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_churches")),
        sa.UniqueConstraint("sms_number", name=op.f("uq_churches_sms_number")),
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
        sa.Column(
            "search_name",
            sa.Text(),
            sa.Computed("koinonia_fold(first_name || ' ' || last_name)", persisted=True),
            nullable=True,
        ),
        sa.CheckConstraint("consent IN ('opted_in', 'opted_out')", name=op.f("ck_members_consent")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_members")),
        sa.UniqueConstraint("church_id", "phone", name=op.f("uq_members_church_id_phone")),
    )
    op.create_index(op.f("ix_members_church_id"), "members", ["church_id"], unique=False)
    op.create_index(
        "ix_members_church_opted_out",
        "members",
        ["church_id"],
        unique=False,
        postgresql_where=sa.text("consent = 'opted_out'"),
    )
    op.create_index(
        "ix_members_last_first_prefix",
        "members",
        [
            "church_id",
            sa.literal_column("(koinonia_fold(last_name || ' ' || first_name) COLLATE \"C\")"),
            "id",
        ],
        unique=False,
    )
    op.create_index(
        "ix_members_name_trgm",
        "members",
        [sa.literal_column("church_id, search_name gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_members_phone_trgm",
        "members",
        [sa.literal_column("church_id, phone gin_trgm_ops")],
        unique=False,
        postgresql_using="gin",
    )
    op.create_index(
        "ix_members_search_prefix",
        "members",
        ["church_id", sa.literal_column('(search_name COLLATE "C")'), "id"],
        unique=False,
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
    op.create_table(
        "pending_status_reports",
        sa.Column("provider_message_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error_code", sa.String(length=32), nullable=True),
        sa.Column("error_text", sa.Text(), nullable=True),
        sa.Column(
            "received_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("retry", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("opt_out", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.PrimaryKeyConstraint("provider_message_id", name=op.f("pk_pending_status_reports")),
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
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("encoding IN ('GSM-7', 'UCS-2')", name=op.f("ck_messages_encoding")),
        sa.CheckConstraint(
            "kind IN ('broadcast', 'reply', 'recurring', 'welcome', 'relay', 'system')",
            name=op.f("ck_messages_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'queued', 'sending', 'sent', 'completed', 'cancelled')",
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
    op.create_index(
        "ix_messages_sent",
        "messages",
        ["id"],
        unique=False,
        postgresql_where=sa.text("status = 'sent'"),
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
        "message_status_counts",
        sa.Column("message_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("shard", sa.SmallInteger(), nullable=False),
        sa.Column("n", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_status_counts_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "message_id", "status", "shard", name=op.f("pk_message_status_counts")
        ),
    )

    apply(DELIVERY_REPORTS)
    apply(MESSAGE_STATUS_COUNTS)
    apply(FOREIGN_KEYS)
    apply(BRANCH_MEMBER_COUNTS)


# Dropping a table drops its indexes, constraints and triggers. The extensions stay: other
# schemas of the database may use them (and the upgrade creates them only if missing).
TABLES = [
    "branch_member_counts",
    "churches",
    "group_members",
    "members",
    "message_recipients",
    "pending_status_reports",
    "admins",
    "branches",
    "conversations",
    "inbound_auto_replies",
    "templates",
    "usage",
    "auth_sessions",
    "groups",
    "recurring_messages",
    "messages",
    "conversation_messages",
    "message_status_counts",
]

FUNCTIONS = [
    "koinonia_branch_members_added(bigint[],bigint[],bigint[])",
    "koinonia_branch_members_count(bigint[],bigint[])",
    "koinonia_branch_members_on_branch_delete()",
    "koinonia_branch_members_on_delete()",
    "koinonia_branch_members_on_group_delete()",
    "koinonia_branch_members_on_group_move()",
    "koinonia_branch_members_on_insert()",
    "koinonia_branch_members_on_update()",
    "koinonia_branch_members_removed(bigint[],bigint[],bigint[],bigint)",
    "koinonia_check_memberships(bigint[],bigint[],bigint[])",
    "koinonia_count_recipient_inserts()",
    "koinonia_count_recipient_updates()",
    "koinonia_delete_members_of_churches()",
    "koinonia_delete_memberships_of_groups()",
    "koinonia_delete_memberships_of_members()",
    "koinonia_delete_message_recipients()",
    "koinonia_fold(text)",
    "koinonia_group_members_check_insert()",
    "koinonia_group_members_check_update()",
    "koinonia_is_timezone(text)",
    "koinonia_lock_branches(bigint[])",
    "koinonia_lock_provider_ids(character varying[])",
    "koinonia_members_check_church_insert()",
    "koinonia_members_check_church_update()",
    "koinonia_status_rank(text)",
    "koinonia_try_lock_provider_ids(character varying[])",
]


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
