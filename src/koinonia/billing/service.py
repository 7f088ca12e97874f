from __future__ import annotations

import re
from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.billing.plans import PLANS
from koinonia.billing.repository import BillingRepository
from koinonia.billing.schemas import (
    BillingPlanOut,
    PlanLimits,
    PlanRemaining,
    PlanUsage,
    UsageOut,
)
from koinonia.kit.errors import ValidationFailed

# Years 1970-9999, as the API's other times (kit.schemas); the document states the pattern.
MONTH_PATTERN = r"^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"
_MONTH = re.compile(MONTH_PATTERN)


def parse_month(value: str) -> date:
    """`YYYY-MM` → the month's first day; ValidationFailed (422, field `month`) otherwise."""
    match = _MONTH.fullmatch(value)
    if match is None:
        raise ValidationFailed.field(
            "month", "expected a month as YYYY-MM from 1970-01 to 9999-12, e.g. 2026-11"
        )
    return date(int(match[1]), int(match[2]), 1)


def month_text(month: date) -> str:
    """YYYY-MM, the year zero-padded (`%Y` writes year 1 as `1` on glibc)."""
    return f"{month.year:04d}-{month.month:02d}"


def _remaining(limit: int | None, used: int) -> int | None:
    return None if limit is None else max(limit - used, 0)


async def plan(session: AsyncSession, auth: AuthContext) -> BillingPlanOut:
    row = await BillingRepository(session, church_id=auth.church_id).plan_usage()
    limits = auth.plan
    return BillingPlanOut(
        plan=auth.plan_name,
        limits_plan=limits.name,
        price_usd=PLANS[auth.plan_name].price_usd,
        status=auth.subscription_status,
        trial_ends_at=auth.trial_ends_at,
        month=month_text(row.month),
        limits=PlanLimits(
            branches=limits.branches,
            members=limits.members,
            texts_per_month=limits.texts_per_month,
            co_admins=limits.co_admins,
            groups_per_branch=limits.groups_per_branch,
        ),
        usage=PlanUsage(
            texts=row.texts,
            segments=row.segments,
            members=row.members,
            branches=row.branches,
            co_admins=row.co_admins,
        ),
        remaining=PlanRemaining(
            texts=_remaining(limits.texts_per_month, row.texts),
            segments=None,
            members=_remaining(limits.members, row.members),
            branches=_remaining(limits.branches, row.branches),
            co_admins=_remaining(limits.co_admins, row.co_admins),
        ),
    )


async def usage(session: AsyncSession, auth: AuthContext, month: str | None) -> UsageOut:
    first_day = parse_month(month) if month is not None else None
    row = await BillingRepository(session, church_id=auth.church_id).month_usage(first_day)
    return UsageOut(month=month_text(row.month), texts=row.texts, segments=row.segments)
