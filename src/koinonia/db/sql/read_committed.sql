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
