"""Per-number rate limits: local and Redis buckets, shared across processes, Redis fallback.

These assert what the limiter decides (the slots it grants, on an injected clock where it
matters), never wall-clock rates: the rates a machine achieves are the bench's business."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from delivery.support import (
    MakeBroadcast,
    MakeSettings,
    RecordingRedisLimiter,
    assert_paced,
    deliver_all,
    granted_slots,
    sent_phones,
)
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import Dispatcher, drain
from koinonia.delivery.ratelimit import LocalRateLimiter, RedisRateLimiter
from koinonia.kit.tokenbucket import Grant
from koinonia_sandbox import RunningSandbox


async def test_two_processes_share_one_bucket_through_redis(
    redis_url: str | None,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
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
    assert redis_url is not None and settings.redis_url == redis_url
    limiters = [
        RecordingRedisLimiter(redis_url, rate, prefix=settings.store_prefix) for _ in range(2)
    ]
    first, second = (Dispatcher(settings, committed_database, limiter=lim) for lim in limiters)
    try:
        with capture_logs() as logs:
            await asyncio.gather(drain(first), drain(second))
            await deliver_all(first, committed_session, b.message_id)
    finally:
        await first.close()
        await second.close()
    assert "rate_limiter_redis_unavailable" not in [e["event"] for e in logs]
    assert sorted(sent_phones(sandbox)) == sorted(set(sent_phones(sandbox)))
    assert len(sent_phones(sandbox)) == 101
    # Both processes sent, and their slots, merged, are one schedule: one bucket.
    assert all(lim.grants for lim in limiters)
    slots = granted_slots(*limiters)
    assert len(slots) >= 101
    assert_paced(slots, rate)


async def test_redis_down_falls_back_to_the_local_bucket_and_says_so_once() -> None:
    limiter = RedisRateLimiter("redis://127.0.0.1:1/0", 1000.0)
    try:
        with capture_logs() as logs:
            assert all([await limiter.acquire("+15550100000") for _ in range(5)])
    finally:
        await limiter.close()
    assert [e["event"] for e in logs] == ["rate_limiter_redis_unavailable"]


def test_schedule_keeps_the_mean_rate_and_never_catches_up_in_a_burst() -> None:
    schedule = LocalRateLimiter(10.0).bucket  # one text per 100 ms
    take = schedule.take
    assert take("n", 1, now=100.0, horizon=0.005) == Grant(1, 0.0, 100.0)
    granted, wait, slot = take("n", 1, now=100.05, horizon=0.005)
    assert granted == 0 and wait == pytest.approx(0.05) and slot == pytest.approx(100.1)
    # 30 ms late: the schedule is kept (the slot was 100.1) ...
    assert take("n", 1, now=100.13, horizon=0.005) == (1, pytest.approx(-0.03), 100.1)
    granted, wait, slot = take("n", 1, now=100.199, horizon=0.005)
    assert granted == 1 and wait == pytest.approx(0.001)  # ... so the next slot is at 100.2
    assert slot == pytest.approx(100.2)
    # The loop was stuck for two seconds: one text goes at once, the next waits a whole
    # interval, instead of twenty saved-up texts going back to back.
    assert take("n", 5, now=102.0, horizon=0.005) == Grant(1, 0.0, 102.0)
    granted, wait, slot = take("n", 5, now=102.0, horizon=0.005)
    assert granted == 0 and wait == pytest.approx(0.1) and slot == pytest.approx(102.1)


def test_fast_numbers_get_their_slots_in_batches() -> None:
    schedule = LocalRateLimiter(10_000.0).bucket  # 100 µs apart: 51 slots in [0, 5 ms]
    assert schedule.take("n", 500, now=10.0, horizon=0.005) == Grant(51, 0.0, 10.0)
    # The next batch starts where this one ended: no slot is handed out twice.
    granted, _, slot = schedule.take("n", 500, now=10.0, horizon=0.005)
    assert granted == 0 and slot == pytest.approx(10.0051)


class FrozenClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_acquire_refuses_a_wait_beyond_max_wait_and_stops_on_request() -> None:
    clock = FrozenClock()
    limiter = LocalRateLimiter(2.0, clock=clock)  # a slot every 500 ms
    try:
        assert await limiter.acquire("n", max_wait=0)
        # The next slot is 500 ms away on the limiter's clock, whatever the machine's load.
        assert not await limiter.acquire("n", max_wait=0.1)
        stop = asyncio.Event()
        waiting = asyncio.create_task(limiter.acquire("n", stop=stop))
        await asyncio.sleep(0)  # queued; the pacer sleeps towards the slot
        assert not waiting.done()
        stop.set()
        assert await waiting is False
    finally:
        await limiter.close()


async def test_acquire_with_a_moving_clock_grants_slots_one_interval_apart() -> None:
    clock = FrozenClock()
    limiter = LocalRateLimiter(4.0, clock=clock)  # a slot every 250 ms
    grants = []
    try:
        for _ in range(6):
            assert await limiter.acquire("n", max_wait=0.3)
            grants.append(clock.now)
            clock.now += 0.25
    finally:
        await limiter.close()
    assert grants == [pytest.approx(1000.0 + 0.25 * i) for i in range(6)]
