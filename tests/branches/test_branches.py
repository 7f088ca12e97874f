from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant


async def test_crud_roundtrip(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post(
        "/api/v1/branches",
        json={"name": "Downtown", "address": "1 Main St", "phone": "(202) 555-0123"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    branch = r.json()
    assert branch["phone"] == "+12025550123"
    assert branch["group_count"] == 0 and branch["member_count"] == 0
    bid = branch["id"]
    r = await client.patch(
        f"/api/v1/branches/{bid}", json={"is_active": False}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["is_active"] is False
    assert r.json()["name"] == "Downtown"
    r = await client.get(f"/api/v1/branches/{bid}", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["address"] == "1 Main St"
    assert (
        await client.delete(f"/api/v1/branches/{bid}", headers=tenant.headers)
    ).status_code == 204
    assert (await client.get(f"/api/v1/branches/{bid}", headers=tenant.headers)).status_code == 404


async def test_validation_errors_have_fields(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post(
        "/api/v1/branches", json={"name": "", "phone": "12", "color": "red"}, headers=tenant.headers
    )
    assert r.status_code == 422
    assert set(r.json()["fields"]) == {"name", "phone", "color"}
    r = await client.get("/api/v1/branches/not-a-number", headers=tenant.headers)
    assert r.status_code == 422 and "branch_id" in r.json()["fields"]
    r = await client.get("/api/v1/branches/99999999999999999999", headers=tenant.headers)
    assert r.status_code == 422


async def test_duplicate_name_conflict(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (
        await client.post("/api/v1/branches", json={"name": "North"}, headers=tenant.headers)
    ).status_code == 201
    r = await client.post("/api/v1/branches", json={"name": "North"}, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["fields"] == {"name": "taken"}


async def test_plan_branch_limit(client: httpx.AsyncClient, session: AsyncSession) -> None:
    starter = await make_tenant(session, plan="starter", status="active")
    ok = await client.post("/api/v1/branches", json={"name": "Only"}, headers=starter.headers)
    assert ok.status_code == 201
    r = await client.post("/api/v1/branches", json={"name": "Second"}, headers=starter.headers)
    assert r.status_code == 402
    body = r.json()
    assert body["error"] == "plan_limit_reached"
    assert (body["limit"], body["usage"], body["resource"]) == (1, 1, "branches")


async def test_trial_has_starter_limits(client: httpx.AsyncClient, session: AsyncSession) -> None:
    trial = await make_tenant(session, plan="pro", status="trial")
    await make_branch(session, trial.church_id)
    r = await client.post("/api/v1/branches", json={"name": "Second"}, headers=trial.headers)
    assert r.status_code == 402


async def test_list_counts_and_pagination(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    b1 = await make_branch(session, tenant.church_id)
    b2 = await make_branch(session, tenant.church_id)
    g1 = await make_group(session, tenant.church_id, b1)
    g2 = await make_group(session, tenant.church_id, b1)
    members = await make_members(session, tenant.church_id, 3, group_id=g1)
    # One member in both groups of b1 counts once.
    await client.post(
        f"/api/v1/groups/{g2}/members", json={"member_ids": members[:1]}, headers=tenant.headers
    )
    seen: list[dict[str, int]] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/api/v1/branches", params=params, headers=tenant.headers)
        assert r.status_code == 200
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    by_id = {b["id"]: b for b in seen}
    assert list(by_id) == [b1, b2]
    assert (by_id[b1]["group_count"], by_id[b1]["member_count"]) == (2, 3)
    assert (by_id[b2]["group_count"], by_id[b2]["member_count"]) == (0, 0)


async def test_bad_cursor_is_422(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for cursor in ["%%%", "bm90IGpzb24", "WyJhIl0"]:  # garbage, not JSON, wrong type
        r = await client.get("/api/v1/branches", params={"cursor": cursor}, headers=tenant.headers)
        assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def test_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: object
) -> None:
    await make_branch(session, tenant.church_id)
    with count_statements() as one:  # type: ignore[operator]
        assert (await client.get("/api/v1/branches", headers=tenant.headers)).status_code == 200
    for _ in range(99):
        await make_branch(session, tenant.church_id)
    with count_statements() as hundred:  # type: ignore[operator]
        r = await client.get("/api/v1/branches?limit=200", headers=tenant.headers)
    assert len(r.json()["items"]) == 100
    assert one.count == hundred.count <= 2


async def _contents(session: AsyncSession, branch_id: int) -> tuple[int, int, int]:
    """(branches, groups, memberships) left of `branch_id`."""
    row = (
        await session.execute(
            text(
                "SELECT (SELECT count(*) FROM branches WHERE id = :b),"
                " (SELECT count(*) FROM groups WHERE branch_id = :b),"
                " (SELECT count(*) FROM group_members gm JOIN groups g ON g.id = gm.group_id"
                "  WHERE g.branch_id = :b)"
            ),
            {"b": branch_id},
        )
    ).one()
    return int(row[0]), int(row[1]), int(row[2])


async def _branch_with_groups(session: AsyncSession, tenant: Tenant) -> tuple[int, list[int]]:
    """A branch with two groups: 3 members in a welcoming group (2 welcomes pending, 1 sent),
    and 1 member in a group whose welcome is off (its pending row sends nothing)."""
    bid = await make_branch(session, tenant.church_id)
    welcoming = await make_group(session, tenant.church_id, bid, welcome_enabled=True)
    quiet = await make_group(session, tenant.church_id, bid)
    members = await make_members(session, tenant.church_id, 3, group_id=welcoming)
    members += await make_members(session, tenant.church_id, 1, group_id=quiet)
    await session.execute(
        text(
            "UPDATE group_members SET welcome_due_at = now() + interval '1 minute',"
            " welcome_sent_at = CASE WHEN member_id = :sent THEN now() END"
            " WHERE group_id IN (:a, :b)"
        ),
        {"a": welcoming, "b": quiet, "sent": members[0]},
    )
    await session.commit()
    return bid, members


async def test_deleting_a_branch_with_groups_is_409_saying_what_would_go(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    bid, members = await _branch_with_groups(session, tenant)
    r = await client.delete(f"/api/v1/branches/{bid}", headers=tenant.headers)
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["error"] == "branch_not_empty"
    assert body["would_delete"] == {"groups": 2, "memberships": 4, "pending_welcome_texts": 2}
    assert "2 groups with 4 memberships and 2 pending welcome texts" in body["detail"]
    assert "cascade=true" in body["detail"]
    assert await _contents(session, bid) == (1, 2, 4)  # nothing deleted
    r = await client.delete(
        f"/api/v1/branches/{bid}", params={"cascade": "true"}, headers=tenant.headers
    )
    assert r.status_code == 204, r.text
    assert await _contents(session, bid) == (0, 0, 0)
    left = await session.execute(
        text("SELECT count(*) FROM members WHERE id = ANY(:ids)"), {"ids": members}
    )
    assert left.scalar_one() == len(members)  # members stay


async def test_an_empty_branch_is_deleted_without_confirmation(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    bid = await make_branch(session, tenant.church_id)
    assert (
        await client.delete(f"/api/v1/branches/{bid}", headers=tenant.headers)
    ).status_code == 204
    assert await _contents(session, bid) == (0, 0, 0)
    r = await client.delete(f"/api/v1/branches/{bid}", headers=tenant.headers)
    assert r.status_code == 404


async def test_another_churchs_branch_is_404_and_untouched(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    bid, _ = await _branch_with_groups(session, other_tenant)
    for params in ({}, {"cascade": "true"}):
        r = await client.delete(f"/api/v1/branches/{bid}", params=params, headers=tenant.headers)
        assert r.status_code == 404, r.text
        assert "would_delete" not in r.json()  # not even the counts leak
    assert await _contents(session, bid) == (1, 2, 4)


async def test_branch_delete_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Any
) -> None:
    small = await make_branch(session, tenant.church_id)
    await make_members(
        session, tenant.church_id, 2, group_id=await make_group(session, tenant.church_id, small)
    )
    large = await make_branch(session, tenant.church_id)
    for _ in range(20):
        group = await make_group(session, tenant.church_id, large)
        await make_members(session, tenant.church_id, 10, group_id=group)
    counts = []
    for bid in (small, large):
        for params in ({}, {"cascade": "true"}):
            with count_statements() as log:
                r = await client.delete(
                    f"/api/v1/branches/{bid}", params=params, headers=tenant.headers
                )
            assert r.status_code == (409 if not params else 204), r.text
            counts.append(log.count)
    assert counts[0] == counts[2] and counts[1] == counts[3], counts
    assert max(counts) <= 4, counts
