"""kit.store: atomic reserve/release on both stores, and RedisStore's circuit breaker against a
hung and a refusing Redis (counted in attempts, never timed)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest

from fixtures.redis_servers import HungServer, refusing_url
from koinonia.kit.store import (
    CONNECT_TIMEOUT_S,
    FAILURES_TO_OPEN,
    TIMEOUT_S,
    MemoryStore,
    RedisStore,
    Store,
    StoreUnavailable,
)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis (REDIS_URL)")
    redis_store = RedisStore(url, f"koinonia-test-store-{os.getpid()}:")
    await redis_store.delete("a", "b", "c", "added")
    yield redis_store
    await redis_store.delete("a", "b", "c", "added")
    await redis_store.close()


async def test_reserve_counts_only_within_every_limit(store: Store) -> None:
    limits = [("a", 2), ("b", 3)]
    assert [await store.reserve(limits, 60) for _ in range(3)] == [0, 0, 1]
    assert await store.get("a") == b"2" and await store.get("b") == b"2"  # refused: not counted
    await store.release(["a"])
    assert await store.reserve(limits, 60) == 0
    assert await store.reserve(limits, 60) == 1
    await store.release(["a", "b"], clear=["a"])
    assert await store.get("a") is None and await store.get("b") == b"2"
    await store.release(["c"])  # never below zero, nothing created
    assert await store.get("c") is None


async def test_concurrent_reservations_never_pass_the_limit(store: Store) -> None:
    results = await asyncio.gather(*(store.reserve([("a", 5)], 60) for _ in range(60)))
    assert results.count(0) == 5
    assert await store.get("a") == b"5"


def test_connections_get_longer_to_open_than_commands_to_answer() -> None:
    # 60 concurrent reservations on a loaded CI machine timed out opening their connections at
    # 0.5 s (the command timeout) and opened the breaker on a healthy Redis.
    store = RedisStore("redis://127.0.0.1:1/0")
    kwargs = store._redis.connection_pool.connection_kwargs
    assert (kwargs["socket_timeout"], kwargs["socket_connect_timeout"]) == (
        TIMEOUT_S,
        CONNECT_TIMEOUT_S,
    )
    assert CONNECT_TIMEOUT_S > TIMEOUT_S


async def test_add_never_overwrites(store: Store) -> None:
    assert await store.add("added", b"first", 60)
    assert not await store.add("added", b"second", 60)
    assert await store.get("added") == b"first"
    assert await store.set_durably({"added": b"third"}, 60)
    assert await store.get("added") == b"third"


async def _hammer(store: RedisStore, times: int) -> int:
    """Runs the request hot path's store call `times` times; how many raised StoreUnavailable."""
    failed = 0
    for _ in range(times):
        try:
            await store.get_many_and_incr(["auth:x", "cache:v:1"], "rl:church:1:0", 61)
        except StoreUnavailable:
            failed += 1
    return failed


async def test_a_hung_redis_opens_the_breaker_after_a_few_attempts(
    hung_redis: tuple[HungServer, str],
) -> None:
    server, url = hung_redis
    store = RedisStore(url, timeout_s=0.05, open_s=3600)
    try:
        assert await _hammer(store, 50) == 50
        assert store.is_open
        # Only the attempts that opened the breaker reached the server; the rest failed at once.
        assert store.attempts == FAILURES_TO_OPEN
        assert server.connections <= FAILURES_TO_OPEN
        with pytest.raises(StoreUnavailable):
            await store.get("anything")
        assert not await store.ping()
        assert store.attempts == FAILURES_TO_OPEN
    finally:
        await store.close()


async def test_a_refusing_redis_opens_the_breaker_too() -> None:
    store = RedisStore(refusing_url(), timeout_s=0.05, open_s=3600)
    try:
        assert await _hammer(store, 50) == 50
        assert store.is_open and store.attempts == FAILURES_TO_OPEN
    finally:
        await store.close()


async def test_the_breaker_probes_in_the_background_and_closes_when_redis_answers(
    hung_redis: tuple[HungServer, str],
) -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis (REDIS_URL)")
    _, hung_url = hung_redis
    store = RedisStore(hung_url, timeout_s=0.05, open_s=0)
    try:
        await _hammer(store, FAILURES_TO_OPEN)
        assert store.is_open
        # Redis is back at the address (the client's next connection reaches the real one).
        real = RedisStore(url)
        store._redis = real._redis
        with pytest.raises(StoreUnavailable):  # the request does not wait for the probe...
            await store.get("k")
        probe = store._probe
        assert probe is not None
        await probe  # ...which runs on its own
        assert not store.is_open
        assert await _hammer(store, 3) == 0
    finally:
        await store.close()


async def test_durable_writes_land_once_redis_answers_again(
    hung_redis: tuple[HungServer, str],
) -> None:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs a real Redis (REDIS_URL)")
    _, hung_url = hung_redis
    prefix = f"koinonia-test-durable-{os.getpid()}:"
    store = RedisStore(hung_url, prefix, timeout_s=0.05, open_s=3600)
    other = RedisStore(url, prefix)
    try:
        assert not await store.set_durably({"auth:s1": b"ended"}, 60)
        assert await other.get("auth:s1") is None
        store._redis = RedisStore(url)._redis  # Redis answers again
        assert await store.flush_unwritten()
        assert await other.get("auth:s1") == b"ended"
    finally:
        await other.delete("auth:s1")
        await store.close()
        await other.close()
