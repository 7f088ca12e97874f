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
