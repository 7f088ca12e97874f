"""The hot reads (koinonia.hot_reads) answer exactly as the FastAPI routes they stand in for:
same status, headers and bytes, same refusals, the rate limit counted, writes seen at once, and
no database statement for a cached answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_members
from koinonia.auth import deps, security
from koinonia.config import get_settings
from koinonia.hot_reads import HotReads
from koinonia.kit.store import get_store

# Per request, these name the request and its timing: the rest must be equal.
VARYING = {"x-request-id", "server-timing"}

PATHS = [
    "/api/v1/stats/summary",
    "/api/v1/stats/branches?days=7",
    "/api/v1/stats/messages",
    "/api/v1/members?limit=2",
    "/api/v1/members",
]


@pytest.fixture
def hot_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths the hot reads answered."""
    calls: list[str] = []
    answer = HotReads.answer

    async def spy(self: HotReads, route: Any, arguments: Any, scope: Any) -> Any:
        calls.append(scope["path"])
        return await answer(self, route, arguments, scope)

    monkeypatch.setattr(HotReads, "answer", spy)
    return calls


@contextmanager
def normal_path(app: FastAPI) -> Iterator[None]:
    """FastAPI answers every request: the hot reads step aside while dependencies are
    overridden (here by the same function)."""
    app.dependency_overrides[deps.settings] = deps.settings
    try:
        yield
    finally:
        app.dependency_overrides.clear()


def _same(hot: httpx.Response, normal: httpx.Response) -> None:
    assert hot.status_code == normal.status_code
    assert hot.content == normal.content
    strip = [(k, v) for k, v in hot.headers.multi_items() if k not in VARYING]
    assert strip == [(k, v) for k, v in normal.headers.multi_items() if k not in VARYING]


async def _both(
    client: httpx.AsyncClient, app: FastAPI, path: str, headers: dict[str, str]
) -> tuple[httpx.Response, httpx.Response]:
    hot = await client.get(path, headers=headers)
    with normal_path(app):
        normal = await client.get(path, headers=headers)
    return hot, normal


async def test_same_answers_as_the_routes(
    client: httpx.AsyncClient,
    app: FastAPI,
    session: AsyncSession,
    tenant: Tenant,
    hot_calls: list[str],
) -> None:
    await make_members(session, tenant.church_id, 5)
    for path in PATHS:
        hot, normal = await _both(client, app, path, tenant.headers)
        assert hot.status_code == 200, hot.text
        _same(hot, normal)
    # The next page, through its cursor.
    cursor = (await client.get("/api/v1/members?limit=2", headers=tenant.headers)).json()
    hot, normal = await _both(
        client, app, f"/api/v1/members?limit=2&cursor={cursor['next_cursor']}", tenant.headers
    )
    assert len(hot.json()["items"]) == 2
    _same(hot, normal)
    assert len(hot_calls) == len(PATHS) + 2


async def test_same_refusals(
    client: httpx.AsyncClient, app: FastAPI, tenant: Tenant, hot_calls: list[str]
) -> None:
    claims = security.decode_access(get_settings(), tenant.access_token)
    expired = security.access_token(
        get_settings().model_copy(update={"access_token_ttl_s": -60}),
        admin_id=tenant.admin_id,
        church_id=tenant.church_id,
        session_id=claims.session_id,
    )
    refusals = [
        ("/api/v1/stats/summary", {}),  # no token
        ("/api/v1/stats/summary", {"Authorization": "Basic abc"}),
        ("/api/v1/stats/summary", {"Authorization": "Bearer"}),
        ("/api/v1/stats/summary", {"Authorization": f"bearer {tenant.access_token}x"}),
        ("/api/v1/members", {"Authorization": "Bearer not-a-token"}),
        ("/api/v1/members", {"Authorization": f"Bearer {expired}"}),
        ("/api/v1/members?cursor=garbage", tenant.headers),
    ]
    for path, headers in refusals:
        hot, normal = await _both(client, app, path, headers)
        assert hot.status_code in (401, 422), hot.text
        _same(hot, normal)
    assert len(hot_calls) == len(refusals)
    # A revoked session: refused by both, with the same answer.
    assert (await client.post("/api/v1/auth/logout", headers=tenant.headers)).status_code == 204
    for path in PATHS:
        hot, normal = await _both(client, app, path, tenant.headers)
        assert hot.status_code == 401
        assert hot.json()["error"] == "session_revoked"
        _same(hot, normal)


async def test_what_it_does_not_take_goes_to_fastapi(
    client: httpx.AsyncClient, tenant: Tenant, hot_calls: list[str]
) -> None:
    for path in [
        "/api/v1/stats/branches?days=0",
        "/api/v1/stats/branches?days=030",
        "/api/v1/stats/messages?days=7&days=8",
        "/api/v1/members?limit=201",
        "/api/v1/members?q=jo",
        "/api/v1/members?consent=opted_in",
    ]:
        r = await client.get(path, headers=tenant.headers)
        assert r.status_code in (200, 422), r.text
    assert hot_calls == []


async def test_counts_the_church_rate_limit(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "koinonia.auth.deps.get_settings",
        lambda: get_settings().model_copy(update={"church_rate_limit_per_min": 3}),
    )
    # 7 requests: even split across a minute boundary, one window holds 4 of them.
    answers = [await client.get("/api/v1/stats/summary", headers=tenant.headers) for _ in range(7)]
    codes = [r.status_code for r in answers]
    assert 429 in codes and set(codes) <= {200, 429}
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"] == "rate_limited"
    assert "retry-after" in refused.headers
    window = f"rl:church:{tenant.church_id}:{int(time.time() // 60)}"
    assert int(await get_store().get(window) or 0) >= 1


async def test_a_write_is_seen_by_the_next_read_and_a_cached_read_runs_no_statement(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    count_statements: Any,
    hot_calls: list[str],
) -> None:
    monkeypatch.setattr(
        "koinonia.auth.deps.get_settings",
        lambda: get_settings().model_copy(update={"auth_cache_ttl_s": 30.0}),
    )
    first = await client.get("/api/v1/stats/summary", headers=tenant.headers)
    with count_statements() as log:
        again = await client.get("/api/v1/stats/summary", headers=tenant.headers)
    assert again.content == first.content
    assert log.count == 0  # session cache and document cache: no session, no statement
    created = await client.post(
        "/api/v1/members",
        json={"first_name": "New", "last_name": "Member", "phone": "+15005550123"},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    after = await client.get("/api/v1/stats/summary", headers=tenant.headers)
    assert after.json()["members"]["total"] == first.json()["members"]["total"] + 1
    assert len(hot_calls) == 3
