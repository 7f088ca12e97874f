"""Stats endpoints: exact numbers on the hand-built data set (tests/stats/conftest.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import SeedFor, Tenant, make_tenant

API = "/api/v1/stats"


async def get(client: httpx.AsyncClient, tenant: Tenant, path: str, **params: Any) -> Any:
    r = await client.get(f"{API}/{path}", params=params, headers=tenant.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_summary(client: httpx.AsyncClient, tenant: Tenant, dataset: Any) -> None:
    body = await get(client, tenant, "summary")
    now = datetime.now(UTC)
    assert body == {
        "members": {"total": 7, "opted_in": 5, "opted_out": 2},
        "branches": 3,
        "groups": 3,
        "month": f"{now:%Y-%m}",
        "texts": 123,
        "segments": 130,
        "messages": 5,  # the 40-day-old one is last month's
        "sent": 1,
        "delivered": 12,
        "undelivered": 1,
        "failed": 1,
        "delivery_rate": 0.8,  # 12 / (1 + 12 + 1 + 1)
    }


async def test_branches(client: httpx.AsyncClient, tenant: Tenant, dataset: Any) -> None:
    body = await get(client, tenant, "branches")
    assert body["days"] == 30
    by_name = {b["name"]: b for b in body["items"]}
    assert [b["name"] for b in body["items"]] == ["A", "B", "C"]
    assert by_name["A"] == {
        "branch_id": dataset.branches["A"],
        "name": "A",
        "is_active": True,
        "groups": 2,
        "members": 4,  # m3 is in both groups of A: once
        "messages": 3,  # to A, to groups (A1+A2 once), to A and B
        "texts": 11,  # 4 + 4 (m5 skipped) + 3
        "sent": 1,
        "delivered": 6,
        "undelivered": 1,
        "failed": 1,
        "delivery_rate": 0.6667,  # 6 / 9
    }
    assert by_name["B"] == {
        "branch_id": dataset.branches["B"],
        "name": "B",
        "is_active": True,
        "groups": 1,
        "members": 3,
        "messages": 2,  # to groups, to A and B (the 40-day-old one is outside the window)
        "texts": 7,
        "sent": 0,
        "delivered": 4,
        "undelivered": 1,
        "failed": 0,
        "delivery_rate": 0.8,
    }
    assert by_name["C"]["groups"] == by_name["C"]["members"] == by_name["C"]["texts"] == 0
    assert by_name["C"]["delivery_rate"] is None
    # A wider window reaches the old message to B.
    wide = await get(client, tenant, "branches", days=60)
    b = next(i for i in wide["items"] if i["name"] == "B")
    assert (b["messages"], b["texts"], b["delivered"]) == (3, 8, 5)


async def test_messages(client: httpx.AsyncClient, tenant: Tenant, dataset: Any) -> None:
    body = await get(client, tenant, "messages", days=30)
    tz = ZoneInfo("America/New_York")
    today = datetime.now(tz).date()
    assert body["timezone"] == "America/New_York"
    assert body["days"] == 30
    since = datetime.fromisoformat(body["since"])
    assert since == datetime.combine(today - timedelta(days=29), datetime.min.time(), tz)
    assert body["messages"] == 5
    assert body["texts"] == 17  # 18 recipients, one skipped
    assert body["by_status"] == {
        "queued": 1,
        "sending": 1,
        "sent": 1,
        "delivered": 12,
        "undelivered": 1,
        "failed": 1,
        "skipped": 1,
    }
    assert body["delivery_rate"] == 0.8
    series = body["series"]
    assert [d["day"] for d in series] == [
        (today - timedelta(days=n)).isoformat() for n in range(29, -1, -1)
    ]
    assert series[-1] == {"day": today.isoformat(), "messages": 5, "texts": 17, "delivered": 12}
    assert all(d["messages"] == d["texts"] == d["delivered"] == 0 for d in series[:-1])
    wide = await get(client, tenant, "messages", days=41)
    old = wide["series"][0]
    assert old["day"] == (today - timedelta(days=40)).isoformat()
    assert (old["messages"], old["texts"], old["delivered"]) == (1, 1, 1)


async def test_local_days_of_a_non_utc_church(
    client: httpx.AsyncClient, session: AsyncSession, seed: SeedFor
) -> None:
    """Tokyo midnight is 15:00 UTC the day before: days are the church's, not UTC's."""
    tokyo = await make_tenant(session, timezone="Asia/Tokyo")
    s = seed(tokyo)
    tz = ZoneInfo("Asia/Tokyo")
    today = datetime.now(tz).date()
    midnight = datetime.combine(today, datetime.min.time(), tz)
    since = midnight - timedelta(days=6)  # days=7: today and the 6 days before
    [m] = await s.members(1)
    second = timedelta(seconds=1)
    await s.message("members", [m], {m: "delivered"}, created_at=midnight + second)
    await s.message("members", [m], {m: "failed"}, created_at=midnight - second)
    await s.message("members", [m], {m: "delivered"}, created_at=since + second)
    await s.message("members", [m], {m: "delivered"}, created_at=since - second)  # outside
    body = await get(client, tokyo, "messages", days=7)
    assert body["timezone"] == "Asia/Tokyo"
    assert datetime.fromisoformat(body["since"]) == since
    series = {d["day"]: (d["messages"], d["delivered"]) for d in body["series"]}
    assert len(series) == 7
    assert series[today.isoformat()] == (1, 1)  # a UTC "yesterday", a Tokyo today
    assert series[(today - timedelta(days=1)).isoformat()] == (1, 0)
    assert series[(today - timedelta(days=6)).isoformat()] == (1, 1)
    assert series[(today - timedelta(days=3)).isoformat()] == (0, 0)  # a zero day
    assert body["messages"] == 3
    assert body["delivery_rate"] == round(2 / 3, 4)


async def test_empty_church(client: httpx.AsyncClient, tenant: Tenant) -> None:
    summary = await get(client, tenant, "summary")
    assert summary["members"] == {"total": 0, "opted_in": 0, "opted_out": 0}
    assert (summary["messages"], summary["texts"], summary["delivery_rate"]) == (0, 0, None)
    branches = await get(client, tenant, "branches")
    assert branches["items"] == [] and branches["since"]
    messages = await get(client, tenant, "messages", days=1)
    assert len(messages["series"]) == 1 and messages["delivery_rate"] is None


async def test_other_church_sees_only_its_own(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, dataset: Any
) -> None:
    summary = await get(client, other_tenant, "summary")
    assert summary["members"]["total"] == summary["branches"] == summary["messages"] == 0
    assert summary["texts"] == 0
    assert (await get(client, other_tenant, "branches"))["items"] == []
    assert (await get(client, other_tenant, "messages"))["messages"] == 0
    # ...and the first church still sees its own.
    assert (await get(client, tenant, "summary"))["messages"] == 5


@pytest.mark.parametrize("path", ["branches", "messages"])
@pytest.mark.parametrize("days", ["0", "366", "-1", "abc", "1.5"])
async def test_bad_days_is_422(
    client: httpx.AsyncClient, tenant: Tenant, path: str, days: str
) -> None:
    r = await client.get(f"{API}/{path}", params={"days": days}, headers=tenant.headers)
    assert r.status_code == 422
    assert r.json()["error"] == "validation_error" and "days" in r.json()["fields"]


@pytest.mark.parametrize("path", ["summary", "branches", "messages"])
async def test_requires_auth(client: httpx.AsyncClient, path: str) -> None:
    r = await client.get(f"{API}/{path}")
    assert r.status_code == 401
    r = await client.get(f"{API}/{path}", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


async def test_definitions_are_in_the_api_docs(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    branches = paths[f"{API}/branches"]["get"]["description"]
    assert "count for no branch" in branches and "delivered / (sent" in branches
    assert "church-local" in paths[f"{API}/messages"]["get"]["description"]
    assert "opted_in" in paths[f"{API}/summary"]["get"]["description"]


@pytest.mark.parametrize(
    ("path", "params"),
    [("summary", {}), ("branches", {"days": 30}), ("messages", {"days": 30})],
)
async def test_statements_flat_as_data_grows(
    client: httpx.AsyncClient,
    session: AsyncSession,
    seed: SeedFor,
    count_statements: Any,
    path: str,
    params: dict[str, int],
) -> None:
    """1 branch / group / message vs 100 of each: the same statements (auth's + one)."""
    counts = []
    for size in (1, 100):
        t = await make_tenant(session)
        s = seed(t)
        members = await s.members(3)
        for _ in range(size):
            b = await s.branch()
            g = await s.group(b)
            await s.join(g, members)
            await s.message("groups", [g], dict.fromkeys(members, "delivered"))
            await s.message("branches", [b], dict.fromkeys(members, "failed"))
        with count_statements() as log:
            r = await client.get(f"{API}/{path}", params=params, headers=t.headers)
        assert r.status_code == 200
        counts.append(log.count)
    assert counts == [2, 2]
    if path == "branches":
        assert len(r.json()["items"]) == 100
        assert all(i["texts"] == 6 and i["members"] == 3 for i in r.json()["items"])
    if path == "messages":
        assert r.json()["messages"] == 200


async def test_a_year_of_a_fresh_church_is_zero_filled(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await get(client, tenant, "messages", days=365)
    assert len(body["series"]) == 365
    assert (
        body["series"][-1]["day"] == datetime.now(ZoneInfo("America/New_York")).date().isoformat()
    )
    assert date.fromisoformat(body["series"][0]["day"]) < date.fromisoformat(
        body["series"][-1]["day"]
    )
