"""Read-through cache of per-church JSON documents (stats dashboards) over kit.store.

Keys carry a per-church version: `cache:{church}:{version}:{name}[:{variant}]`. Invalidating a
church bumps its version (INCRBY on `cache:v:{church}`), so every cached read of that church
misses at once, in every process sharing the store (Redis), without finding or deleting keys;
the orphaned entries expire by their TTL. TTLs therefore only bound staleness the application
cannot see (delivery results written by workers and webhooks, until they invalidate too).

Versions move by random steps, and a missing version (never set, expired, evicted) is started
at a random value too: a version number is never reused, so an entry written under an older
incarnation of the counter can never be read back as current.

Each process also keeps the documents it read or loaded, by their versioned key, for a few
seconds (`_LOCAL_TTL_S`): an entry's key names its version, and the version is always read from
the store, so a local copy can only be served while its version is current; it saves the second
store round trip of a hit.

Every store failure degrades to the loader (the database), never to an error: a broken Redis
makes the cache a pass-through (and a request whose first store read failed does not try the
store again: `use_request_version(..., available=False)`). An invalidation the store cannot take
is logged; that church's documents are then as stale as their TTL allows. Lookups are counted
in `koinonia_cache_requests_total{name, result}` with result `hit`, `miss` or `error` (store
unavailable: loaded, not cached).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any

import orjson
from pydantic import BaseModel

from koinonia.kit.logging import log
from koinonia.kit.metrics import CACHE
from koinonia.kit.store import Store, StoreUnavailable, get_store

# A version lives a day from its creation; entries must live less than that.
VERSION_TTL_S = 24 * 3600
MAX_TTL_S = VERSION_TTL_S / 2
_STEP = 2**31

Loader = Callable[[], Awaitable[Any]]

# Documents this process read or loaded: versioned key -> (monotonic expiry, JSON bytes).
_LOCAL_TTL_S = 5.0
_LOCAL_MAX = 2048
_local: dict[str, tuple[float, bytes]] = {}


def _local_get(key: str) -> bytes | None:
    item = _local.get(key)
    if item is None:
        return None
    if item[0] < time.monotonic():
        _local.pop(key, None)
        return None
    return item[1]


def _local_put(key: str, value: bytes, ttl_s: float) -> None:
    if len(_local) >= _LOCAL_MAX:
        _local.clear()  # small documents, refilled in one read each: no LRU bookkeeping
    _local[key] = (time.monotonic() + min(ttl_s, _LOCAL_TTL_S), value)


# The metric's children by (name, result): `labels()` resolved them anew on every hit, a third
# of a cached lookup's cost.
_counters: dict[tuple[str, str], Any] = {}


def _count(name: str, result: str) -> None:
    counter = _counters.get((name, result))
    if counter is None:
        counter = _counters[(name, result)] = CACHE.labels(name, result)
    counter.inc()


def version_key(church_id: int) -> str:
    return f"cache:v:{church_id}"


# The church's version as read at the start of this request, with its authentication (one store
# round trip for both: auth.deps). Request-scoped: a context variable set in the request's task.
# The value is the raw store value (None when absent), or _UNAVAILABLE when the store failed.
_UNAVAILABLE = b""
_request_version: ContextVar[tuple[int, bytes | None] | None] = ContextVar(
    "cache_request_version", default=None
)


def use_request_version(church_id: int, raw: bytes | None, *, available: bool = True) -> None:
    """This request read the church's version already (raw store value, None when absent), or
    found the store unavailable (then its cached reads go straight to the database)."""
    _request_version.set((church_id, raw if available else _UNAVAILABLE))


def _entry_key(name: str, variant: str, church_id: int, version: int) -> str:
    key = f"cache:{church_id}:{version}:{name}"
    return f"{key}:{variant}" if variant else key


def _step() -> int:
    return random.randrange(1, _STEP)  # not security-sensitive: uniqueness only


def _encode_default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot cache {type(value).__name__} as JSON")


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, default=_encode_default)


async def _current_version(store: Store, church_id: int) -> int:
    """The church's cache version. Raises StoreUnavailable when the store cannot say."""
    read = _request_version.get()
    raw = read[1] if read is not None and read[0] == church_id else None
    if raw == _UNAVAILABLE:
        raise StoreUnavailable("get")
    if raw is None:
        raw = await store.get(version_key(church_id))
    if raw is not None:
        return int(raw)
    return await store.incr(version_key(church_id), VERSION_TTL_S, by=_step())


async def get_or_load_json(
    name: str, church_id: int, ttl_s: float, loader: Loader, *, variant: str = ""
) -> bytes:
    """The JSON bytes of `loader()`'s result (dicts, lists, scalars, dataclasses, datetimes,
    Pydantic models), from the cache when it holds them for the church's current version.

    `name` labels the metric (keep it low-cardinality); `variant` separates parameterised
    documents of one name (e.g. `days=30`). Loader errors propagate; store errors never do."""
    if not 0 < ttl_s <= MAX_TTL_S:
        raise ValueError(f"ttl_s must be in (0, {MAX_TTL_S}]")
    store = get_store()
    key: str | None = None
    try:
        version = await _current_version(store, church_id)
        key = _entry_key(name, variant, church_id, version)
        cached = _local_get(key)
        if cached is None:
            cached = await store.get(key)
            if cached is not None:
                _local_put(key, cached, ttl_s)
        if cached is not None:
            _count(name, "hit")
            return cached
    except StoreUnavailable:
        key = None  # the store logs its outages, once per cause
    except Exception as exc:
        key = None
        log.warning("cache_unavailable", op="get", name=name, error=repr(exc))
    _count(name, "miss" if key is not None else "error")
    value = _encode(await loader())
    if key is not None:
        _local_put(key, value, ttl_s)
        try:
            await store.set(key, value, ttl_s)
        except StoreUnavailable:
            pass
        except Exception as exc:
            log.warning("cache_unavailable", op="set", name=name, error=repr(exc))
    return value


async def get_or_load(
    name: str, church_id: int, ttl_s: float, loader: Loader, *, variant: str = ""
) -> Any:
    """`get_or_load_json`, decoded: plain JSON values (a cached model comes back as a dict)."""
    return orjson.loads(await get_or_load_json(name, church_id, ttl_s, loader, variant=variant))


async def invalidate_church(church_id: int) -> None:
    """Every cached document of the church misses from now on, in every process. Call it after
    the change is committed (a reader between the bump and the commit would cache old data
    under the new version): services register it with `db.effects.church_changed`. Never
    raises: a store outage is logged and the TTLs take over."""
    try:
        await get_store().incr(version_key(church_id), VERSION_TTL_S, by=_step())
    except StoreUnavailable:
        pass
    except Exception as exc:
        log.warning("cache_unavailable", op="invalidate", church_id=church_id, error=repr(exc))
