"""Per sending number rate limits: carriers cap messages per second per number (Twilio long
code 1, toll-free 3, short code 100), and going faster only buys 429s and filtering.

A token bucket in GCRA form (`kit/tokenbucket.py`): one "theoretical arrival time" (TAT) per
number, the moment the next text may go. Each process runs one pacer task per number that
hands out slots to the texts waiting in FIFO order, as many at once as fall within a short
horizon (5 ms), so a number at thousands of texts a second costs one wake-up per horizon
rather than one per text, while a number at 1-100/s is paced text by text. A text up to half
an interval late keeps the schedule (timer jitter does not drag the mean rate down); a number
that was idle, or an event loop that stalled, restarts the schedule from now, so late texts
never go out in a catch-up burst.

`LocalRateLimiter` keeps the TATs in the process; `RedisRateLimiter` keeps them in Redis (one
Lua script on Redis's clock: hosts need no synchronised clocks), so every worker process on
every host shares one bucket per number. If Redis fails, the local bucket takes over (logged
once) until Redis answers again.

Every decision is a `Grant` naming the slots it gave on the bucket's clock, and the local
bucket's clock is injectable, so what the limiter decides can be checked exactly (the tests do
so); the rates actually achieved on a machine are measured by the bench.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from koinonia.config import Settings
from koinonia.kit.logging import log
from koinonia.kit.tokenbucket import Grant, TokenBucket

HORIZON_S = 0.005  # slots this close are handed out together
MIN_SLEEP_S = 0.001  # a slot closer than this is taken at once (a timer costs more)
# How long to stay on the local bucket after a Redis error before trying Redis again, so an
# outage costs one timeout per window rather than one per text.
REDIS_RETRY_S = 5.0


class RateLimiter(Protocol):
    async def acquire(
        self, number: str, *, max_wait: float | None = None, stop: asyncio.Event | None = None
    ) -> bool:
        """Wait for `number`'s next slot. False, without a slot, when it would come later than
        `max_wait` seconds from now or `stop` is set while waiting."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[float | None]
    deadline: float | None  # monotonic
    stop: asyncio.Event | None


@dataclass(slots=True)
class _Queue:
    waiters: deque[_Waiter] = field(default_factory=deque)
    pacer: asyncio.Task[None] | None = None


class _Paced:
    """FIFO waiters per number and the pacer that hands them slots; subclasses take slots."""

    interval: float

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._queues: dict[str, _Queue] = {}
        self._clock = clock  # for waiters' deadlines (and the local bucket)

    async def _take(self, number: str, wanted: int) -> Grant:
        raise NotImplementedError

    async def acquire(
        self, number: str, *, max_wait: float | None = None, stop: asyncio.Event | None = None
    ) -> bool:
        queue = self._queues.setdefault(number, _Queue())
        if max_wait is not None and len(queue.waiters) * self.interval > max_wait:
            return False  # the queue ahead alone is longer than we may wait
        loop = asyncio.get_running_loop()
        deadline = None if max_wait is None else self._clock() + max_wait
        waiter = _Waiter(loop.create_future(), deadline, stop)
        queue.waiters.append(waiter)
        if queue.pacer is None or queue.pacer.done():
            queue.pacer = asyncio.create_task(self._pace(number, queue))
        try:
            offset = await waiter.future
        except asyncio.CancelledError:
            waiter.future.cancel()
            raise
        if offset is None:
            return False
        if offset >= MIN_SLEEP_S:
            await asyncio.sleep(offset)  # at most HORIZON_S
        return True

    async def _pace(self, number: str, queue: _Queue) -> None:
        waiters = queue.waiters
        try:
            while waiters:
                now = self._clock()
                # Drop waiters that gave up, were told to stop, or ran out of time.
                while waiters and (
                    waiters[0].future.done()
                    or (waiters[0].stop is not None and waiters[0].stop.is_set())
                ):
                    self._resolve(waiters.popleft(), None)
                if not waiters:
                    break
                granted, wait, _ = await self._take(number, len(waiters))
                if granted == 0:
                    head = waiters[0]
                    if head.deadline is not None and now + wait > head.deadline:
                        self._resolve(waiters.popleft(), None)
                        continue
                    await _sleep(wait - HORIZON_S / 2, head.stop)
                    continue
                for i in range(granted):
                    if not waiters:
                        break  # slots left unused: a harmless gap in the schedule
                    self._resolve(waiters.popleft(), max(0.0, wait + i * self.interval))
        except Exception:
            # Never leave texts waiting forever: they go back to the queue unsent.
            log.exception("rate_limiter_failed", number=number)
            while waiters:
                self._resolve(waiters.popleft(), None)
        finally:
            if self._queues.get(number) is queue and not waiters:
                del self._queues[number]

    @staticmethod
    def _resolve(waiter: _Waiter, offset: float | None) -> None:
        if not waiter.future.done():
            waiter.future.set_result(offset)

    async def _close_queues(self) -> None:
        pacers = [q.pacer for q in self._queues.values() if q.pacer is not None]
        for queue in self._queues.values():
            for waiter in queue.waiters:
                self._resolve(waiter, None)
        for pacer in pacers:
            pacer.cancel()
        await asyncio.gather(*pacers, return_exceptions=True)
        self._queues.clear()


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    """Sleep, waking early if `stop` is set."""
    if seconds <= 0:
        await asyncio.sleep(0)
    elif stop is None:
        await asyncio.sleep(seconds)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)


