"""A short-lived cache of who a session is, so a request does not spend a statement on it.

Keyed by session id in the shared store (Redis in production). Logout, refresh-token reuse and
removing an admin delete the entry at once, so revocation is immediate wherever the store is
shared; with the in-process fallback and several processes, another process may honour a
revoked session until `auth_cache_ttl_s` runs out (production sets REDIS_URL).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import orjson

from koinonia.auth.context import AuthContext
from koinonia.kit.store import get_store


def key(session_id: str) -> str:
    return f"auth:{session_id}"


def decode(raw: bytes | None) -> AuthContext | None:
    """The context stored under `key(...)` (read by auth.deps together with the request's other
    store reads), or None (absent or unreadable)."""
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
        trial = data.pop("trial_ends_at")
        return AuthContext(**data, trial_ends_at=datetime.fromisoformat(trial) if trial else None)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


async def put(ctx: AuthContext, ttl_s: float) -> None:
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
    await get_store().set(key(ctx.session_id), orjson.dumps(data), ttl_s)


async def forget(session_ids: Iterable[str]) -> None:
    await get_store().delete(*(key(s) for s in session_ids))
