"""Billing: the plan, its limits and this month's usage (one statement), and any month's usage."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_members, make_tenant
from koinonia.billing.plans import PLANS, effective_plan


def this_month() -> date:
    now = datetime.now(UTC)
    return date(now.year, now.month, 1)


async def set_usage(session: AsyncSession, church_id: int, month: date, t: int, s: int) -> None:
    await session.execute(
        text("INSERT INTO usage (church_id, month, texts, segments) VALUES (:c, :m, :t, :s)"),
        {"c": church_id, "m": month, "t": t, "s": s},
    )
    await session.commit()


async def add_co_admin(session: AsyncSession, church_id: int) -> None:
    await make_tenant(session, church_id=church_id, role="CO_ADMIN")


async def test_trial_plan_has_starter_limits(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    trial = await make_tenant(session, plan="pro", status="trial")
    await make_branch(session, trial.church_id)
    await make_members(session, trial.church_id, 3)
    await make_members(session, trial.church_id, 1, consent="opted_out")
    await add_co_admin(session, trial.church_id)
    await set_usage(session, trial.church_id, this_month(), 250, 300)
    last_month = (this_month() - timedelta(days=1)).replace(day=1)
    await set_usage(session, trial.church_id, last_month, 999, 999)
    r = await client.get("/api/v1/billing/plan", headers=trial.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body.pop("trial_ends_at") is not None
    assert body == {
        "plan": "pro",
        "limits_plan": "starter",
        "price_usd": 129,
        "status": "trial",
        "month": f"{this_month():%Y-%m}",
        "limits": {
            "branches": 1,
            "members": 500,
            "texts_per_month": 1000,
            "co_admins": 1,
            "groups_per_branch": 30,
        },
        "usage": {"texts": 250, "segments": 300, "members": 4, "branches": 1, "co_admins": 1},
        "remaining": {
            "texts": 750,
            "segments": None,
            "members": 496,
            "branches": 0,
            "co_admins": 0,
        },
    }


async def test_pro_plan_is_unlimited_where_it_says_so(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = (await client.get("/api/v1/billing/plan", headers=tenant.headers)).json()
    assert (body["plan"], body["limits_plan"], body["status"]) == ("pro", "pro", "active")
    assert body["limits"]["members"] is None and body["limits"]["texts_per_month"] is None
    assert body["remaining"] == {
        "texts": None,
        "segments": None,
        "members": None,
        "branches": 10,
        "co_admins": 3,
    }
    assert body["usage"] == {"texts": 0, "segments": 0, "members": 0, "branches": 0, "co_admins": 0}


async def test_remaining_never_negative(client: httpx.AsyncClient, session: AsyncSession) -> None:
    starter = await make_tenant(session, plan="starter", status="past_due")
    await set_usage(session, starter.church_id, this_month(), 1200, 1300)
    body = (await client.get("/api/v1/billing/plan", headers=starter.headers)).json()
    assert (body["price_usd"], body["status"]) == (49, "past_due")
    assert body["remaining"]["texts"] == 0 and body["usage"]["texts"] == 1200


async def test_usage_by_month(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await set_usage(session, tenant.church_id, date(2026, 1, 1), 42, 50)
    await set_usage(session, tenant.church_id, this_month(), 7, 8)
    r = await client.get("/api/v1/billing/usage?month=2026-01", headers=tenant.headers)
    assert r.json() == {"month": "2026-01", "texts": 42, "segments": 50}
    r = await client.get("/api/v1/billing/usage?month=2025-12", headers=tenant.headers)
    assert r.json() == {"month": "2025-12", "texts": 0, "segments": 0}
    r = await client.get("/api/v1/billing/usage", headers=tenant.headers)
    assert r.json() == {"month": f"{this_month():%Y-%m}", "texts": 7, "segments": 8}


@pytest.mark.parametrize(
    "month",
    ["2026-13", "2026-00", "2026-1", "26-01", "abc", "2026-01-01", "0000-01", "２０２６-01"],
)
async def test_bad_month_is_422(client: httpx.AsyncClient, tenant: Tenant, month: str) -> None:
    r = await client.get("/api/v1/billing/usage", params={"month": month}, headers=tenant.headers)
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_error" and "month" in body["fields"]


async def test_other_church_sees_only_its_own(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    await set_usage(session, tenant.church_id, this_month(), 77, 88)
    await make_members(session, tenant.church_id, 2)
    other = (await client.get("/api/v1/billing/plan", headers=other_tenant.headers)).json()
    assert other["usage"]["texts"] == other["usage"]["members"] == 0
    usage = (await client.get("/api/v1/billing/usage", headers=other_tenant.headers)).json()
    assert usage["texts"] == 0


@pytest.mark.parametrize("path", ["plan", "usage"])
async def test_requires_auth(client: httpx.AsyncClient, path: str) -> None:
    assert (await client.get(f"/api/v1/billing/{path}")).status_code == 401


@pytest.mark.parametrize("path", ["plan", "usage?month=2026-01"])
async def test_one_statement_whatever_the_size(
    client: httpx.AsyncClient, session: AsyncSession, count_statements: Any, path: str
) -> None:
    counts = []
    for size in (1, 100):
        t = await make_tenant(session)
        await make_members(session, t.church_id, size)
        for _ in range(min(size, 10)):
            await make_branch(session, t.church_id)
        with count_statements() as log:
            assert (
                await client.get(f"/api/v1/billing/{path}", headers=t.headers)
            ).status_code == 200
        counts.append(log.count)
    assert counts == [2, 2]  # auth's + one


def test_plans_unchanged() -> None:
    assert effective_plan("growth", "trial") is PLANS["starter"]
    assert effective_plan("growth", "active") is PLANS["growth"]
    assert [p.price_usd for p in PLANS.values()] == [49, 79, 129]
