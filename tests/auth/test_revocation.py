"""Ending a session is durable: the cached session is marked ended only after the revocation
commits (never on rollback), a request that read the session before the commit cannot cache it
again afterwards, and a Redis hiccup during logout cannot bring the token back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from fixtures.factories import Tenant, make_tenant
from fixtures.redis_servers import HiccupProxy, real_redis_url
from koinonia.auth import security, service
from koinonia.config import Settings, get_settings
from koinonia.db.database import Database
from koinonia.kit.store import RedisStore, Store, get_store, init_store, use_store


class Boom(Exception):
    pass


def session_id(tenant: Tenant) -> str:
    return security.decode_access(get_settings(), tenant.access_token).session_id


@pytest.fixture
def cached_sessions(override_settings: Callable[..., Settings]) -> None:
    """The session cache on (the suite runs with it off), as in production."""
    override_settings(auth_cache_ttl_s=30.0)


class Watched:
    """Delegates to a store; `on_auth_write(key)` runs before any write to a session key."""

    def __init__(self, inner: Store, on_auth_write: Callable[[str], Awaitable[None]]) -> None:
        self.inner, self.on_auth_write = inner, on_auth_write

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if key.startswith("auth:"):
            await self.on_auth_write(key)
        await self.inner.set(key, value, ttl_s)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        await self.on_auth_write(key)
        return bool(await self.inner.add(key, value, ttl_s))

    async def set_durably(self, items: dict[str, bytes], ttl_s: float) -> bool:
        for key in items:
            await self.on_auth_write(key)
        return bool(await self.inner.set_durably(items, ttl_s))

    async def delete(self, *keys: str) -> None:
        for key in keys:
            if key.startswith("auth:"):
                await self.on_auth_write(key)
        await self.inner.delete(*keys)


@pytest.fixture
def restore_store() -> Iterator[None]:
    """The store the test found (the client's) is put back, for the client to close."""
    previous = get_store()
    yield
    use_store(previous)


async def _ended_in_database(engine: AsyncEngine, sid: str) -> bool:
    """What another connection sees: only committed data."""
    async with engine.connect() as conn:
        row = await conn.execute(
            text("SELECT revoked_at IS NOT NULL FROM auth_sessions WHERE id = :s"), {"s": sid}
        )
        ended = row.scalar_one_or_none()
    return ended is None or bool(ended)  # a deleted session has ended too


async def test_the_cache_learns_of_an_end_only_after_the_commit(
    committed_client: httpx.AsyncClient,
    committed_tenants: Callable[..., Awaitable[Tenant]],
    committed_session: AsyncSession,
    engine: AsyncEngine,
    cached_sessions: None,
    restore_store: None,
) -> None:
    tenant = await committed_tenants()
    co = await make_tenant(committed_session, church_id=tenant.church_id, role="CO_ADMIN")
    ends = {session_id(tenant), session_id(co)}
    seen: list[tuple[str, bool]] = []

    async def check(key: str) -> None:
        sid = key.removeprefix("auth:")
        if sid in ends:
            seen.append((sid, await _ended_in_database(engine, sid)))

    use_store(Watched(get_store(), check))
    for who in (tenant, co):
        assert (await committed_client.get("/api/v1/auth/me", headers=who.headers)).is_success
    seen.clear()  # caching the live sessions (before their ends) is fine
    r = await committed_client.delete(f"/api/v1/admins/{co.admin_id}", headers=tenant.headers)
    assert r.status_code == 204
    r = await committed_client.post("/api/v1/auth/logout", headers=tenant.headers)
    assert r.status_code == 204
    assert seen == [(session_id(co), True), (session_id(tenant), True)]
    for who in (tenant, co):
        r = await committed_client.get("/api/v1/auth/me", headers=who.headers)
        assert r.status_code == 401


async def test_a_reused_refresh_token_ends_the_session_in_the_cache_after_its_commit(
    committed_client: httpx.AsyncClient,
    committed_tenants: Callable[..., Awaitable[Tenant]],
    engine: AsyncEngine,
    cached_sessions: None,
    restore_store: None,
) -> None:
    """The request fails (401) after committing the revocation itself: the end is written to
    the cache after that commit, not dropped with the failed request, nor written before."""
    tenant = await committed_tenants()
    sid = session_id(tenant)
    seen: list[bool] = []

    async def check(key: str) -> None:
        if key == f"auth:{sid}":
            seen.append(await _ended_in_database(engine, sid))

    assert (await committed_client.get("/api/v1/auth/me", headers=tenant.headers)).is_success
    r = await committed_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert r.status_code == 200
    use_store(Watched(get_store(), check))
    r = await committed_client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert r.status_code == 401 and r.json()["error"] == "refresh_token_reused"
    assert seen == [True]
    r = await committed_client.get("/api/v1/auth/me", headers=tenant.headers)
    assert r.status_code == 401


async def test_a_rolled_back_logout_leaves_the_cache_alone(
    client: httpx.AsyncClient,
    database: Database,
    tenant: Tenant,
    cached_sessions: None,
    restore_store: None,
) -> None:
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).is_success
    writes: list[str] = []

    async def record(key: str) -> None:
        writes.append(key)

    use_store(Watched(get_store(), record))
    with pytest.raises(Boom):
        async with database.session() as session:
            await service.logout(session, session_id(tenant))
            raise Boom
    assert writes == []
    assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).is_success


