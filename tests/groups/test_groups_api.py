"""Groups API: CRUD with branch checks and limits, memberships, tenancy, pages, statement counts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.database import StatementLog
from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from koinonia.models import Group, GroupMember, Member

URL = "/api/v1/groups"
Counter = Callable[[], AbstractContextManager[StatementLog]]


async def make_groups(
    session: AsyncSession, church_id: int, branch_id: int, count: int
) -> list[int]:
    rows = [
        {"church_id": church_id, "branch_id": branch_id, "name": f"G{branch_id}-{i}"}
        for i in range(count)
    ]
    ids = list((await session.execute(insert(Group).returning(Group.id), rows)).scalars())
    await session.commit()
    return [int(i) for i in ids]


async def memberships(session: AsyncSession, group_id: int) -> dict[int, Any]:
    """member_id -> (joined_at, welcome_due_at) as stored."""
    rows = await session.execute(
        select(GroupMember.member_id, GroupMember.joined_at, GroupMember.welcome_due_at).where(
            GroupMember.group_id == group_id
        )
    )
    return {m: (joined, due) for m, joined, due in rows}


async def walk(client: httpx.AsyncClient, tenant: Tenant, url: str, **params: Any) -> list[Any]:
    """Every item of every page, in order, failing on a repeated id."""
    seen: list[Any] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(url, params=query, headers=tenant.headers)
        assert r.status_code == 200, r.text
        seen += r.json()["items"]
        cursor = r.json()["next_cursor"]
        if not cursor:
            ids = [i["id"] for i in seen]
            assert len(ids) == len(set(ids))
            return seen


# --- groups --------------------------------------------------------------------------------


async def test_crud_roundtrip(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    body = {"branch_id": branch, "name": "Choir", "welcome_enabled": True, "welcome_text": "Hi!"}
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    group = r.json()
    assert {k: group[k] for k in body} == body
    assert group["member_count"] == 0 and group["description"] is None
    gid = group["id"]

    r = await client.patch(
        f"{URL}/{gid}",
        json={"description": "Sings", "welcome_enabled": False},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    assert (r.json()["description"], r.json()["welcome_enabled"], r.json()["name"]) == (
        "Sings",
        False,
        "Choir",
    )
    r = await client.patch(f"{URL}/{gid}", json={}, headers=tenant.headers)
    assert r.status_code == 200
    assert r.json() == {**group, "description": "Sings", "welcome_enabled": False}
    assert (await client.get(f"{URL}/{gid}", headers=tenant.headers)).json() == r.json()

    assert (await client.delete(f"{URL}/{gid}", headers=tenant.headers)).status_code == 204
    assert (await client.get(f"{URL}/{gid}", headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"{URL}/{gid}", headers=tenant.headers)).status_code == 404


async def test_create_validation(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    foreign = await make_branch(session, other_tenant.church_id)
    cases: list[tuple[dict[str, Any], dict[str, Any]]] = [
        ({"branch_id": branch, "name": ""}, {"name": None}),
        ({"branch_id": branch, "name": "A", "welcome_text": "x" * 481}, {"welcome_text": None}),
        (
            {"branch_id": branch, "name": "A", "welcome_enabled": "sometimes"},
            {"welcome_enabled": None},
        ),
        ({"branch_id": "x", "name": "A"}, {"branch_id": None}),
        ({"name": "A"}, {"branch_id": None}),
        ({"branch_id": branch, "name": "A", "colour": "red"}, {"colour": None}),
        ({"branch_id": foreign, "name": "A"}, {"branch_id": "unknown branch"}),
        ({"branch_id": 2**62, "name": "A"}, {"branch_id": "unknown branch"}),
    ]
    for body, fields in cases:
        r = await client.post(URL, json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
        got = r.json()["fields"]
        assert set(got) == set(fields), body
        assert all(got[k] == v for k, v in fields.items() if v), got
    body = {"branch_id": branch, "name": "A", "welcome_text": "x" * 480}
    assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201


async def test_name_unique_per_branch(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    b1 = await make_branch(session, tenant.church_id)
    b2 = await make_branch(session, tenant.church_id)
    assert (
        await client.post(URL, json={"branch_id": b1, "name": "Youth"}, headers=tenant.headers)
    ).status_code == 201
    r = await client.post(URL, json={"branch_id": b1, "name": "Youth"}, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["fields"] == {"name": "taken"}
    r = await client.post(URL, json={"branch_id": b2, "name": "Youth"}, headers=tenant.headers)
    assert r.status_code == 201
    # Renaming, or moving into a branch that has the name, conflicts too.
    other = await make_group(session, tenant.church_id, b1, "Men")
    r = await client.patch(f"{URL}/{other}", json={"name": "Youth"}, headers=tenant.headers)
    assert r.status_code == 409
    r = await client.patch(
        f"{URL}/{other}", json={"branch_id": b2, "name": "Youth"}, headers=tenant.headers
    )
    assert r.status_code == 409


async def test_groups_per_branch_limit(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    full = await make_branch(session, tenant.church_id)
    inside = await make_groups(session, tenant.church_id, full, 30)
    r = await client.post(URL, json={"branch_id": full, "name": "31st"}, headers=tenant.headers)
    assert r.status_code == 402
    got = r.json()
    assert got["error"] == "plan_limit_reached"
    assert (got["resource"], got["limit"], got["usage"]) == ("groups in this branch", 30, 30)

    # Moving a group into the full branch is refused; editing one inside it is fine.
    roomy = await make_branch(session, tenant.church_id)
    mover = await make_group(session, tenant.church_id, roomy)
    r = await client.patch(f"{URL}/{mover}", json={"branch_id": full}, headers=tenant.headers)
    assert r.status_code == 402 and r.json()["usage"] == 30
    r = await client.patch(
        f"{URL}/{inside[0]}", json={"branch_id": full, "name": "Renamed"}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    # A group leaving the full branch makes room.
    r = await client.patch(f"{URL}/{inside[1]}", json={"branch_id": roomy}, headers=tenant.headers)
    assert r.status_code == 200
    r = await client.post(URL, json={"branch_id": full, "name": "31st"}, headers=tenant.headers)
    assert r.status_code == 201


async def test_move_to_another_branch(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    b1 = await make_branch(session, tenant.church_id)
    b2 = await make_branch(session, tenant.church_id)
    foreign = await make_branch(session, other_tenant.church_id)
    gid = await make_group(session, tenant.church_id, b1)
    await make_members(session, tenant.church_id, 2, group_id=gid)
    r = await client.patch(f"{URL}/{gid}", json={"branch_id": b2}, headers=tenant.headers)
    assert r.status_code == 200 and (r.json()["branch_id"], r.json()["member_count"]) == (b2, 2)
    r = await client.patch(f"{URL}/{gid}", json={"branch_id": foreign}, headers=tenant.headers)
    assert r.status_code == 422 and r.json()["fields"] == {"branch_id": "unknown branch"}
    r = await client.get(f"{URL}/{gid}", headers=tenant.headers)
    assert r.json()["branch_id"] == b2


async def test_patch_validation(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    for body, field in [
        ({"name": None}, "name"),
        ({"branch_id": None}, "branch_id"),
        ({"welcome_enabled": None}, "welcome_enabled"),
        ({"welcome_text": "x" * 481}, "welcome_text"),
        ({"member_count": 3}, "member_count"),
    ]:
        r = await client.patch(f"{URL}/{gid}", json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
        assert list(r.json()["fields"]) == [field]
    r = await client.patch(
        f"{URL}/{gid}", json={"welcome_text": None, "description": None}, headers=tenant.headers
    )
    assert r.status_code == 200 and r.json()["welcome_text"] is None


async def test_list_filter_counts_and_pages(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    b1 = await make_branch(session, tenant.church_id)
    b2 = await make_branch(session, tenant.church_id)
    in_b1 = await make_groups(session, tenant.church_id, b1, 4)
    in_b2 = await make_groups(session, tenant.church_id, b2, 3)
    await make_members(session, tenant.church_id, 5, group_id=in_b1[1])
    foreign = await make_branch(session, other_tenant.church_id)
    await make_groups(session, other_tenant.church_id, foreign, 2)

    items = await walk(client, tenant, URL, limit=2)
    assert [g["id"] for g in items] == in_b1 + in_b2
    assert [g["member_count"] for g in items] == [0, 5, 0, 0, 0, 0, 0]
    assert [g["id"] for g in await walk(client, tenant, URL, branch_id=b2, limit=1)] == in_b2
    assert await walk(client, tenant, URL, branch_id=foreign) == []
    r = await client.get(URL, params={"branch_id": -1}, headers=tenant.headers)
    assert r.status_code == 422 and "branch_id" in r.json()["fields"]
    r = await client.get(URL, params={"cursor": "WyJhIl0"}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def test_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    branch = await make_branch(session, tenant.church_id)
    (first,) = await make_groups(session, tenant.church_id, branch, 1)
    await make_members(session, tenant.church_id, 3, group_id=first)
    with count_statements() as one:
        assert (await client.get(URL, headers=tenant.headers)).status_code == 200
    for _ in range(3):
        more = await make_groups(
            session, tenant.church_id, await make_branch(session, tenant.church_id), 33
        )
        await make_members(session, tenant.church_id, 2, group_id=more[0])
    with count_statements() as hundred:
        r = await client.get(URL, params={"limit": 200}, headers=tenant.headers)
    assert len(r.json()["items"]) == 100
    assert one.count == hundred.count == 2  # auth + the page


async def test_requires_a_valid_token(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    gid = await make_group(session, tenant.church_id, branch)
    (mid,) = await make_members(session, tenant.church_id, 1, group_id=gid)
    calls: list[tuple[str, str, Any]] = [
        ("GET", URL, None),
        ("POST", URL, {"branch_id": branch, "name": "New"}),
        ("GET", f"{URL}/{gid}", None),
        ("PATCH", f"{URL}/{gid}", {"name": "X"}),
        ("DELETE", f"{URL}/{gid}", None),
        ("GET", f"{URL}/{gid}/members", None),
        ("POST", f"{URL}/{gid}/members", {"member_ids": [mid]}),
        ("DELETE", f"{URL}/{gid}/members/{mid}", None),
    ]
    for headers in [{}, {"Authorization": "Bearer not-a-token"}]:
        for method, url, json in calls:
            r = await client.request(method, url, json=json, headers=headers)
            assert r.status_code == 401, (method, url, r.text)
    r = await client.get(f"{URL}/{gid}", headers=tenant.headers)
    assert r.json()["member_count"] == 1


async def test_another_churchs_group_is_404(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    gid = await make_group(
        session, other_tenant.church_id, await make_branch(session, other_tenant.church_id)
    )
    (theirs,) = await make_members(session, other_tenant.church_id, 1, group_id=gid)
    (mine,) = await make_members(session, tenant.church_id, 1)
    new = {"first_name": "New", "phone": "+12024561111"}
    for method, url, json in [
        ("GET", f"{URL}/{gid}", None),
        ("PATCH", f"{URL}/{gid}", {"name": "Mine"}),
        ("PATCH", f"{URL}/{gid}", {}),
        ("DELETE", f"{URL}/{gid}", None),
        ("GET", f"{URL}/{gid}/members", None),
        ("POST", f"{URL}/{gid}/members", {"member_ids": [mine]}),
        ("POST", f"{URL}/{gid}/members", {"member": new}),
        ("DELETE", f"{URL}/{gid}/members/{theirs}", None),
    ]:
        r = await client.request(method, url, json=json, headers=tenant.headers)
        assert r.status_code == 404 and r.json()["error"] == "not_found", (method, url, r.text)
    assert await memberships(session, gid) != {}
    assert (await memberships(session, gid)).keys() == {theirs}
    phones = await session.execute(select(Member.id).where(Member.phone == "+12024561111"))
    assert phones.all() == []


# --- memberships ---------------------------------------------------------------------------


async def test_add_by_ids(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    already = await make_members(session, tenant.church_id, 2, group_id=gid)
    fresh = await make_members(session, tenant.church_id, 3)
    (foreign,) = await make_members(session, other_tenant.church_id, 1)
    missing = 2**62
    ids = [*fresh, *already, fresh[0], foreign, missing]
    r = await client.post(f"{URL}/{gid}/members", json={"member_ids": ids}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "added": 3,
        "already_in_group": 2,
        "unknown_ids": sorted([foreign, missing]),
        "member": None,
        "member_created": None,
    }
    stored = await memberships(session, gid)
    assert stored.keys() == {*already, *fresh}
    assert all(due is None for _, due in stored.values())  # welcome texts are off
    r = await client.get(f"{URL}/{gid}", headers=tenant.headers)
    assert r.json()["member_count"] == 5


async def test_add_sets_welcome_due_on_new_memberships_only(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await make_group(
        session,
        tenant.church_id,
        await make_branch(session, tenant.church_id),
        welcome_enabled=True,
    )
    already = await make_members(session, tenant.church_id, 1, group_id=gid)
    fresh = await make_members(session, tenant.church_id, 2)
    r = await client.post(
        f"{URL}/{gid}/members", json={"member_ids": already + fresh}, headers=tenant.headers
    )
    assert (r.json()["added"], r.json()["already_in_group"]) == (2, 1)
    stored = await memberships(session, gid)
    assert stored[already[0]][1] is None
    for m in fresh:
        joined, due = stored[m]
        assert due - joined == timedelta(seconds=60)


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"member_ids": []}, {"member_ids"}),
        ({"member_ids": list(range(1, 1002))}, {"member_ids"}),
        ({"member_ids": [0]}, {"member_ids.0"}),
        ({"member_ids": ["a"]}, {"member_ids.0"}),
        ({}, {"member_ids", "member"}),
        (
            {"member_ids": [1], "member": {"first_name": "A", "phone": "+12024561111"}},
            {"member_ids", "member"},
        ),
        ({"member": {"first_name": "A", "phone": "nope"}}, {"member.phone"}),
        ({"member": {"phone": "+12024561111"}}, {"member.first_name"}),
        ({"member": {"first_name": "A", "phone": "+12024561111", "email": "x"}}, {"member.email"}),
        ({"members": [1]}, {"members"}),
    ],
)
async def test_add_validation(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    body: dict[str, Any],
    fields: set[str],
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    r = await client.post(f"{URL}/{gid}/members", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert set(r.json()["fields"]) == fields
    assert await memberships(session, gid) == {}


async def test_add_1000_ids_at_once(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    ids = await make_members(session, tenant.church_id, 400)
    body = {"member_ids": [*ids, *range(2**62, 2**62 + 600)]}
    with count_statements() as log:
        r = await client.post(f"{URL}/{gid}/members", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["added"], len(r.json()["unknown_ids"])) == (400, 600)
    assert log.count == 2  # auth + one set-based statement


async def test_add_by_phone_creates_then_reuses(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await make_group(
        session,
        tenant.church_id,
        await make_branch(session, tenant.church_id),
        welcome_enabled=True,
    )
    new = {"first_name": "Lydia", "last_name": "Purple", "phone": "(202) 456-1111"}
    r = await client.post(f"{URL}/{gid}/members", json={"member": new}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["added"], out["already_in_group"], out["member_created"]) == (1, 0, True)
    assert out["member"]["phone"] == "+12024561111"
    assert out["member"]["consent_source"] == "admin"
    mid = out["member"]["id"]
    assert (await memberships(session, gid))[mid][1] is not None

    # Same phone, another format and name: the member is reused as is.
    again = {"member": {"first_name": "Other", "phone": "+1 202 456 1111"}}
    r = await client.post(f"{URL}/{gid}/members", json=again, headers=tenant.headers)
    out = r.json()
    assert (out["added"], out["already_in_group"], out["member_created"]) == (0, 1, False)
    assert (out["member"]["id"], out["member"]["first_name"]) == (mid, "Lydia")

    # An existing member who is in no group yet joins.
    r = await client.post(
        URL,
        json={
            "branch_id": (await client.get(f"{URL}/{gid}", headers=tenant.headers)).json()[
                "branch_id"
            ],
            "name": "Second",
        },
        headers=tenant.headers,
    )
    second = r.json()["id"]
    r = await client.post(f"{URL}/{second}/members", json=again, headers=tenant.headers)
    assert (r.json()["added"], r.json()["member_created"]) == (1, False)


async def test_add_by_phone_respects_member_limit(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    starter = await make_tenant(session, plan="starter", status="active")
    gid = await make_group(
        session, starter.church_id, await make_branch(session, starter.church_id)
    )
    existing = await make_members(session, starter.church_id, 500)
    new = {"member": {"first_name": "New", "phone": "+12024561111"}}
    r = await client.post(f"{URL}/{gid}/members", json=new, headers=starter.headers)
    assert r.status_code == 402
    assert (r.json()["resource"], r.json()["limit"], r.json()["usage"]) == ("members", 500, 500)
    # Reusing an existing member creates nothing, so the full plan does not matter.
    phone = (
        await session.execute(select(Member.phone).where(Member.id == existing[0]))
    ).scalar_one()
    r = await client.post(
        f"{URL}/{gid}/members",
        json={"member": {"first_name": "X", "phone": phone}},
        headers=starter.headers,
    )
    assert r.status_code == 200 and r.json()["member"]["id"] == existing[0]
    count = select(func.count()).select_from(Member).where(Member.church_id == starter.church_id)
    assert (await session.execute(count)).scalar_one() == 500


async def test_list_group_members(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    gid = await make_group(session, tenant.church_id, branch)
    empty = await make_group(session, tenant.church_id, branch)
    ids = await make_members(session, tenant.church_id, 7, group_id=gid)
    await make_members(session, tenant.church_id, 2)  # in no group
    items = await walk(client, tenant, f"{URL}/{gid}/members", limit=3)
    assert [m["id"] for m in items] == ids
    assert all(m["joined_at"] and m["phone"].startswith("+1") for m in items)
    r = await client.get(f"{URL}/{empty}/members", headers=tenant.headers)
    assert r.status_code == 200 and r.json() == {"items": [], "next_cursor": None}
    r = await client.get(f"{URL}/{gid}/members", params={"cursor": "x"}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def test_list_group_members_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    await make_members(session, tenant.church_id, 1, group_id=gid)
    with count_statements() as one:
        assert (await client.get(f"{URL}/{gid}/members", headers=tenant.headers)).status_code == 200
    await make_members(session, tenant.church_id, 99, group_id=gid)
    with count_statements() as hundred:
        r = await client.get(f"{URL}/{gid}/members", params={"limit": 200}, headers=tenant.headers)
    assert len(r.json()["items"]) == 100
    assert one.count == hundred.count == 2  # auth + the page


async def test_remove_member(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    stay, leave = await make_members(session, tenant.church_id, 2, group_id=gid)
    (outsider,) = await make_members(session, tenant.church_id, 1)
    assert (
        await client.delete(f"{URL}/{gid}/members/{leave}", headers=tenant.headers)
    ).status_code == 204
    assert (await memberships(session, gid)).keys() == {stay}
    for mid in (leave, outsider, 2**62):
        r = await client.delete(f"{URL}/{gid}/members/{mid}", headers=tenant.headers)
        assert r.status_code == 404, r.text
    # The member still exists.
    assert (await client.get(f"/api/v1/members/{leave}", headers=tenant.headers)).status_code == 200
    r = await client.delete(f"{URL}/{gid}/members/0", headers=tenant.headers)
    assert r.status_code == 422


async def test_delete_group_keeps_members(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    gid = await make_group(session, tenant.church_id, await make_branch(session, tenant.church_id))
    ids = await make_members(session, tenant.church_id, 3, group_id=gid)
    assert (await client.delete(f"{URL}/{gid}", headers=tenant.headers)).status_code == 204
    assert await memberships(session, gid) == {}
    r = await client.get("/api/v1/members", headers=tenant.headers)
    assert [m["id"] for m in r.json()["items"]] == ids
