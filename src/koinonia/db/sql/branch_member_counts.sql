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
