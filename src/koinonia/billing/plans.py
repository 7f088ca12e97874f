"""Plans and their limits (SPEC §4.7). None = unlimited. A trial has starter limits."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    price_usd: int
    branches: int | None
    members: int | None
    texts_per_month: int | None
    co_admins: int | None
    groups_per_branch: int = 30


PLANS: dict[str, Plan] = {
    "starter": Plan("starter", 49, branches=1, members=500, texts_per_month=1_000, co_admins=1),
    "growth": Plan("growth", 79, branches=5, members=2_000, texts_per_month=5_000, co_admins=3),
    "pro": Plan("pro", 129, branches=10, members=None, texts_per_month=None, co_admins=3),
}


def effective_plan(plan: str, subscription_status: str) -> Plan:
    return PLANS["starter"] if subscription_status == "trial" else PLANS[plan]
