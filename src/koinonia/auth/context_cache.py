"""A short-lived cache of who a session is, so a request does not spend a statement on it.

Keyed by session id in the shared store (Redis in production). The database is the truth; the
cache only repeats what it said, and never outlives a revocation:

- An entry holds positive state the database confirmed (`put`, after `load_context` found the
  session live), written only if the key is absent (SET NX), so it can never overwrite an end.
- When a session ends (logout, refresh-token reuse, an admin removed), `end_after_commit`
  writes an "ended" marker over its entry once the transaction has committed (never before: a
  request in between would cache the still-live session again). Ended is final (session ids are
  never reused), so the marker is true for as long as it lives: the lifetime of an access token,
  after which no token of that session can be valid. A reader that loaded the session before
  the commit cannot cache it again afterwards: its SET NX finds the marker.
- If the store cannot take the marker (down, hung), the store keeps it and writes it as soon as
  it answers again (`Store.set_durably`). Meanwhile an entry cached before may still be in the
  store: every process that saw the store fail ignores cached entries for `auth_cache_ttl_s`
  after its last failure (`trusted`), i.e. until every entry written before the failure has
  expired, and goes to the database instead. A process that never saw the store fail (a
  partition between one API process and Redis) can honour such an entry until the marker lands.
- With the in-process store and several processes, another process may honour a revoked
  session until `auth_cache_ttl_s` runs out (production sets REDIS_URL).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from datetime import datetime
from typing import Final

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.config import get_settings
from koinonia.db.session import on_commit
from koinonia.kit.store import Store, StoreUnavailable, get_store

ENDED: Final = b"ended"


def key(session_id: str) -> str:
    return f"auth:{session_id}"


# Decoded entries by their stored bytes: a client sends the same session's requests for minutes,
# and parsing its entry again cost more than the store read. Decoding is a pure function of the
# bytes (what the entry says, not whether it is still current: that is the store read's
# answer, made on every request), so a copy can never be stale.
_DECODED_MAX = 10_000
_decoded: dict[bytes, AuthContext] = {}


def decode(raw: bytes | None) -> AuthContext | None:
    """The context stored under `key(...)` (read by auth.deps together with the request's other
    store reads), or None (absent, ended or unreadable: see `is_ended`)."""
    if raw is None or raw == ENDED:
        return None
    ctx = _decoded.get(raw)
    if ctx is not None:
        return ctx
    try:
        data = orjson.loads(raw)
        trial = data.pop("trial_ends_at")
        ctx = AuthContext(**data, trial_ends_at=datetime.fromisoformat(trial) if trial else None)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None
    if len(_decoded) >= _DECODED_MAX:
        _decoded.clear()
    _decoded[raw] = ctx
    return ctx


def is_ended(raw: bytes | None) -> bool:
    """The session is known to have ended (committed in the database): refuse it."""
    return raw == ENDED


def trusted(store: Store, ttl_s: float) -> bool:
    """A cached positive entry may be used: this process has not seen the store fail within
    the last `ttl_s` (an end the store missed during a failure can leave such an entry behind;
    every entry written before the failure has expired `ttl_s` after it)."""
    return time.monotonic() - store.failed_at >= ttl_s


async def put(ctx: AuthContext, ttl_s: float) -> None:
    """Cache a context the database just confirmed, unless the key holds anything (an end)."""
    if ttl_s <= 0:
        return
    data = {
        "admin_id": ctx.admin_id,
        "church_id": ctx.church_id,
        "session_id": ctx.session_id,
        "role": ctx.role,
        "email": ctx.email,
        "church_name": ctx.church_name,
        "plan_name": ctx.plan_name,
        "subscription_status": ctx.subscription_status,
        "trial_ends_at": ctx.trial_ends_at.isoformat() if ctx.trial_ends_at else None,
    }
    with contextlib.suppress(StoreUnavailable):  # not cached: the next request asks the database
        await get_store().add(key(ctx.session_id), orjson.dumps(data), ttl_s)


async def mark_ended(session_ids: Iterable[str]) -> None:
    """Write the end of these sessions over their entries (kept and retried by the store if it
    cannot take them now). Only for ends that are committed."""
    ids = list(session_ids)
    if ids:
        settings = get_settings()
        ttl_s = max(settings.access_token_ttl_s, settings.auth_cache_ttl_s)
        await get_store().set_durably({key(s): ENDED for s in ids}, ttl_s)


def end_after_commit(session: AsyncSession, session_ids: Iterable[str]) -> None:
    """The sessions end in this transaction: mark them ended in the cache once it commits."""
    ids = list(session_ids)
    if ids:

        async def mark() -> None:
            await mark_ended(ids)

        on_commit(session, mark)
