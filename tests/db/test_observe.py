"""Observability: N+1 detection, slow-query log, per-request headers, metrics."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from structlog.testing import capture_logs

from fixtures.factories import Tenant
from koinonia.app import create_app
from koinonia.auth.deps import DbSession
from koinonia.config import get_settings
from koinonia.db import observe
from koinonia.db.database import Database


async def test_deliberate_n_plus_one_is_caught(database: Database) -> None:
    app = create_app(get_settings(), database=database)

    @app.get("/test/n-plus-one")
    async def n_plus_one(session: DbSession) -> dict[str, int]:
        total = 0
        for member_id in range(6):  # the shape the seed's code had: a query per row
            row = await session.execute(text("SELECT CAST(:id AS bigint)"), {"id": member_id})
            total += int(row.scalar_one())
        return {"total": total}

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    with capture_logs() as logs:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            r = await client.get("/test/n-plus-one")
    assert r.status_code == 500  # the test settings make the detector raise
    events = [e for e in logs if e["event"] == "n_plus_one"]
    assert events and events[0]["unit"] == "GET /test/n-plus-one"


async def test_repeats_below_threshold_pass(connection: AsyncConnection) -> None:
    with observe.track("job") as stats:
        for i in range(4):
            await connection.execute(text("SELECT CAST(:i AS int)"), {"i": i})
    assert stats.count == 4 and not stats.flagged


async def test_slow_query_is_logged(engine: AsyncEngine) -> None:
    """An engine's slow-query threshold is its own settings' (another engine's do not count),
    for its read-only sessions (an AUTOCOMMIT view of the engine) too."""
    settings = get_settings().model_copy(update={"slow_query_warn_ms": 50})
    slow = Database.open(settings, engine.url.render_as_string(hide_password=False))
    try:
        with capture_logs() as logs, observe.track("job"):
            async with slow.session() as session:
                await session.execute(text("SELECT pg_sleep(0.06)"))
            async with slow.read_session() as session:
                await session.execute(text("SELECT pg_sleep(0.062)"))
            async with engine.connect() as conn:  # the suite's engine: 500 ms
                await conn.execute(text("SELECT pg_sleep(0.061)"))
    finally:
        await slow.dispose()
    logged = [(e["level"], e["statement"]) for e in logs if e["event"] == "slow_query"]
    assert logged == [
        ("warning", "SELECT pg_sleep(0.06)"),
        ("warning", "SELECT pg_sleep(0.062)"),
    ]


async def test_request_headers_and_metrics(client: httpx.AsyncClient, tenant: Tenant) -> None:
    r = await client.get("/api/v1/branches", headers={**tenant.headers, "X-Request-Id": "abc123"})
    assert r.headers["x-request-id"] == "abc123"
    assert re.search(r"db;dur=[\d.]+;desc=\"\d+ statements\"", r.headers["server-timing"])
    metrics = (await client.get("/metrics")).text
    for name in (
        "koinonia_db_statements_total",
        "koinonia_db_pool_checkout_wait_seconds",
        "koinonia_n_plus_one_total",
        "koinonia_http_requests_total",
        "koinonia_db_slow_queries_total",
    ):
        assert name in metrics


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    r = await client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["database"] == "ok"


async def test_huge_body_is_413(client: httpx.AsyncClient, tenant: Tenant) -> None:
    big = b'{"name": "' + b"x" * 2_000_000 + b'"}'
    r = await client.post(
        "/api/v1/branches",
        content=big,
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
