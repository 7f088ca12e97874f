from __future__ import annotations

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_tenant


async def test_get_and_patch_church(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.get("/api/v1/church", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["id"] == tenant.church_id
    patch = {
        "name": "New Name",
        "timezone": "Europe/London",
        "conversation_mode": "inbox",
        "quiet_hours_start": "21:00",
        "quiet_hours_end": "08:00",
        "sms_number": "+1 (202) 555-0199",
    }
    r = await client.patch("/api/v1/church", json=patch, headers=tenant.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"] == "New Name" and body["conversation_mode"] == "inbox"
    assert body["quiet_hours_start"] == "21:00" and body["sms_number"] == "+12025550199"


async def test_patch_church_validation(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.patch(
        "/api/v1/church",
        json={"timezone": "Nowhere/City", "conversation_mode": "party", "plan": "pro"},
        headers=tenant.headers,
    )
    assert r.status_code == 422
    assert set(r.json()["fields"]) == {"timezone", "conversation_mode", "plan"}
    r = await client.patch(
        "/api/v1/church", json={"quiet_hours_start": "21:00"}, headers=tenant.headers
    )
    assert r.status_code == 422


async def test_sms_number_unique_across_churches(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    r = await client.get("/api/v1/church", headers=other_tenant.headers)
    taken = r.json()["sms_number"]
    r = await client.patch("/api/v1/church", json={"sms_number": taken}, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["fields"] == {"sms_number": "taken"}


async def test_invite_list_remove_co_admin(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post(
        "/api/v1/admins",
        json={"email": "helper@example.org", "first_name": "Hal"},
        headers=tenant.headers,
    )
    assert r.status_code == 201, r.text
    invited = r.json()
    assert invited["role"] == "CO_ADMIN" and len(invited["temporary_password"]) >= 12
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": "helper@example.org", "password": invited["temporary_password"]},
    )
    assert login.status_code == 200
    r = await client.get("/api/v1/admins", headers=tenant.headers)
    assert [a["role"] for a in r.json()["items"]] == ["PRIMARY", "CO_ADMIN"]
    assert "password_hash" not in r.json()["items"][0]
    r = await client.delete(f"/api/v1/admins/{invited['id']}", headers=tenant.headers)
    assert r.status_code == 204
    # Their login is gone with the account.
    token = login.json()["access_token"]
    me = await client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 401


async def test_primary_cannot_be_removed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.delete(f"/api/v1/admins/{tenant.admin_id}", headers=tenant.headers)
    assert r.status_code == 422


async def test_invite_conflict_and_plan_limit(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    starter = await make_tenant(session, plan="starter", status="active")
    r = await client.post(
        "/api/v1/admins",
        json={"email": starter.email, "first_name": "Dup"},
        headers=starter.headers,
    )
    assert r.status_code == 409
    ok = await client.post(
        "/api/v1/admins",
        json={"email": "one@example.org", "first_name": "One"},
        headers=starter.headers,
    )
    assert ok.status_code == 201
    r = await client.post(
        "/api/v1/admins",
        json={"email": "two@example.org", "first_name": "Two"},
        headers=starter.headers,
    )
    assert r.status_code == 402 and (r.json()["limit"], r.json()["usage"]) == (1, 1)


async def test_admins_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: object
) -> None:
    with count_statements() as one:  # type: ignore[operator]
        await client.get("/api/v1/admins", headers=tenant.headers)
    for _ in range(20):
        await make_tenant(session, church_id=tenant.church_id, role="CO_ADMIN")
    with count_statements() as many:  # type: ignore[operator]
        r = await client.get("/api/v1/admins", headers=tenant.headers)
    assert len(r.json()["items"]) == 21
    assert one.count == many.count
