"""A database that cannot serve is a 503 with Retry-After, logged once per cause, and the API
recovers by itself. Real failures, no mocks: an engine aimed at a port nobody listens on, a
connection the server terminates (pg_terminate_backend), a pool with no connection left."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from structlog.testing import capture_logs

from koinonia.app import DATABASE_RETRY_AFTER_S, create_app
from koinonia.config import get_settings
from koinonia.db import engine as db_engine
from koinonia.kit.store import get_store, init_store

LOGIN = "/api/v1/auth/login"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    """The app in process, on whichever engine the test installs (no rolled-back test
    connection: a request here uses the process engine as production does)."""
    settings = get_settings()
    init_store(settings.redis_url, settings.store_prefix)
    app = create_app(settings, manage_engine=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c
    await get_store().close()


@contextmanager
def process_engine(engine: AsyncEngine) -> Iterator[None]:
    previous = db_engine._engine, db_engine._sessionmaker
    db_engine.set_engine(engine)
    try:
        yield
    finally:
        db_engine._engine, db_engine._sessionmaker = previous


def _engine(url: str, **settings: object) -> AsyncEngine:
    return db_engine.make_engine(get_settings().model_copy(update=settings), url)


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
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    url = engine.url.set(port=_closed_port()).render_as_string(hide_password=False)
    down = _engine(url)
    try:
        with process_engine(down), capture_logs() as logs:
            for _ in range(5):
                _assert_unavailable(await _login(client))
    finally:
        await down.dispose()
    # This app's events only: the process may hold other test apps (a live API server whose
    # late delivery reports reach the swapped engine too).
    outage = [e for e in logs if e["event"] == "database_unavailable" and e["path"] == LOGIN]
    assert len(outage) == 1 and outage[0]["cause"] == "connect_failed"
    assert "exc_info" not in outage[0]
    assert not [e for e in logs if e["event"] == "unhandled_error"]


async def test_a_terminated_connection_is_a_503_then_the_api_recovers(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    own = _engine(engine.url.render_as_string(hide_password=False), pool_size=1)
    try:
        with process_engine(own):
            assert (await _login(client)).status_code == 401  # the pool holds one connection
            async with own.connect() as conn:  # that connection
                pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with engine.connect() as admin:
                await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            with capture_logs() as logs:
                _assert_unavailable(await _login(client))
            assert [
                e["cause"]
                for e in logs
                if e["event"] == "database_unavailable" and e["path"] == LOGIN
            ] == ["connection_lost"]
            assert (await _login(client)).status_code == 401  # recovered by itself
    finally:
        await own.dispose()


async def test_a_pool_checkout_timeout_is_a_503(
    client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    own = _engine(url, pool_size=1, pool_max_overflow=0, pool_timeout_s=0.05)
    try:
        with process_engine(own):
            async with own.connect() as held:  # the pool's only connection
                await held.execute(text("SELECT 1"))
                with capture_logs() as logs:
                    _assert_unavailable(await _login(client))
            assert [
                e["cause"]
                for e in logs
                if e["event"] == "database_unavailable" and e["path"] == LOGIN
            ] == ["pool_timeout"]
            assert (await _login(client)).status_code == 401
    finally:
        await own.dispose()
