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
