"""All SQL of billing: the month's usage and what the plan limits, one statement each; and the
one definition of the billing month, which every statement that reads or writes usage uses.

The billing month of a moment is its calendar month in UTC, on the DATABASE's clock: usage
rows are reserved (messages.repository), refunded and charged (delivery.repository) by
statements that read `now()` or a message's `created_at` (itself the database's `now()`), so
the readers ask the database too. Every statement of one transaction sees the same `now()`, so
a send refused over quota reports the usage of the very month it was refused for, and a
request at the turn of the month never mixes the application host's clock with the database's.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def billing_month_of(instant: str) -> str:
    """SQL: the billing month (a date, its first day) of a timestamptz SQL expression."""
    return f"CAST(date_trunc('month', {instant} AT TIME ZONE 'UTC') AS date)"


# SQL: this month, and the moment it began.
BILLING_MONTH = billing_month_of("now()")
BILLING_MONTH_START = "(date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')"

# Members of every consent count toward the plan, as the member limit checks do.
_PLAN_USAGE = text(
    f"""
    SELECT {BILLING_MONTH} AS month,
        (SELECT count(*) FROM members WHERE church_id = :church_id) AS members,
        (SELECT count(*) FROM branches WHERE church_id = :church_id) AS branches,
        (SELECT count(*) FROM admins
         WHERE church_id = :church_id AND role = 'CO_ADMIN') AS co_admins,
        coalesce(u.texts, 0) AS texts, coalesce(u.segments, 0) AS segments
    FROM (SELECT 1) one
    LEFT JOIN usage u ON u.church_id = :church_id AND u.month = {BILLING_MONTH}
    """
)

# `:month` NULL: this month.
_MONTH_USAGE = text(
    f"""
    SELECT one.month, coalesce(u.texts, 0) AS texts, coalesce(u.segments, 0) AS segments
    FROM (SELECT coalesce(CAST(:month AS date), {BILLING_MONTH}) AS month) one
    LEFT JOIN usage u ON u.church_id = :church_id AND u.month = one.month
    """
)


class BillingRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def plan_usage(self) -> Any:
        """One row: members, branches, co-admins now; this month, its texts and segments."""
        params = {"church_id": self.church_id}
        return (await self.session.execute(_PLAN_USAGE, params)).one()

    async def month_usage(self, month: date | None) -> Any:
        """One row: `month` (None: this month), its texts and segments (zeros when nothing
        was sent)."""
        params = {"church_id": self.church_id, "month": month}
        return (await self.session.execute(_MONTH_USAGE, params)).one()
