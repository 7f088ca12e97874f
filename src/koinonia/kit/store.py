"""Shared key-value store for caches, counters and rate limits: Redis when REDIS_URL is set,
otherwise an in-process dictionary (correct for one process; production sets REDIS_URL).

An operation the store cannot answer raises `StoreUnavailable`; each caller decides what that
means for it (README, "Decisions worth knowing"): caches miss and load from the database, limits
count in the process (`local_store()`), and nothing trusts a cached session soon after a failure.

`RedisStore` guards Redis with a circuit breaker, so a Redis that is down or hung costs a
bounded number of timeouts, not one per request:
- every command has a short timeout (`timeout_s`; opening a connection, `connect_timeout_s`)
  and no client-side retries (redis-py retries three times by default, which made a hung Redis
  cost up to 2 s a request);
- `failures_to_open` consecutive failures open the breaker: every operation then raises at once,
  without touching the network;
- after `open_s`, one background PING probes Redis (no request waits on it); if it answers, the
  breaker closes, otherwise it stays open for another `open_s`.

Atomicity: `reserve` checks and counts in one step (a Lua script on Redis; no await in between
in the process), so concurrent attempts can never all pass a check made before any of them was
counted.

Writes that must land (`set_durably`: a session that ended) are kept when Redis cannot take
them and written again, in the background, as soon as it answers.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from koinonia.kit.logging import log

T = TypeVar("T")


class StoreUnavailable(Exception):
    """The store did not answer (down, hung, refused) or its circuit breaker is open."""


class Store(Protocol):
    # time.monotonic() of the last operation that raised StoreUnavailable (-inf: never).
    failed_at: float

    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        """Set `key` only if it is absent; True when set."""
        ...

    async def set_durably(self, items: Mapping[str, bytes], ttl_s: float) -> bool:
        """Set every key (overwriting). When the store cannot take them now, they are kept and
        written as soon as it answers again (unless their TTL ran out first); False then."""
        ...

    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int: ...
    async def reserve(self, limits: Sequence[tuple[str, int]], ttl_s: float) -> int:
        """Count one use of every key, atomically and only if each stays within its limit
        (a new key lives `ttl_s`). 0 when counted; otherwise the 1-based position of the first
        key already at its limit, and nothing is counted."""
        ...

    async def release(self, keys: Sequence[str], *, clear: Sequence[str] = ()) -> None:
        """Take back one counted use of each of `keys` (never below zero); delete `clear`."""
        ...

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        """`get` of each key and `incr(counter, ttl_s)` in one round trip (a request's hot
        path: who the session is, the church's cache version, its request count)."""
        ...

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryStore:
    """The in-process store. No operation awaits anything, so each is atomic in the event loop."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._data: dict[str, tuple[float, bytes | int]] = {}
        self._max_keys = max_keys
        self.failed_at = -math.inf  # never fails

    def _live(self, key: str) -> bytes | int | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] < time.monotonic():
            self._data.pop(key, None)
            return None
        return item[1]

    def _put(self, key: str, value: bytes | int, ttl_s: float) -> None:
        if len(self._data) >= self._max_keys:
            now = time.monotonic()
            for k in [k for k, (exp, _) in self._data.items() if exp < now]:
                del self._data[k]
            if len(self._data) >= self._max_keys:
                self._data.pop(next(iter(self._data)))
        self._data[key] = (time.monotonic() + ttl_s, value)

    def _count(self, key: str, ttl_s: float, by: int) -> int:
        item = self._data.get(key)
        current = self._live(key)
        if current is None or not isinstance(current, int) or item is None:
            self._put(key, by, ttl_s)
            return by
        self._data[key] = (item[0], current + by)
        return current + by

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        # Counters read back as bytes, as Redis returns them.
        return str(value).encode() if isinstance(value, int) else value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._put(key, value, ttl_s)

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        if self._live(key) is not None:
            return False
        self._put(key, value, ttl_s)
        return True

    async def set_durably(self, items: Mapping[str, bytes], ttl_s: float) -> bool:
        for key, value in items.items():
            self._put(key, value, ttl_s)
        return True

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        return self._count(key, ttl_s, by)

    async def reserve(self, limits: Sequence[tuple[str, int]], ttl_s: float) -> int:
        for position, (key, limit) in enumerate(limits, start=1):
            current = self._live(key)
            if isinstance(current, int) and current >= limit:
                return position
        for key, _ in limits:
            self._count(key, ttl_s, 1)
        return 0

    async def release(self, keys: Sequence[str], *, clear: Sequence[str] = ()) -> None:
        for key in keys:
            current, item = self._live(key), self._data.get(key)
            if isinstance(current, int) and current > 0 and item is not None:
                self._data[key] = (item[0], current - 1)
        for key in clear:
            self._data.pop(key, None)

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        return [await self.get(k) for k in keys], self._count(counter, ttl_s, 1)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


# Count one use of every key if none is at its limit (KEYS: counters; ARGV: their limits, then
# the TTL in ms for a new counter). Returns 0, or the 1-based position of the key at its limit.
_RESERVE = """
local n = #KEYS
for i = 1, n do
  if tonumber(redis.call('GET', KEYS[i]) or '0') >= tonumber(ARGV[i]) then return i end
end
for i = 1, n do
  if redis.call('INCR', KEYS[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ARGV[n + 1]) end
end
return 0
"""

# Take back one use of each counter still above zero (KEYS[1..ARGV[1]]), delete the rest.
_RELEASE = """
local n = tonumber(ARGV[1])
for i = 1, #KEYS do
  if i <= n then
    if tonumber(redis.call('GET', KEYS[i]) or '0') > 0 then redis.call('DECR', KEYS[i]) end
  else
    redis.call('DEL', KEYS[i])
  end
end
return 0
"""

# A Redis on the same network answers in well under a millisecond; the timeout is long enough
# that a busy event loop (hundreds of concurrent requests on two cores) does not fail a healthy
# Redis (0.25 s did, opening new connections under load), and the breaker bounds what a Redis
# that is really down or hung costs: FAILURES_TO_OPEN timeouts, then nothing for OPEN_S.
TIMEOUT_S = 0.5
# Opening a connection gets longer: under a burst (60 logins at once on a loaded 2-core CI
# machine) new connections' handshakes queued behind each other past 0.5 s and opened the
# breaker on a healthy Redis. A hung Redis still accepts TCP (its kernel does), so it costs
# TIMEOUT_S per command as before; only an unreachable host that drops packets costs this.
CONNECT_TIMEOUT_S = 2.0
FAILURES_TO_OPEN = 3
OPEN_S = 2.0
DURABLE_RETRY_S = 0.5


def _ms(ttl_s: float) -> int:
    return max(int(ttl_s * 1000), 1)


class RedisStore:
    def __init__(
        self,
        url: str,
        prefix: str = "",
        *,
        timeout_s: float = TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        failures_to_open: int = FAILURES_TO_OPEN,
        open_s: float = OPEN_S,
    ) -> None:
        import redis.asyncio as redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self._errors: tuple[type[BaseException], ...] = (RedisError, OSError, TimeoutError)
        self._prefix = prefix
        self._redis = redis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=connect_timeout_s,
            health_check_interval=30,
            # The breaker decides when to try again; a retry would multiply each timeout.
            retry=Retry(NoBackoff(), 0),
        )
        self._reserve = self._redis.register_script(_RESERVE)
        self._release = self._redis.register_script(_RELEASE)
        self.failed_at = -math.inf
        self._failures_to_open, self._open_s = failures_to_open, open_s
        self._failures = 0  # consecutive
        self._open_until: float | None = None  # monotonic; None: the breaker is closed
        self._probe: asyncio.Task[None] | None = None
        self._down_logged_at = -math.inf
        # Durable writes Redis has not taken yet: key -> (value, monotonic expiry).
        self._unwritten: dict[str, tuple[bytes, float]] = {}
        self._rewrite: asyncio.Task[None] | None = None
        self.attempts = 0  # commands sent to Redis (probes excluded): for tests and debugging

    # --- the breaker ------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._open_until is not None

    def _unavailable(self, op: str, exc: BaseException | None = None) -> StoreUnavailable:
        self.failed_at = time.monotonic()
        if exc is not None:
            self._failures += 1
            if self._failures >= self._failures_to_open and self._open_until is None:
                self._open_until = self.failed_at + self._open_s
                log.warning("redis_breaker_open", op=op, error=str(exc), for_s=self._open_s)
            elif self.failed_at - self._down_logged_at > 30:
                self._down_logged_at = self.failed_at
                log.warning("redis_unavailable", op=op, error=str(exc))
        return StoreUnavailable(op)

    def _allowed(self) -> bool:
        if self._open_until is None:
            return True
        if time.monotonic() >= self._open_until and self._probe is None:
            self._probe = asyncio.get_running_loop().create_task(self._background_probe())
        return False

    async def _background_probe(self) -> None:
        try:
            await self._try_close()
        finally:
            self._probe = None

    async def _try_close(self) -> bool:
        """Half-open: one PING; the breaker closes if Redis answers, and what `set_durably` could
        not write is written at once. Otherwise it stays open for another `open_s`."""
        try:
            answered = bool(await self._redis.ping())
        except Exception:
            answered = False
        if not answered:
            self._open_until = time.monotonic() + self._open_s
            return False
        if self._open_until is not None:
            self._failures, self._open_until = 0, None
            log.info("redis_breaker_closed")
        return await self._write_unwritten()

    async def _call(self, op: str, command: Callable[[], Awaitable[T]]) -> T:
        if not self._allowed():
            raise self._unavailable(op)
        self.attempts += 1
        try:
            result = await command()
        except self._errors as exc:
            raise self._unavailable(op, exc) from exc
        self._failures = 0
        return result

    # --- durable writes ---------------------------------------------------------------------

    async def _write_unwritten(self) -> bool:
        now = time.monotonic()
        items = {k: v for k, v in self._unwritten.items() if v[1] > now}
        self._unwritten = dict(items)
        if not items:
            return True

        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, (value, expires) in items.items():
                    pipe.set(self._prefix + key, value, px=_ms(expires - now))
                await pipe.execute()

        try:
            await self._call("set_durably", write)
        except StoreUnavailable:
            return False
        for key, item in items.items():
            if self._unwritten.get(key) is item:
                del self._unwritten[key]
        return True

    async def _keep_rewriting(self) -> None:
        try:
            while self._unwritten:
                await asyncio.sleep(DURABLE_RETRY_S)
                await self._write_unwritten()
        finally:
            self._rewrite = None

    async def flush_unwritten(self) -> bool:
        """Write what `set_durably` could not, now (probing Redis first if the breaker is
        open); True when nothing is left."""
        if self._open_until is not None:
            return await self._try_close()
        return await self._write_unwritten()

    async def set_durably(self, items: Mapping[str, bytes], ttl_s: float) -> bool:
        expires = time.monotonic() + ttl_s
        for key, value in items.items():
            self._unwritten[key] = (value, expires)
        if await self._write_unwritten():
            return True
        if self._rewrite is None:
            self._rewrite = asyncio.get_running_loop().create_task(self._keep_rewriting())
        return False

    # --- operations -------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        value = await self._call("get", lambda: self._redis.get(self._prefix + key))
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        await self._call("set", lambda: self._redis.set(self._prefix + key, value, px=_ms(ttl_s)))

    async def add(self, key: str, value: bytes, ttl_s: float) -> bool:
        done = await self._call(
            "add", lambda: self._redis.set(self._prefix + key, value, px=_ms(ttl_s), nx=True)
        )
        return bool(done)

    async def delete(self, *keys: str) -> None:
        if keys:
            await self._call(
                "delete", lambda: self._redis.delete(*(self._prefix + k for k in keys))
            )

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        async def command() -> Any:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(self._prefix + key, by)
                pipe.pexpire(self._prefix + key, _ms(ttl_s), nx=True)
                return await pipe.execute()

        value, _ = await self._call("incr", command)
        return int(value)

    async def reserve(self, limits: Sequence[tuple[str, int]], ttl_s: float) -> int:
        keys = [self._prefix + key for key, _ in limits]
        args = [limit for _, limit in limits] + [_ms(ttl_s)]
        return int(await self._call("reserve", lambda: self._reserve(keys=keys, args=args)))

    async def release(self, keys: Sequence[str], *, clear: Sequence[str] = ()) -> None:
        names = [self._prefix + key for key in (*keys, *clear)]
        if names:
            await self._call("release", lambda: self._release(keys=names, args=[len(keys)]))

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        async def command() -> Any:
            # Not a transaction: the reads and the count are independent; one round trip.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self._prefix + k for k in keys])
                pipe.incrby(self._prefix + counter, 1)
                pipe.pexpire(self._prefix + counter, _ms(ttl_s), nx=True)
                return await pipe.execute()

        values, used, _ = await self._call("get_many_and_incr", command)
        return [v.encode() if isinstance(v, str) else v for v in values], int(used)

    async def ping(self) -> bool:
        try:
            return bool(await self._call("ping", self._redis.ping))
        except StoreUnavailable:
            return False

    async def close(self) -> None:
        for task in (self._probe, self._rewrite):
            if task is not None:
                task.cancel()
        await self._redis.aclose()


_store: Store | None = None
_local: MemoryStore | None = None


def init_store(redis_url: str | None, prefix: str = "") -> Store:
    global _store
    _store = RedisStore(redis_url, prefix) if redis_url else MemoryStore()
    return _store


def use_store(store: Store | None) -> Store | None:
    """Make `store` the process's shared store (None: `get_store()` makes an in-process one
    when next asked); returns the store it replaces. `init_store` builds one from settings;
    this installs one already built (a test's stand-in)."""
    global _store
    previous, _store = _store, store
    return previous


def get_store() -> Store:
    global _store
    if _store is None:
        _store = MemoryStore()
    return _store


def local_store() -> Store:
    """This process's own store: where limits count while the shared store is unavailable (the
    shared store itself when that is in-process already)."""
    global _local
    store = get_store()
    if isinstance(store, MemoryStore):
        return store
    if _local is None:
        _local = MemoryStore()
    return _local
