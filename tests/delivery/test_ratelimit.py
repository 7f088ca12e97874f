"""Per-number rate limits: local and Redis buckets, shared across processes, Redis fallback."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from delivery.support import Broadcast, assert_rate, deliver_all
from koinonia.config import Settings
from koinonia.delivery.dispatcher import Dispatcher, drain
from koinonia.delivery.ratelimit import LocalRateLimiter, RedisRateLimiter, build_rate_limiter
from koinonia.sms.sandbox import RunningSandbox

MakeSettings = Callable[..., Settings]
MakeBroadcast = Callable[..., Awaitable[Broadcast]]


async def test_two_processes_share_one_bucket_through_redis(
    redis_url: str | None,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
) -> None:
    if redis_url is None:
        pytest.skip("no REDIS_URL and no redis-server installed")
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    rate = 50.0
    b = await broadcast(101)
    # Two dispatchers with their own limiter objects stand for two worker processes.
    settings = make_settings(
        redis_url=redis_url,
        send_rate_per_number=rate,
        claim_batch_size=20,
        store_prefix=f"koinonia-test-{uuid.uuid4().hex}:",  # a fresh bucket
    )
    limiters = [build_rate_limiter(settings) for _ in range(2)]
    assert all(isinstance(lim, RedisRateLimiter) for lim in limiters)
    first, second = (Dispatcher(settings, limiter=lim) for lim in limiters)
    try:
        await asyncio.gather(drain(first), drain(second))
        await deliver_all(first, committed_session, b.message_id)
    finally:
        await first.close()
        await second.close()
    assert_rate(sandbox, rate, expected=101)


async def test_redis_down_falls_back_to_the_local_bucket_and_says_so_once() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", 1000.0)
    try:
        with capture_logs() as logs:
            assert all([await limiter.acquire("+15550100000") for _ in range(5)])
    finally:
        await limiter.close()
    assert [e["event"] for e in logs] == ["rate_limiter_redis_unavailable"]


def test_schedule_keeps_the_mean_rate_and_never_catches_up_in_a_burst() -> None:
    schedule = LocalRateLimiter(10.0).schedule  # one text per 100 ms
    take = schedule.take
    assert take("n", 1, now=100.0, horizon=0.005) == (1, 0.0)
    granted, wait = take("n", 1, now=100.05, horizon=0.005)
    assert granted == 0 and wait == pytest.approx(0.05)
    assert take("n", 1, now=100.13, horizon=0.005)[0] == 1  # 30 ms late: schedule kept ...
    granted, wait = take("n", 1, now=100.199, horizon=0.005)
    assert granted == 1 and wait == pytest.approx(0.001)  # ... so the next slot is at 100.2
    # The loop was stuck for two seconds: one text goes at once, the next waits a whole
    # interval, instead of twenty saved-up texts going back to back.
    assert take("n", 5, now=102.0, horizon=0.005) == (1, 0.0)
    granted, wait = take("n", 5, now=102.0, horizon=0.005)
    assert granted == 0 and wait == pytest.approx(0.1)


def test_fast_numbers_get_their_slots_in_batches() -> None:
    schedule = LocalRateLimiter(10_000.0).schedule  # 100 µs apart: 51 slots in [0, 5 ms]
    granted, wait = schedule.take("n", 500, now=10.0, horizon=0.005)
    assert (granted, wait) == (51, 0.0)


async def test_acquire_refuses_a_wait_beyond_max_wait_and_stops_on_request() -> None:
    limiter = LocalRateLimiter(2.0)  # a slot every 500 ms
    assert await limiter.acquire("n", max_wait=0)
    assert not await limiter.acquire("n", max_wait=0.1)
    stop = asyncio.Event()
    waiting = asyncio.create_task(limiter.acquire("n", stop=stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(waiting, 1) is False
