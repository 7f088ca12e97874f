from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import PASSWORD, Tenant, make_tenant
from koinonia.config import Settings

REGISTER = {
    "church_name": "St. Example",
    "timezone": "America/Chicago",
    "email": "pastor@example.org",
    "password": "a-long-enough-password",
    "first_name": "Paula",
    "last_name": "Pastor",
}


async def test_register_creates_trial_church_and_logs_in(client: httpx.AsyncClient) -> None:
    r = await client.post("/api/v1/auth/register", json=REGISTER)
    assert r.status_code == 201, r.text
    tokens = r.json()
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 900
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200
    body = me.json()
    assert body["role"] == "PRIMARY"
    assert body["subscription_status"] == "trial"
    assert body["plan"] == "starter"
    assert body["church_name"] == "St. Example"


async def test_register_validation_and_duplicate(client: httpx.AsyncClient) -> None:
    bad = {**REGISTER, "email": "not-an-email", "password": "short", "timezone": "Mars/Base"}
    r = await client.post("/api/v1/auth/register", json=bad)
    assert r.status_code == 422
    assert set(r.json()["fields"]) == {"email", "password", "timezone"}
    assert (await client.post("/api/v1/auth/register", json=REGISTER)).status_code == 201
    dup = {**REGISTER, "email": REGISTER["email"].upper()}
    r = await client.post("/api/v1/auth/register", json=dup)
    assert r.status_code == 409
    assert r.json()["fields"] == {"email": "taken"}


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/register", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["error"] == "validation_error"


async def test_login_refresh_rotation_and_reuse(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.post("/api/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    first = r.json()
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    # The new pair works, the refresh token may also come as a Bearer header.
    r = await client.post(
        "/api/v1/auth/refresh", headers={"Authorization": f"Bearer {second['refresh_token']}"}
    )
    assert r.status_code == 200
    third = r.json()
    # Reusing a spent refresh token revokes the whole family, including the newest tokens.
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 401
    assert r.json()["error"] == "refresh_token_reused"
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert r.status_code == 401
    me = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {third['access_token']}"}
    )
    assert me.status_code == 401


async def test_access_token_is_not_a_refresh_token(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tenant.access_token})
    assert r.status_code == 401
    r = await client.get(
        "/api/v1/auth/me", headers={"Authorization": f"Bearer {tenant.refresh_token}"}
    )
    assert r.status_code == 401


async def test_logout_revokes_access_and_refresh(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code == 200
    r = await client.post("/api/v1/auth/logout", headers=tenant.headers)
    assert r.status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code == 401
    r = await client.post("/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert r.status_code == 401


async def test_missing_and_garbage_tokens(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/v1/auth/me")
    assert r.status_code == 401 and r.json()["error"] == "not_authenticated"
    r = await client.get("/api/v1/auth/me", headers={"Authorization": "Bearer garbage"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


async def test_login_throttled_after_five_failures(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wrong = {"email": tenant.email, "password": "wrong-password"}
    for _ in range(5):
        assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    r = await client.post("/api/v1/auth/login", json=wrong)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    # Even the right password waits out the window for this account and address.
    right = {"email": tenant.email, "password": PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=right)).status_code == 429


async def test_unknown_email_is_401_not_404(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.org", "password": "whatever-it-is"}
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_credentials"


async def test_roles_primary_only_routes(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    co = await make_tenant(session, church_id=tenant.church_id, role="CO_ADMIN")
    r = await client.patch("/api/v1/church", json={"name": "Renamed"}, headers=co.headers)
    assert r.status_code == 403 and r.json()["error"] == "primary_only"
    r = await client.post(
        "/api/v1/admins", json={"email": "x@example.org", "first_name": "X"}, headers=co.headers
    )
    assert r.status_code == 403
    r = await client.delete(f"/api/v1/admins/{tenant.admin_id}", headers=co.headers)
    assert r.status_code == 403
    # Reading is fine for a co-admin.
    assert (await client.get("/api/v1/admins", headers=co.headers)).status_code == 200
    assert (await client.get("/api/v1/church", headers=co.headers)).status_code == 200


async def test_cached_sessions_still_end_at_logout_and_removal(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    override_settings: Callable[..., Settings],
    count_statements: Any,
) -> None:
    """With the session cache on, a known session costs no statement, and logout or removing
    the admin still ends it at once."""
    override_settings(auth_cache_ttl_s=30.0)
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code == 200
    with count_statements() as log:
        assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code == 200
    assert log.count == 0
    co = await make_tenant(session, church_id=tenant.church_id, role="CO_ADMIN")
    assert (await client.get("/api/v1/auth/me", headers=co.headers)).status_code == 200
    r = await client.delete(f"/api/v1/admins/{co.admin_id}", headers=tenant.headers)
    assert r.status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=co.headers)).status_code == 401
    assert (await client.post("/api/v1/auth/logout", headers=tenant.headers)).status_code == 204
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code == 401


async def test_one_account_from_many_addresses_is_held_too(
    app: Any, tenant: Tenant, connection: Any
) -> None:
    wrong = {"email": tenant.email, "password": "wrong-password"}
    for i in range(20):  # 20 addresses, one guess each: no pair reaches 5
        transport = httpx.ASGITransport(app=app, client=(f"10.0.0.{i}", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            assert (await c.post("/api/v1/auth/login", json=wrong)).status_code == 401
    transport = httpx.ASGITransport(app=app, client=("10.0.1.1", 1234))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        r = await c.post("/api/v1/auth/login", json={"email": tenant.email, "password": PASSWORD})
    assert r.status_code == 429
