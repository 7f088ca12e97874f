"""All SQL of billing: the month's usage and what the plan limits, one statement each."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Members of every consent count toward the plan, as the member limit checks do.
_PLAN_USAGE = text(
    """
    SELECT
        (SELECT count(*) FROM members WHERE church_id = :church_id) AS members,
        (SELECT count(*) FROM branches WHERE church_id = :church_id) AS branches,
        (SELECT count(*) FROM admins
         WHERE church_id = :church_id AND role = 'CO_ADMIN') AS co_admins,
        coalesce(u.texts, 0) AS texts, coalesce(u.segments, 0) AS segments
    FROM (SELECT 1) one
    LEFT JOIN usage u ON u.church_id = :church_id AND u.month = :month
    """
)

_MONTH_USAGE = text(
    """
    SELECT coalesce(u.texts, 0) AS texts, coalesce(u.segments, 0) AS segments
    FROM (SELECT 1) one
    LEFT JOIN usage u ON u.church_id = :church_id AND u.month = :month
    """
)


class BillingRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def plan_usage(self, month: date) -> Any:
        """One row: members, branches, co-admins now; texts and segments of `month`."""
        params = {"church_id": self.church_id, "month": month}
        return (await self.session.execute(_PLAN_USAGE, params)).one()

    async def month_usage(self, month: date) -> Any:
        """One row: texts and segments of `month` (zeros when nothing was sent)."""
        params = {"church_id": self.church_id, "month": month}
        return (await self.session.execute(_MONTH_USAGE, params)).one()
