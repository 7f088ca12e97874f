"""Limits keep limiting whatever the store does: the login throttle and the per-church rate
limit with the in-process store, the real Redis, a hung Redis and a refusing one; concurrent
wrong passwords are checked at most up to the limit; a broken Redis costs a bounded number of
attempts, not one per request."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

import koinonia.kit.store as store_module
from fixtures.factories import PASSWORD, Tenant
from fixtures.redis_servers import HungServer, refusing_url
from koinonia.auth import security
from koinonia.config import Settings
from koinonia.kit.store import MemoryStore, RedisStore, Store, get_store, use_store

STORES = ["memory", "redis", "hung", "refused"]


@pytest.fixture(params=STORES)
async def store(
    request: pytest.FixtureRequest, hung_redis: tuple[HungServer, str]
) -> AsyncIterator[Store]:
    """Installed after the client fixtures' own (request them first)."""
    prefix = f"koinonia-test-throttle-{os.getpid()}-{id(request)}:"
    if request.param == "memory":
        chosen: Store = MemoryStore()
    elif request.param == "redis":
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("needs a real Redis (REDIS_URL)")
        chosen = RedisStore(url, prefix)
    elif request.param == "hung":
        chosen = RedisStore(hung_redis[1], prefix)
    else:
        chosen = RedisStore(refusing_url(), prefix)
    previous = get_store()
    use_store(chosen)
    yield chosen
    use_store(previous)
    await chosen.close()


WRONG = "wrong-password"


async def test_login_throttle_holds(
    client: httpx.AsyncClient, tenant: Tenant, store: Store
) -> None:
    wrong = {"email": tenant.email, "password": WRONG}
    for _ in range(5):
        assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 429
    right = {"email": tenant.email, "password": PASSWORD}
    assert (await client.post("/api/v1/auth/login", json=right)).status_code == 429


async def test_a_success_takes_its_attempt_back(
    client: httpx.AsyncClient, tenant: Tenant, store: Store
) -> None:
    right = {"email": tenant.email, "password": PASSWORD}
    for _ in range(8):  # more than the limit, all successful
        assert (await client.post("/api/v1/auth/login", json=right)).status_code == 200
    wrong = {"email": tenant.email, "password": WRONG}
    for _ in range(5):
        assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 401
    assert (await client.post("/api/v1/auth/login", json=wrong)).status_code == 429


async def test_concurrent_wrong_passwords_are_checked_at_most_up_to_the_limit(
    committed_client: httpx.AsyncClient,
    committed_tenants: Callable[..., Awaitable[Tenant]],
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tenant = await committed_tenants()
    checked = 0
    verify = security.verify_password

    async def counted(hashed: str | None, password: str) -> bool:
        nonlocal checked
        checked += 1
        return await verify(hashed, password)

    monkeypatch.setattr(security, "verify_password", counted)
    wrong = {"email": tenant.email, "password": WRONG}
    answers = await asyncio.gather(
        *(committed_client.post("/api/v1/auth/login", json=wrong) for _ in range(60))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [401] * 5 + [429] * 55
    assert checked == 5


async def test_the_church_rate_limit_holds(
    client: httpx.AsyncClient,
    tenant: Tenant,
    store: Store,
    override_settings: Callable[..., Settings],
) -> None:
    override_settings(church_rate_limit_per_min=3)
    # 7 requests: even split across a minute boundary, one window holds 4 of them.
    codes = [
        (await client.get("/api/v1/auth/me", headers=tenant.headers)).status_code for _ in range(7)
    ]
    assert 429 in codes and set(codes) <= {200, 429}


@pytest.mark.parametrize("broken", ["hung", "refused"])
async def test_a_broken_redis_costs_a_bounded_number_of_attempts(
    client: httpx.AsyncClient,
    tenant: Tenant,
    hung_redis: tuple[HungServer, str],
    broken: str,
) -> None:
    server, url = hung_redis
    # No probe during the test (open_s): every attempt counted below is a request's.
    store = RedisStore(url if broken == "hung" else refusing_url(), "t:", open_s=3600)
    previous = get_store()
    use_store(store)
    try:
        for path in ("/api/v1/auth/me", "/api/v1/stats/summary") * 15:
            assert (await client.get(path, headers=tenant.headers)).status_code == 200
        r = await client.post("/api/v1/branches", json={"name": "N"}, headers=tenant.headers)
        assert r.status_code == 201
        assert store.is_open
        # The attempts that opened the breaker, then none: every later request went straight
        # to the database (and the limits counted in the process).
        assert store.attempts == store_module.FAILURES_TO_OPEN
        if broken == "hung":
            assert server.connections <= store_module.FAILURES_TO_OPEN
    finally:
        use_store(previous)
        await store.close()
