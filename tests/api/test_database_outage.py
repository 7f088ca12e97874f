"""A database that cannot serve is a 503 with Retry-After, logged once per cause, and the API
recovers by itself. Real failures, no mocks: a database aimed at a port nobody listens on, a
connection the server terminates (pg_terminate_backend), a pool with no connection left. Each
test gives the app under test a database of its own, as production opens one (no rolled-back
test connection)."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from koinonia.app import DATABASE_RETRY_AFTER_S, create_app
from koinonia.config import get_settings
from koinonia.db.database import Database
from koinonia.kit.store import get_store, init_store

LOGIN = "/api/v1/auth/login"


@asynccontextmanager
async def serving(database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app in process, on `database`."""
    settings = get_settings()
    init_store(settings.redis_url, settings.store_prefix)
    app = create_app(settings, database=database)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c
    finally:
        await get_store().close()


@pytest.fixture
async def databases() -> AsyncIterator[list[Database]]:
    """The databases a test opens, disposed of when it ends."""
    opened: list[Database] = []
    yield opened
    for database in opened:
        await database.dispose()


def _database(databases: list[Database], url: str, **settings: object) -> Database:
    database = Database.open(get_settings().model_copy(update=settings), url)
    databases.append(database)
    return database


async def _login(client: httpx.AsyncClient) -> httpx.Response:
    """A login that reads the database (an unknown address each time: no throttle)."""
    email = f"nobody-{uuid.uuid4().hex[:12]}@example.com"
    return await client.post(LOGIN, json={"email": email, "password": "not the password"})


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _assert_unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"] == str(DATABASE_RETRY_AFTER_S)
    body = r.json()
    assert body["error"] == "database_unavailable" and body["retry_after"] > 0


async def test_a_database_nobody_answers_for_is_a_503_logged_once(
    engine: AsyncEngine, databases: list[Database]
) -> None:
    url = engine.url.set(port=_closed_port()).render_as_string(hide_password=False)
    async with serving(_database(databases, url)) as client:
        with capture_logs() as logs:
            for _ in range(5):
                _assert_unavailable(await _login(client))
    # This app's events only: the process may hold other test apps (a live API server).
    outage = [e for e in logs if e["event"] == "database_unavailable" and e["path"] == LOGIN]
    assert len(outage) == 1 and outage[0]["cause"] == "connect_failed"
    assert "exc_info" not in outage[0]
    assert not [e for e in logs if e["event"] == "unhandled_error"]


async def test_a_terminated_connection_is_a_503_then_the_api_recovers(
    engine: AsyncEngine, databases: list[Database]
) -> None:
    database = _database(databases, engine.url.render_as_string(hide_password=False), pool_size=1)
    async with serving(database) as client:
        assert (await _login(client)).status_code == 401  # the pool holds one connection
        async with database.engine.connect() as conn:  # that connection
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        async with engine.connect() as admin:
            await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        with capture_logs() as logs:
            _assert_unavailable(await _login(client))
        assert [
            e["cause"] for e in logs if e["event"] == "database_unavailable" and e["path"] == LOGIN
        ] == ["connection_lost"]
        assert (await _login(client)).status_code == 401  # recovered by itself


async def test_a_pool_checkout_timeout_is_a_503(
    engine: AsyncEngine, databases: list[Database]
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    database = _database(databases, url, pool_size=1, pool_max_overflow=0, pool_timeout_s=0.05)
    async with serving(database) as client:
        async with database.engine.connect() as held:  # the pool's only connection
            await held.execute(text("SELECT 1"))
            with capture_logs() as logs:
                _assert_unavailable(await _login(client))
        assert [
            e["cause"] for e in logs if e["event"] == "database_unavailable" and e["path"] == LOGIN
        ] == ["pool_timeout"]
        assert (await _login(client)).status_code == 401
