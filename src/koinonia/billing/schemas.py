from __future__ import annotations

from datetime import datetime

from pydantic import Field

from koinonia.kit.schemas import Out

UNLIMITED = "null = unlimited."
MONTH_OUT = r"^[0-9]{4}-(0[1-9]|1[0-2])$"


class PlanLimits(Out):
    branches: int | None = Field(description=UNLIMITED)
    members: int | None = Field(description=UNLIMITED)
    texts_per_month: int | None = Field(description=UNLIMITED)
    co_admins: int | None = Field(description=UNLIMITED)
    groups_per_branch: int


class PlanUsage(Out):
    texts: int = Field(description="Texts this billing month: one per recipient of a message.")
    segments: int = Field(description="SMS segments sent for this month's texts.")
    members: int = Field(description="Members now, whatever their consent.")
    branches: int
    co_admins: int


class PlanRemaining(Out):
    texts: int | None = Field(description=f"Texts left this month; {UNLIMITED}")
    segments: int | None = Field(description="No plan limits segments: always null.")
    members: int | None = Field(description=UNLIMITED)
    branches: int | None = Field(description=UNLIMITED)
    co_admins: int | None = Field(description=UNLIMITED)


class BillingPlanOut(Out):
    plan: str = Field(description="The plan subscribed to (starter, growth, pro).")
    limits_plan: str = Field(
        description="The plan whose limits apply: `starter` during a trial, else `plan`."
    )
    price_usd: int = Field(description="Monthly price of `plan`.")
    status: str = Field(description="Subscription status: trial, active, past_due, cancelled.")
    trial_ends_at: datetime | None
    month: str = Field(
        description="The billing month (UTC calendar month), YYYY-MM.", pattern=MONTH_OUT
    )
    limits: PlanLimits
    usage: PlanUsage
    remaining: PlanRemaining = Field(description="max(limit - usage, 0) for each limit.")


class UsageOut(Out):
    month: str = Field(description="YYYY-MM (UTC calendar month).", pattern=MONTH_OUT)
    texts: int = Field(description="One per recipient of the month's messages.")
    segments: int = Field(description="SMS segments handed to the carrier for them.")
