"""kit.cache: read-through per-church JSON cache with version invalidation, and its wiring into
the stats endpoints (hits run no SQL of their own, writes invalidate, a broken store falls back
to the database)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
import pytest
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch
from koinonia.kit import cache
from koinonia.kit.metrics import CACHE
from koinonia.kit.store import (
    MemoryStore,
    Store,
    StoreUnavailable,
    get_store,
    init_store,
    use_store,
)


class Counted:
    """A loader that counts its calls."""

    def __init__(self, value: Any) -> None:
        self.value, self.calls = value, 0

    async def __call__(self) -> Any:
        self.calls += 1
        return self.value


class BrokenStore:
    """Every operation raises, like a client whose server is gone."""

    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("store down")

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise ConnectionError("store down")

    async def delete(self, *keys: str) -> None:
        raise ConnectionError("store down")

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        raise ConnectionError("store down")

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        raise ConnectionError("store down")

    async def ping(self) -> bool:
        return False

    async def close(self) -> None:
        return None


class UnavailableStore(BrokenStore):
    """What RedisStore answers while Redis is down or its breaker is open."""

    failed_at = 0.0

    async def get(self, key: str) -> bytes | None:
        raise StoreUnavailable("get")

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        raise StoreUnavailable("set")

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        raise StoreUnavailable("incr")

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        raise StoreUnavailable("get_many_and_incr")


class BrokenCacheStore(MemoryStore):
    """Raises on the cache's keys only, so the API-level test breaks just what the cache
    touches (the request's authentication reads succeed)."""

    error: type[Exception] = ConnectionError

    async def get(self, key: str) -> bytes | None:
        if key.startswith("cache:"):
            raise self.error("store down")
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        if key.startswith("cache:"):
            raise self.error("store down")
        await super().set(key, value, ttl_s)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        if key.startswith("cache:"):
            raise self.error("store down")
        return await super().incr(key, ttl_s, by)

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        # One round trip for the authentication's reads; here its cache key reads as absent,
        # so the cache layer meets the failure itself, on its own read of the version.
        values = [None if k.startswith("cache:") else await MemoryStore.get(self, k) for k in keys]
        return values, await self.incr(counter, ttl_s)


class UnavailableCacheStore(BrokenCacheStore):
    """RedisStore's answer on the cache's keys while Redis is down: StoreUnavailable."""

    error = StoreUnavailable


@pytest.fixture
def memory_store() -> Iterator[MemoryStore]:
    store = init_store(None)
    assert isinstance(store, MemoryStore)
    yield store
    init_store(None)


def metric(name: str, result: str) -> float:
    return CACHE.labels(name, result)._value.get()  # type: ignore[no-any-return]


async def test_second_read_is_a_hit(memory_store: Store) -> None:
    loader = Counted({"n": 1, "at": datetime(2026, 1, 2, tzinfo=UTC)})
    hits, misses = metric("t.hit", "hit"), metric("t.hit", "miss")
    first = await cache.get_or_load("t.hit", 1, 60, loader)
    second = await cache.get_or_load("t.hit", 1, 60, loader)
    assert first == second == {"n": 1, "at": "2026-01-02T00:00:00+00:00"}
    assert loader.calls == 1
    assert metric("t.hit", "miss") == misses + 1 and metric("t.hit", "hit") == hits + 1


async def test_a_process_serves_its_copy_while_the_version_is_current(
    memory_store: MemoryStore,
) -> None:
    loader = Counted({"n": 1})
    await cache.get_or_load("t.local", 1, 60, loader)
    # The shared store lost the entry (evicted): this process still has it for its version.
    await memory_store.delete(*(k for k in list(memory_store._data) if k.endswith(":t.local")))
    assert await cache.get_or_load("t.local", 1, 60, loader) == {"n": 1}
    assert loader.calls == 1
    # Another process invalidates the church (its version moves in the shared store): the
    # local copy, filed under the old version, is never served again.
    await memory_store.incr(cache.version_key(1), 3600, by=7)
    assert await cache.get_or_load("t.local", 1, 60, loader) == {"n": 1}
    assert loader.calls == 2


async def test_churches_variants_and_names_are_separate(memory_store: Store) -> None:
    loader = Counted([1, 2])
    await cache.get_or_load("t.sep", 1, 60, loader)
    await cache.get_or_load("t.sep", 2, 60, loader)
    await cache.get_or_load("t.sep", 1, 60, loader, variant="days=7")
    await cache.get_or_load("t.other", 1, 60, loader)
    assert loader.calls == 4
    await cache.get_or_load("t.sep", 1, 60, loader, variant="days=7")
    assert loader.calls == 4


async def test_invalidate_church_misses_every_document_of_that_church_only(
    memory_store: Store,
) -> None:
    a, b, other = Counted("a"), Counted("b"), Counted("o")
    for _ in range(2):
        await cache.get_or_load("t.a", 1, 60, a)
        await cache.get_or_load("t.b", 1, 60, b, variant="x")
        await cache.get_or_load("t.a", 2, 60, other)
    assert (a.calls, b.calls, other.calls) == (1, 1, 1)
    await cache.invalidate_church(1)
    await cache.get_or_load("t.a", 1, 60, a)
    await cache.get_or_load("t.b", 1, 60, b, variant="x")
    await cache.get_or_load("t.a", 2, 60, other)
    assert (a.calls, b.calls, other.calls) == (2, 2, 1)


async def test_a_lost_version_never_revives_old_entries(memory_store: Store) -> None:
    """The version key can expire or be evicted; the next one must not be a number whose
    entries may still be stored (a counter restarting at 1 would serve stale data)."""
    loader = Counted("v1")
    await cache.invalidate_church(7)  # version exists and moved
    await cache.get_or_load("t.lost", 7, 60, loader)
    await memory_store.delete("cache:v:7")  # expired / evicted
    loader.value = "v2"
    await cache.invalidate_church(7)
    assert await cache.get_or_load("t.lost", 7, 60, loader) == "v2"
    await memory_store.delete("cache:v:7")
    loader.value = "v3"
    assert await cache.get_or_load("t.lost", 7, 60, loader) == "v3"
    assert loader.calls == 3


async def test_models_are_stored_as_json(memory_store: Store) -> None:
    class Doc(BaseModel):
        day: datetime
        n: int

    raw = await cache.get_or_load_json(
        "t.model", 1, 60, Counted(Doc(day=datetime(2026, 3, 1, tzinfo=UTC), n=2))
    )
    assert orjson.loads(raw) == {"day": "2026-03-01T00:00:00Z", "n": 2}
    with pytest.raises(TypeError):
        await cache.get_or_load_json("t.model", 2, 60, Counted(object()))


@pytest.mark.parametrize(
    "store", [BrokenStore(), UnavailableStore()], ids=["raising", "unavailable"]
)
async def test_store_failures_fall_back_to_the_loader(store: Store) -> None:
    init_store(None)
    use_store(store)
    try:
        loader = Counted({"ok": True})
        errors = metric("t.broken", "error")
        for _ in range(3):
            assert await cache.get_or_load("t.broken", 1, 60, loader) == {"ok": True}
        await cache.invalidate_church(1)  # never raises
        assert loader.calls == 3
        assert metric("t.broken", "error") == errors + 3
    finally:
        init_store(None)


async def test_loader_errors_propagate(memory_store: Store) -> None:
    async def failing() -> Any:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get_or_load("t.fail", 1, 60, failing)


@pytest.mark.parametrize("ttl", [0, -1, cache.VERSION_TTL_S])
async def test_ttl_must_be_shorter_than_a_version(memory_store: Store, ttl: float) -> None:
    with pytest.raises(ValueError):
        await cache.get_or_load("t.ttl", 1, ttl, Counted(1))


async def test_entries_expire(memory_store: Store) -> None:
    assert isinstance(memory_store, MemoryStore)
    loader = Counted(1)
    await cache.get_or_load("t.exp", 1, 0.001, loader)
    import asyncio

    await asyncio.sleep(0.01)
    await cache.get_or_load("t.exp", 1, 60, loader)
    assert loader.calls == 2


# --- wired into the API -----------------------------------------------------------------


def stats_statements(log: Any) -> list[str]:
    """Statements other than the auth lookup every authenticated request makes."""
    return [s for s in log.statements if "auth_sessions" not in s]


@pytest.mark.parametrize("path", ["summary", "branches", "messages?days=7"])
async def test_second_call_is_a_hit_without_sql(
    client: httpx.AsyncClient, tenant: Tenant, count_statements: Any, path: str
) -> None:
    url = f"/api/v1/stats/{path}"
    with count_statements() as first:
        r1 = await client.get(url, headers=tenant.headers)
    with count_statements() as second:
        r2 = await client.get(url, headers=tenant.headers)
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == r2.json()
    assert len(stats_statements(first)) == 1
    assert stats_statements(second) == [] and second.count == 1  # auth only


class CountingStore(MemoryStore):
    """Counts the store operations (each one round trip to Redis)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def get(self, key: str) -> bytes | None:
        self.calls.append("get")
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self.calls.append("set")
        await super().set(key, value, ttl_s)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        self.calls.append("incr")
        return await super().incr(key, ttl_s, by)

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        self.calls.append("get_many_and_incr")
        return [await MemoryStore.get(self, k) for k in keys], await MemoryStore.incr(
            self, counter, ttl_s
        )


async def test_a_cached_read_costs_one_store_round_trip(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    store = CountingStore()
    previous = use_store(store)  # replaced after the client fixture's init_store
    try:
        assert (await client.get("/api/v1/stats/summary", headers=tenant.headers)).is_success
        store.calls.clear()
        assert (await client.get("/api/v1/stats/summary", headers=tenant.headers)).is_success
        # Session, cache version and the church's request count together; the document from
        # this process's copy for that version.
        assert store.calls == ["get_many_and_incr"]
    finally:
        use_store(previous)


async def test_a_write_invalidates(
    client: httpx.AsyncClient, tenant: Tenant, count_statements: Any
) -> None:
    url = "/api/v1/stats/branches"
    assert (await client.get(url, headers=tenant.headers)).json()["items"] == []
    r = await client.post("/api/v1/branches", json={"name": "North"}, headers=tenant.headers)
    assert r.status_code == 201
    with count_statements() as log:
        body = (await client.get(url, headers=tenant.headers)).json()
    assert [b["name"] for b in body["items"]] == ["North"]
    assert len(stats_statements(log)) == 1  # a miss
    summary = (await client.get("/api/v1/stats/summary", headers=tenant.headers)).json()
    assert summary["branches"] == 1


async def test_failed_and_read_requests_do_not_invalidate(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Any
) -> None:
    url = "/api/v1/stats/summary"
    await make_branch(session, tenant.church_id, "Taken")
    assert (await client.get(url, headers=tenant.headers)).json()["branches"] == 1
    r = await client.post("/api/v1/branches", json={"name": "Taken"}, headers=tenant.headers)
    assert r.status_code == 409
    r = await client.post("/api/v1/branches", json={"name": ""}, headers=tenant.headers)
    assert r.status_code == 422
    assert (await client.get("/api/v1/branches", headers=tenant.headers)).status_code == 200
    with count_statements() as log:
        assert (await client.get(url, headers=tenant.headers)).status_code == 200
    assert stats_statements(log) == []  # still a hit


async def test_another_churchs_write_does_not_invalidate(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, count_statements: Any
) -> None:
    url = "/api/v1/stats/summary"
    await client.get(url, headers=tenant.headers)
    r = await client.post("/api/v1/branches", json={"name": "X"}, headers=other_tenant.headers)
    assert r.status_code == 201
    with count_statements() as log:
        assert (await client.get(url, headers=tenant.headers)).json()["branches"] == 0
    assert stats_statements(log) == []


@pytest.mark.parametrize(
    "store", [BrokenCacheStore(), UnavailableCacheStore()], ids=["raising", "unavailable"]
)
async def test_broken_store_falls_back_to_the_database(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, store: Store
) -> None:
    previous = use_store(store)  # replaced after the client fixture's init_store
    errors = metric("stats.branches", "error")
    try:
        await make_branch(session, tenant.church_id, "Only")
        for path in ("summary", "branches", "messages"):
            for _ in range(2):
                r = await client.get(f"/api/v1/stats/{path}", headers=tenant.headers)
                assert r.status_code == 200, r.text
        assert r.json()["days"] == 30
        r = await client.post("/api/v1/branches", json={"name": "Two"}, headers=tenant.headers)
        assert r.status_code == 201
        body = (await client.get("/api/v1/stats/branches", headers=tenant.headers)).json()
        assert [b["name"] for b in body["items"]] == ["Only", "Two"]
        assert metric("stats.branches", "error") == errors + 3
    finally:
        use_store(previous)
    assert get_store() is not store