async def test_a_request_that_read_the_session_before_the_logout_cannot_cache_it_again(
    committed_client: httpx.AsyncClient,
    committed_tenants: Callable[..., Awaitable[Tenant]],
    cached_sessions: None,
    restore_store: None,
) -> None:
    """The reader loads the live session from the database, then (held here) caches it only
    after the logout committed and marked the cache: its write must not resurrect the session."""
    tenant = await committed_tenants()
    reached, go = asyncio.Event(), asyncio.Event()
    held = False

    async def hold_the_first(key: str) -> None:
        nonlocal held
        if not held:
            held = True
            reached.set()
            await go.wait()

    use_store(Watched(get_store(), hold_the_first))
    reader = asyncio.create_task(committed_client.get("/api/v1/auth/me", headers=tenant.headers))
    await reached.wait()  # the reader has the live session in hand, not cached yet
    r = await committed_client.post("/api/v1/auth/logout", headers=tenant.headers)
    assert r.status_code == 204
    go.set()
    assert (await reader).status_code == 200  # it was live when it was read
    r = await committed_client.get("/api/v1/auth/me", headers=tenant.headers)
    assert r.status_code == 401


async def test_a_logout_during_a_redis_hiccup_is_not_undone(
    client: httpx.AsyncClient,
    tenant: Tenant,
    redis_hiccup: HiccupProxy,
    cached_sessions: None,
    restore_store: None,
) -> None:
    prefix = f"koinonia-test-hiccup-{id(redis_hiccup)}:"
    store = init_store(redis_hiccup.url, prefix)
    assert isinstance(store, RedisStore)
    try:
        for _ in range(2):  # cached, then served from the cache
            assert (await client.get("/api/v1/auth/me", headers=tenant.headers)).is_success
        redis_hiccup.paused = True
        r = await client.post("/api/v1/auth/logout", headers=tenant.headers)
        assert r.status_code == 204  # committed in the database; Redis did not take the mark
        redis_hiccup.resume()
        # Redis still holds the live session it cached before: this process does not trust it.
        r = await client.get("/api/v1/auth/me", headers=tenant.headers)
        assert r.status_code == 401
        # Another process, which never saw Redis fail, finds the mark once it has been written.
        other = RedisStore(real_redis_url() or "", prefix)
        try:
            if hasattr(store, "flush_unwritten"):
                assert await store.flush_unwritten()
            assert await other.get(f"auth:{session_id(tenant)}") == b"ended"
        finally:
            await other.delete(f"auth:{session_id(tenant)}")
            await other.close()
        # And a hiccup after the logout changes nothing either.
        redis_hiccup.paused = True
        r = await client.get("/api/v1/auth/me", headers=tenant.headers)
        assert r.status_code == 401
    finally:
        redis_hiccup.resume()
        await store.close()
