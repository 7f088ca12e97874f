from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from koinonia.auth.deps import Auth, DbSession
from koinonia.billing import service
from koinonia.billing.schemas import BillingPlanOut, UsageOut
from koinonia.billing.service import MONTH_PATTERN
from koinonia.kit.openapi import AUTHENTICATED

router = APIRouter(prefix="/billing", tags=["billing"], responses=AUTHENTICATED)


@router.get("/plan", response_model=BillingPlanOut)
async def billing_plan(auth: Auth, session: DbSession) -> BillingPlanOut:
    """The plan, its price and limits, and this billing month's usage against them.

    - `plan` is the subscribed plan, `limits_plan` the one whose limits apply (a trial has
      starter limits), `price_usd` the monthly price of `plan`.
    - `usage.texts`: texts this billing month (UTC calendar month): one per recipient of a
      message, reserved when the message is written, given back when certainly never sent:
      cancelled before sending, skipped before any attempt (the member opted out or was deleted
      since), or rejected by the provider at the first attempt.
      `usage.segments`: SMS segments handed to the carrier for them.
    - `usage.members` (any consent), `usage.branches`, `usage.co_admins`: counts now.
    - `remaining`: max(limit - usage, 0) for each; null when the plan sets no limit."""
    return await service.plan(session, auth)


@router.get("/usage", response_model=UsageOut)
async def billing_usage(
    auth: Auth,
    session: DbSession,
    month: Annotated[
        str | None,
        Query(
            max_length=7,
            description="YYYY-MM (UTC calendar month, 1970-01 to 9999-12); default: this month.",
            json_schema_extra={"pattern": MONTH_PATTERN},
        ),
    ] = None,
) -> UsageOut:
    """Texts (one per recipient of a message created that month) and SMS segments of a
    billing month; zeros for a month without sends. 422 when `month` is not YYYY-MM."""
    return await service.usage(session, auth, month)
