"""Members API: create, list (filters, search, pages), detail with groups, patch, delete."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.database import StatementLog
from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from koinonia.models import GroupMember, Member

URL = "/api/v1/members"
Counter = Callable[[], AbstractContextManager[StatementLog]]


async def make_member(
    session: AsyncSession, church_id: int, first: str, last: str, phone: str, **kw: Any
) -> int:
    stmt = insert(Member).values(
        church_id=church_id, first_name=first, last_name=last, phone=phone, **kw
    )
    mid = (await session.execute(stmt.returning(Member.id))).scalar_one()
    await session.commit()
    return int(mid)


async def walk(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> list[int]:
    """Every id of every page, in order, failing on a repeated id."""
    seen: list[int] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        r = await client.get(URL, params=query, headers=tenant.headers)
        assert r.status_code == 200, r.text
        seen += [m["id"] for m in r.json()["items"]]
        cursor = r.json()["next_cursor"]
        if not cursor:
            assert len(seen) == len(set(seen))
            return seen


async def test_create_get_patch_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"first_name": "Grace", "last_name": "Hopper", "phone": "(202) 456-1111"}
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    member = r.json()
    assert member["phone"] == "+12024561111"
    assert (member["consent"], member["consent_source"]) == ("opted_in", "admin")
    assert member["consent_changed_at"] is not None and member["email"] is None
    mid = member["id"]

    r = await client.get(f"{URL}/{mid}", headers=tenant.headers)
    assert r.status_code == 200 and r.json() == {**member, "groups": []}
    # Lists and searches serialise rows directly (not through MemberOut): byte for byte the
    # same member as the pydantic-built responses.
    for params in ({}, {"q": "grace"}, {"q": "4561111"}):
        r = await client.get(URL, params=params, headers=tenant.headers)
        assert r.status_code == 200 and r.json() == {"items": [member], "next_cursor": None}

    r = await client.patch(
        f"{URL}/{mid}",
        json={"last_name": "Brewster", "email": "grace@example.org", "phone": "202.456.2222"},
        headers=tenant.headers,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["first_name"], got["last_name"]) == ("Grace", "Brewster")
    assert (got["phone"], got["email"]) == ("+12024562222", "grace@example.org")

    r = await client.patch(f"{URL}/{mid}", json={"email": None}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["email"] is None

    assert (await client.delete(f"{URL}/{mid}", headers=tenant.headers)).status_code == 204
    assert (await client.get(f"{URL}/{mid}", headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"{URL}/{mid}", headers=tenant.headers)).status_code == 404


async def test_create_opted_out(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"first_name": "Ann", "phone": "+12024563333", "consent": "opted_out"}
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 201 and r.json()["consent"] == "opted_out"
    assert r.json()["last_name"] == ""


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"first_name": "A", "phone": "+1 202 456"}, {"phone": "too short"}),
        ({"first_name": "A", "phone": "abc"}, {"phone": "not a number"}),
        ({"first_name": "", "phone": "+12024561111"}, {"first_name": None}),
        ({"first_name": "A", "phone": "+12024561111", "email": "nope"}, {"email": None}),
        ({"first_name": "A", "phone": "+12024561111", "consent": "maybe"}, {"consent": None}),
        ({"first_name": "A", "phone": "+12024561111", "age": 3}, {"age": None}),
        ({"first_name": "A" * 101, "phone": "+12024561111"}, {"first_name": None}),
        ({"last_name": "A"}, {"first_name": None, "phone": None}),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], fields: dict[str, Any]
) -> None:
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    got = r.json()["fields"]
    assert set(got) == set(fields)
    for name, reason in fields.items():
        if reason:
            assert got[name] == reason


async def test_phone_unique_per_church(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = {"first_name": "A", "phone": "+1 202 456 1111"}
    assert (await client.post(URL, json=first, headers=tenant.headers)).status_code == 201
    again = {"first_name": "B", "phone": "(202) 456-1111"}
    r = await client.post(URL, json=again, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["fields"] == {"phone": "taken"}
    # The same phone in another church is another member.
    assert (await client.post(URL, json=again, headers=other_tenant.headers)).status_code == 201

    r = await client.post(
        URL, json={"first_name": "C", "phone": "+12024562222"}, headers=tenant.headers
    )
    r = await client.patch(
        f"{URL}/{r.json()['id']}", json={"phone": "202-456-1111"}, headers=tenant.headers
    )
    assert r.status_code == 409 and r.json()["fields"] == {"phone": "taken"}


async def test_plan_member_limit(client: httpx.AsyncClient, session: AsyncSession) -> None:
    starter = await make_tenant(session, plan="starter", status="active")
    await make_members(session, starter.church_id, 500)
    body = {"first_name": "One", "phone": "+12024561111"}
    r = await client.post(URL, json=body, headers=starter.headers)
    assert r.status_code == 402
    got = r.json()
    assert got["error"] == "plan_limit_reached"
    assert (got["resource"], got["limit"], got["usage"], got["remaining"]) == (
        "members",
        500,
        500,
        0,
    )


async def test_unlimited_plan(client: httpx.AsyncClient, session: AsyncSession) -> None:
    pro = await make_tenant(session, plan="pro", status="active")
    await make_members(session, pro.church_id, 501)
    body = {"first_name": "One", "phone": "+12024561111"}
    assert (await client.post(URL, json=body, headers=pro.headers)).status_code == 201


async def test_consent_changes_are_stamped(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    (mid,) = await make_members(session, tenant.church_id, 1)
    r = await client.patch(f"{URL}/{mid}", json={"consent": "opted_out"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["consent"], out["consent_source"]) == ("opted_out", "admin")
    assert out["consent_changed_at"] is not None
    # Setting the same state again is not a change: the time stays.
    r = await client.patch(
        f"{URL}/{mid}", json={"consent": "opted_out", "first_name": "Z"}, headers=tenant.headers
    )
    assert r.json()["consent_changed_at"] == out["consent_changed_at"]
    r = await client.patch(f"{URL}/{mid}", json={"consent": "opted_in"}, headers=tenant.headers)
    assert r.json()["consent"] == "opted_in"


async def test_patch_validation_and_empty_body(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    (mid,) = await make_members(session, tenant.church_id, 1)
    before = (await client.get(f"{URL}/{mid}", headers=tenant.headers)).json()
    r = await client.patch(f"{URL}/{mid}", json={}, headers=tenant.headers)
    assert r.status_code == 200 and r.json() == before
    for body, field in [
        ({"first_name": None}, "first_name"),
        ({"phone": None}, "phone"),
        ({"consent": None}, "consent"),
        ({"phone": "+1 202 456 1111 ext 3"}, "phone"),
        ({"email": "x@"}, "email"),
        ({"church_id": 1}, "church_id"),
    ]:
        r = await client.patch(f"{URL}/{mid}", json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
        assert list(r.json()["fields"]) == [field]
    assert (await client.get(f"{URL}/{mid}", headers=tenant.headers)).json() == before


async def test_detail_lists_groups(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    g1 = await make_group(session, tenant.church_id, branch, "Choir")
    g2 = await make_group(session, tenant.church_id, branch, "Youth")
    (mid,) = await make_members(session, tenant.church_id, 1, group_id=g2)
    await session.execute(
        insert(GroupMember).values(group_id=g1, member_id=mid, church_id=tenant.church_id)
    )
    await session.commit()
    r = await client.get(f"{URL}/{mid}", headers=tenant.headers)
    assert r.json()["groups"] == [
        {"id": g1, "name": "Choir", "branch_id": branch},
        {"id": g2, "name": "Youth", "branch_id": branch},
    ]


async def test_detail_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    branch = await make_branch(session, tenant.church_id)
    (mid,) = await make_members(session, tenant.church_id, 1)
    with count_statements() as none:
        await client.get(f"{URL}/{mid}", headers=tenant.headers)
    groups = [await make_group(session, tenant.church_id, branch) for _ in range(10)]
    await session.execute(
        insert(GroupMember),
        [{"group_id": g, "member_id": mid, "church_id": tenant.church_id} for g in groups],
    )
    await session.commit()
    with count_statements() as ten:
        r = await client.get(f"{URL}/{mid}", headers=tenant.headers)
    assert len(r.json()["groups"]) == 10
    assert none.count == ten.count == 2


async def test_requires_a_valid_token(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    (mid,) = await make_members(session, tenant.church_id, 1)
    for headers in [{}, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic x"}]:
        for method, url, json in [
            ("GET", URL, None),
            ("POST", URL, {"first_name": "A", "phone": "+12024561111"}),
            ("GET", f"{URL}/{mid}", None),
            ("PATCH", f"{URL}/{mid}", {"first_name": "B"}),
            ("DELETE", f"{URL}/{mid}", None),
        ]:
            r = await client.request(method, url, json=json, headers=headers)
            assert r.status_code == 401, (method, url, r.text)
            assert r.json()["error"] in {"not_authenticated", "unauthorized", "invalid_token"}
    assert (await client.get(f"{URL}/{mid}", headers=tenant.headers)).json()["first_name"] == (
        "Member0"
    )


async def test_another_churchs_member_is_404(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    branch = await make_branch(session, other_tenant.church_id)
    group = await make_group(session, other_tenant.church_id, branch)
    (mid,) = await make_members(session, other_tenant.church_id, 1, group_id=group)
    for method, json in [
        ("GET", None),
        ("PATCH", {"first_name": "X"}),
        ("PATCH", {}),
        ("DELETE", None),
    ]:
        r = await client.request(method, f"{URL}/{mid}", json=json, headers=tenant.headers)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    # Filters naming another church's group or branch match nothing.
    for params in [{}, {"group_id": group}, {"branch_id": branch}]:
        r = await client.get(URL, params=params, headers=tenant.headers)
        assert r.json() == {"items": [], "next_cursor": None}
    r = await client.get(f"{URL}/{mid}", headers=other_tenant.headers)
    assert r.json()["first_name"] == "Member0"


async def test_filters(client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant) -> None:
    b1 = await make_branch(session, tenant.church_id)
    b2 = await make_branch(session, tenant.church_id)
    g1 = await make_group(session, tenant.church_id, b1)
    g2 = await make_group(session, tenant.church_id, b1)
    g3 = await make_group(session, tenant.church_id, b2)
    in_g1 = await make_members(session, tenant.church_id, 3, group_id=g1)
    in_g2 = await make_members(session, tenant.church_id, 2, group_id=g2, consent="opted_out")
    in_g3 = await make_members(session, tenant.church_id, 2, group_id=g3)
    loose = await make_members(session, tenant.church_id, 2)
    # In two groups of b1: listed once for the branch.
    await session.execute(
        insert(GroupMember).values(group_id=g2, member_id=in_g1[0], church_id=tenant.church_id)
    )
    await session.commit()

    assert await walk(client, tenant, limit=2) == in_g1 + in_g2 + in_g3 + loose
    assert await walk(client, tenant, group_id=g1) == in_g1
    assert await walk(client, tenant, group_id=g2) == [in_g1[0], *in_g2]
    assert await walk(client, tenant, branch_id=b1, limit=1) == in_g1 + in_g2
    assert await walk(client, tenant, branch_id=b2) == in_g3
    assert await walk(client, tenant, consent="opted_out") == in_g2
    assert await walk(client, tenant, consent="opted_in", branch_id=b1) == in_g1
    assert await walk(client, tenant, group_id=g3, branch_id=b1) == []
    r = await client.get(URL, params={"consent": "unknown"}, headers=tenant.headers)
    assert r.status_code == 422 and "consent" in r.json()["fields"]
    r = await client.get(URL, params={"group_id": 0}, headers=tenant.headers)
    assert r.status_code == 422 and "group_id" in r.json()["fields"]


async def test_search(client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant) -> None:
    c = tenant.church_id
    jose = await make_member(session, c, "José", "Álvarez", "+12024561111")
    mary = await make_member(session, c, "Mary Ann", "O'Neil", "+12024562222")
    pct = await make_member(session, c, "Ten", "100%", "+12024567777")
    under = await make_member(session, c, "Low_Dash", "X", "+12024568888")
    await make_member(session, c, "Lowe", "Dash", "+12024569999")

    async def search(q: str) -> list[int]:
        return await walk(client, tenant, q=q)

    assert await search("jose") == [jose]
    assert await search("ALVAREZ") == [jose]
    assert await search("sé álv") == [jose]
    assert await search("ann o'n") == [mary]
    assert await search("  mary  ") == [mary]
    # LIKE wildcards in q are literal.
    assert await search("n 100%") == [pct]
    assert await search("%") == []  # 1–2 characters match name prefixes only
    assert sorted(await search("lo")) == [under, under + 1]
    assert await search("w_d") == [under]
    assert await search("\\") == []
    # Phone digits, 4 or more, in any format.
    assert await search("2222") == [mary]
    assert await search("(202) 456-2222") == [mary]
    assert await search("456") == []  # 3 digits: a name search only
    assert await search("45611") == [jose]
    assert await search("") == await walk(client, tenant)
    r = await client.get(URL, params={"q": "x" * 101}, headers=tenant.headers)
    assert r.status_code == 422 and "q" in r.json()["fields"]


async def test_search_pages_and_other_churches(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    ids = await make_members(session, tenant.church_id, 7, first_name="Abigail")
    await make_members(session, tenant.church_id, 3, first_name="Zed")
    await make_members(session, other_tenant.church_id, 3, first_name="Abigail")
    assert await walk(client, tenant, q="abig", limit=3) == ids


async def test_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    branch = await make_branch(session, tenant.church_id)
    group = await make_group(session, tenant.church_id, branch)
    await make_members(session, tenant.church_id, 1, group_id=group)
    params: list[dict[str, str | int]] = [
        {"limit": 200},
        {"limit": 200, "group_id": group, "branch_id": branch, "consent": "opted_in"},
        {"limit": 200, "q": "member"},
    ]
    one = []
    for p in params:
        with count_statements() as log:
            assert (await client.get(URL, params=p, headers=tenant.headers)).status_code == 200
        one.append(log)
    await make_members(session, tenant.church_id, 99, group_id=group)
    for p, before in zip(params, one, strict=True):
        with count_statements() as log:
            r = await client.get(URL, params=p, headers=tenant.headers)
        assert len(r.json()["items"]) == 100
        # auth + the page (+ a search plans itself for its q: SET LOCAL plan_cache_mode)
        assert log.count == before.count == (3 if "q" in p else 2)


async def test_delete_removes_memberships(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    branch = await make_branch(session, tenant.church_id)
    group = await make_group(session, tenant.church_id, branch)
    (mid,) = await make_members(session, tenant.church_id, 1, group_id=group)
    assert (await client.delete(f"{URL}/{mid}", headers=tenant.headers)).status_code == 204
    left = await session.execute(select(GroupMember.member_id).where(GroupMember.group_id == group))
    assert left.all() == []
