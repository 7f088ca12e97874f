"""Shared key-value store for caches, counters and rate limits: Redis when REDIS_URL is set,
otherwise an in-process dictionary (correct for one process; production sets REDIS_URL).

Every operation degrades instead of failing: if Redis is down, reads miss and writes are dropped,
and the caller falls back to the database (caches) or lets the request through (rate limits).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from koinonia.kit.logging import log


class Store(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...
    async def delete(self, *keys: str) -> None: ...
    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int: ...
    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        """`get` of each key and `incr(counter, ttl_s)` in one round trip (a request's hot
        path: who the session is, the church's cache version, its request count)."""
        ...

    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


class MemoryStore:
    def __init__(self, max_keys: int = 100_000) -> None:
        self._data: dict[str, tuple[float, bytes | int]] = {}
        self._max_keys = max_keys

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

    async def get(self, key: str) -> bytes | None:
        value = self._live(key)
        # Counters read back as bytes, as Redis returns them.
        return str(value).encode() if isinstance(value, int) else value

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        self._put(key, value, ttl_s)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        item = self._data.get(key)
        current = self._live(key)
        if current is None or not isinstance(current, int) or item is None:
            self._put(key, by, ttl_s)
            return by
        self._data[key] = (item[0], current + by)
        return current + by

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        return [await self.get(k) for k in keys], await self.incr(counter, ttl_s)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._data.clear()


class RedisStore:
    def __init__(self, url: str, prefix: str = "") -> None:
        import redis.asyncio as redis

        self._prefix = prefix
        self._redis = redis.Redis.from_url(
            url, socket_timeout=0.5, socket_connect_timeout=0.5, health_check_interval=30
        )
        self._down_logged_at = 0.0

    def _degraded(self, op: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._down_logged_at > 30:
            self._down_logged_at = now
            log.warning("redis_unavailable", op=op, error=str(exc))

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self._prefix + key)
            return value.encode() if isinstance(value, str) else value
        except Exception as exc:
            self._degraded("get", exc)
            return None

    async def set(self, key: str, value: bytes, ttl_s: float) -> None:
        try:
            await self._redis.set(self._prefix + key, value, px=max(int(ttl_s * 1000), 1))
        except Exception as exc:
            self._degraded("set", exc)

    async def delete(self, *keys: str) -> None:
        if not keys:
            return
        try:
            await self._redis.delete(*(self._prefix + k for k in keys))
        except Exception as exc:
            self._degraded("delete", exc)

    async def incr(self, key: str, ttl_s: float, by: int = 1) -> int:
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incrby(self._prefix + key, by)
                pipe.pexpire(self._prefix + key, max(int(ttl_s * 1000), 1), nx=True)
                value, _ = await pipe.execute()
            return int(value)
        except Exception as exc:
            self._degraded("incr", exc)
            return 0

    async def get_many_and_incr(
        self, keys: Sequence[str], counter: str, ttl_s: float
    ) -> tuple[list[bytes | None], int]:
        try:
            # Not a transaction: the reads and the count are independent; one round trip.
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.mget([self._prefix + k for k in keys])
                pipe.incrby(self._prefix + counter, 1)
                pipe.pexpire(self._prefix + counter, max(int(ttl_s * 1000), 1), nx=True)
                values, used, _ = await pipe.execute()
            return [v.encode() if isinstance(v, str) else v for v in values], int(used)
        except Exception as exc:
            self._degraded("get_many_and_incr", exc)
            return [None] * len(keys), 0

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except Exception:
            return False

    async def close(self) -> None:
        await self._redis.aclose()


_store: Store | None = None


def init_store(redis_url: str | None, prefix: str = "") -> Store:
    global _store
    _store = RedisStore(redis_url, prefix) if redis_url else MemoryStore()
    return _store


def get_store() -> Store:
    global _store
    if _store is None:
        _store = MemoryStore()
    return _store
