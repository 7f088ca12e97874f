"""The members list asks for a read-only session when it is a plain list (its one statement runs
without BEGIN / COMMIT) and keeps the transaction a search needs (`MemberRepository.search` sets
transaction-local planner settings). Seen on a real database: the test's rolled-back connection
is one transaction already, where every read keeps it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from fixtures.factories import Tenant, make_members
from koinonia.auth import deps
from koinonia.config import get_settings
from koinonia.db.database import Database

MEMBERS = "/api/v1/members"


@contextmanager
def isolation_levels(engine: AsyncEngine) -> Iterator[list[str | None]]:
    """The isolation level each statement run meanwhile was run under (None: the default,
    inside a transaction block)."""
    seen: list[str | None] = []

    def on_execute(conn: Any, *args: Any) -> None:
        seen.append(conn.get_execution_options().get("isolation_level"))

    event.listen(engine.sync_engine, "before_cursor_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", on_execute)


async def test_a_plain_list_runs_without_a_transaction_and_a_search_keeps_one(
    committed_app: FastAPI,
    committed_client: httpx.AsyncClient,
    committed_database: Database,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    # The session cache on, as in production: the caller is known without a statement, so the
    # endpoint's statement is the session's first. (An override also keeps the request on
    # FastAPI's path, the router's choice, instead of the hot reads'.)
    cached = get_settings().model_copy(update={"auth_cache_ttl_s": 30.0})
    committed_app.dependency_overrides[deps.settings] = lambda: cached
    tenant = await committed_tenants()
    async with committed_database.sessions() as session:
        await make_members(session, tenant.church_id, 3)
        await session.commit()
    assert (await committed_client.get(MEMBERS, headers=tenant.headers)).is_success  # cached

    with isolation_levels(committed_database.engine) as plain:
        r = await committed_client.get(MEMBERS, headers=tenant.headers)
    assert r.status_code == 200 and len(r.json()["items"]) == 3
    assert plain == ["AUTOCOMMIT"]

    with isolation_levels(committed_database.engine) as search:
        r = await committed_client.get(MEMBERS, params={"q": "member"}, headers=tenant.headers)
    assert r.status_code == 200
    assert search and "AUTOCOMMIT" not in search
