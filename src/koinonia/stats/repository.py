"""All SQL of stats: one statement per endpoint, whatever the data size.

Delivery numbers come from message_status_counts (maintained by triggers; summed over shards),
read for the window's messages in one index scan of its primary key; distinct members per branch
from branch_member_counts. Windows of N days are church-local: from the church's midnight N-1
days ago until now.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.billing.repository import BILLING_MONTH, BILLING_MONTH_START

# The church and the window are rendered as literals (SQLAlchemy literal_execute): prepared
# statements otherwise get a generic plan after five runs, planned for an average church, and
# for the largest one that plan was measured 5x slower (nested loops over thousands of rows).
# Both are validated integers; each (church, days) pair is one more prepared statement.
_CHURCH = bindparam("church_id", type_=BigInteger, literal_execute=True)
_DAYS = bindparam("days", type_=Integer, literal_execute=True)

STATUSES = ("queued", "sending", "sent", "delivered", "undelivered", "failed", "skipped")

# Recipients per status, summed over the counter shards (rows `c` of message_status_counts).
_SUMS = ",\n".join(
    f"coalesce(sum(c.n) FILTER (WHERE c.status = '{s}'), 0)::bigint AS {s}" for s in STATUSES
)

# The counters of the window's messages: their ids go in as one array, so this is one bitmap
# scan of the counters' primary key, each heap page read once, whatever the window holds.
# (Measured against a join with the window, which the planner may turn into a sequential scan
# of every church's counters, and against one scan per day or branch, which rereads pages.)
_OF_WIN = "c.message_id = ANY (ARRAY(SELECT id FROM win))"

# Church-local window start: midnight of the local day `:days - 1` days before today.
_SINCE = """
    since AS (
        SELECT ch.timezone AS tz,
               (now() AT TIME ZONE ch.timezone)::date AS today,
               (((now() AT TIME ZONE ch.timezone)::date - (:days - 1))::timestamp
                   AT TIME ZONE ch.timezone) AS at
        FROM churches ch WHERE ch.id = :church_id
    )