class LocalRateLimiter(_Paced):
    """One process's buckets (exact when a single process sends from a number)."""

    def __init__(self, rate: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(clock)
        self.bucket = TokenBucket(rate)
        self.interval = self.bucket.interval

    async def _take(self, number: str, wanted: int) -> Grant:
        return self.bucket.take(number, wanted, self._clock(), HORIZON_S)

    async def close(self) -> None:
        await self._close_queues()


# TokenBucket.take on Redis's clock (TIME, microseconds). KEYS[1] the number's TAT; ARGV wanted,
# interval_us, credit_us, horizon_us. Returns {granted, wait_us, first_slot_us}.
_TAKE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local wanted = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local credit = tonumber(ARGV[3])
local horizon = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if now - tat > credit then tat = now end
local wait = tat - now
if wait > horizon then return {0, math.floor(wait), string.format('%.0f', tat)} end
local granted = math.min(wanted, math.floor((horizon - wait) / interval) + 1)
local new_tat = tat + granted * interval
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX',
           math.floor((new_tat - now) / 1000) + 1000)
return {granted, math.floor(wait), string.format('%.0f', tat)}
"""


class RedisRateLimiter(_Paced):
    """Buckets shared by every process through Redis; the local bucket stands in on errors."""

    def __init__(self, url: str, rate: float, *, prefix: str = "koinonia:") -> None:
        import redis.asyncio as redis

        super().__init__()
        self.local = TokenBucket(rate)
        self.interval = self.local.interval
        self._args = [
            round(self.local.interval * 1_000_000),
            round(self.local.credit * 1_000_000),
            round(HORIZON_S * 1_000_000),
        ]
        self._prefix = f"{prefix}sms-rate:"
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._take_script = self._redis.register_script(_TAKE_LUA)
        self._down_until = 0.0  # monotonic; on the local bucket until then
        self._degraded = False

    async def _take(self, number: str, wanted: int) -> Grant:
        if time.monotonic() >= self._down_until:
            try:
                granted, wait_us, slot_us = await self._take_script(
                    keys=[self._prefix + number], args=[wanted, *self._args]
                )
            except Exception as exc:
                self._down_until = time.monotonic() + REDIS_RETRY_S
                if not self._degraded:
                    self._degraded = True
                    log.warning("rate_limiter_redis_unavailable", error=str(exc), fallback="local")
            else:
                if self._degraded:
                    self._degraded = False
                    log.info("rate_limiter_redis_recovered")
                return Grant(int(granted), int(wait_us) / 1_000_000, int(slot_us) / 1_000_000)
        return self.local.take(number, wanted, time.monotonic(), HORIZON_S)

    async def close(self) -> None:
        await self._close_queues()
        await self._redis.aclose()


def build_rate_limiter(settings: Settings) -> RateLimiter:
    """Redis-backed when REDIS_URL is set (shared by all workers), else in-process."""
    if settings.redis_url:
        return RedisRateLimiter(
            settings.redis_url, settings.send_rate_per_number, prefix=settings.store_prefix
        )
    return LocalRateLimiter(settings.send_rate_per_number)