"""

# Windows walk ix_messages_church_created from their start (index-only: ORDER BY created_at
# makes that the obvious plan, generic or custom), then read what else they need by id.
SUMMARY = text(
    f"""
    WITH win AS MATERIALIZED (
        SELECT m.id FROM messages m
        WHERE m.church_id = :church_id AND m.created_at >= {BILLING_MONTH_START}
        ORDER BY m.created_at DESC
    ),
    delivery AS (
        SELECT (SELECT count(*) FROM win) AS messages, {_SUMS}
        FROM message_status_counts c WHERE {_OF_WIN}
    )
    SELECT {BILLING_MONTH} AS month,
        (SELECT count(*) FROM members WHERE church_id = :church_id) AS members,
        (SELECT count(*) FROM members
         WHERE church_id = :church_id AND consent = 'opted_out') AS opted_out,
        (SELECT count(*) FROM branches WHERE church_id = :church_id) AS branches,
        (SELECT count(*) FROM groups WHERE church_id = :church_id) AS groups,
        coalesce(u.texts, 0) AS texts, coalesce(u.segments, 0) AS segments,
        d.messages, d.sent, d.delivered, d.undelivered, d.failed
    FROM delivery d
    LEFT JOIN usage u ON u.church_id = :church_id AND u.month = {BILLING_MONTH}
    """
).bindparams(_CHURCH)

BRANCHES = text(
    f"""
    WITH {_SINCE},
    win AS MATERIALIZED (
        SELECT m.id, m.target_type, m.target_ids
        FROM messages m
        WHERE m.id = ANY (ARRAY(
            SELECT w.id FROM messages w
            WHERE w.church_id = :church_id AND w.created_at >= (SELECT at FROM since)
            ORDER BY w.created_at DESC
        ))
          AND m.church_id = :church_id AND m.target_type IN ('branches', 'groups')
    ),
    -- (message, branch) once each: a message to two groups of a branch counts once for it;
    -- a group is looked up by primary key (a deleted group gives NULL: no branch).
    targeted AS (
        SELECT DISTINCT w.id AS message_id,
            CASE WHEN w.target_type = 'branches' THEN t.id
                 ELSE (SELECT g.branch_id FROM groups g
                       WHERE g.id = t.id AND g.church_id = :church_id) END AS branch_id
        FROM win w CROSS JOIN LATERAL unnest(w.target_ids) AS t(id)
    ),
    per_message AS (
        SELECT c.message_id, {_SUMS}
        FROM message_status_counts c WHERE {_OF_WIN}
        GROUP BY c.message_id
    ),
    per_branch AS (
        SELECT t.branch_id, count(*) AS messages,
               coalesce(sum(p.queued), 0)::bigint AS queued,
               coalesce(sum(p.sending), 0)::bigint AS sending,
               coalesce(sum(p.sent), 0)::bigint AS sent,
               coalesce(sum(p.delivered), 0)::bigint AS delivered,
               coalesce(sum(p.undelivered), 0)::bigint AS undelivered,
               coalesce(sum(p.failed), 0)::bigint AS failed
        FROM targeted t LEFT JOIN per_message p ON p.message_id = t.message_id
        GROUP BY t.branch_id
    )
    SELECT b.id, b.name, b.is_active,
        (SELECT count(*) FROM groups g WHERE g.branch_id = b.id) AS groups,
        (SELECT coalesce(sum(c.n), 0)::bigint FROM branch_member_counts c
         WHERE c.branch_id = b.id) AS members,
        coalesce(pb.messages, 0) AS messages,
        coalesce(pb.queued + pb.sending + pb.sent + pb.delivered + pb.undelivered + pb.failed, 0)
            AS texts,
        coalesce(pb.sent, 0) AS sent, coalesce(pb.delivered, 0) AS delivered,
        coalesce(pb.undelivered, 0) AS undelivered, coalesce(pb.failed, 0) AS failed,
        since.at AS since
    FROM since
    LEFT JOIN branches b ON b.church_id = :church_id
    LEFT JOIN per_branch pb ON pb.branch_id = b.id
    ORDER BY b.id
    """
).bindparams(_CHURCH, _DAYS)

MESSAGES = text(
    f"""
    WITH {_SINCE},
    win AS MATERIALIZED (
        SELECT m.id, (m.created_at AT TIME ZONE (SELECT tz FROM since))::date AS day
        FROM messages m
        WHERE m.church_id = :church_id AND m.created_at >= (SELECT at FROM since)
        ORDER BY m.created_at DESC
    ),
    per_day AS (
        SELECT w.day, {_SUMS}
        FROM message_status_counts c JOIN win w ON w.id = c.message_id
        WHERE {_OF_WIN}
        GROUP BY w.day
    ),
    messages_per_day AS (
        SELECT w.day, count(*) AS messages FROM win w GROUP BY w.day
    )
    SELECT d.day, coalesce(n.messages, 0) AS messages,
        coalesce(p.queued, 0) AS queued, coalesce(p.sending, 0) AS sending,
        coalesce(p.sent, 0) AS sent, coalesce(p.delivered, 0) AS delivered,
        coalesce(p.undelivered, 0) AS undelivered, coalesce(p.failed, 0) AS failed,
        coalesce(p.skipped, 0) AS skipped, since.tz, since.at AS since
    FROM since
    CROSS JOIN LATERAL (
        SELECT since.today - i AS day FROM generate_series(0, :days - 1) AS i
    ) d
    LEFT JOIN messages_per_day n ON n.day = d.day
    LEFT JOIN per_day p ON p.day = d.day
    ORDER BY d.day
    """
).bindparams(_CHURCH, _DAYS)


class StatsRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def summary(self) -> Any:
        """One row: this month (`billing.repository.BILLING_MONTH`), member, branch and group
        counts, the month's usage and the delivery of its messages."""
        params = {"church_id": self.church_id}
        return (await self.session.execute(SUMMARY, params)).one()

    async def branches(self, *, days: int) -> list[Any]:
        """One row per branch of the church, by id (one row with a null id when it has none:
        the window start is always there)."""
        params = {"church_id": self.church_id, "days": days}
        return list((await self.session.execute(BRANCHES, params)).all())

    async def messages_by_day(self, *, days: int) -> list[Any]:
        """One row per church-local day of the window, oldest first, zero-filled."""
        params = {"church_id": self.church_id, "days": days}
        return list((await self.session.execute(MESSAGES, params)).all())
