"""Delivery fixtures: real commits (workers claim with SKIP LOCKED from their own sessions), the
sandbox over real loopback HTTP, the API on a real port for the sandbox's delivery reports, and
settings pointing at both."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any

import pytest
import uvicorn
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from delivery.faults import DatabaseProxy
from delivery.support import Broadcast, send_to_all
from fixtures.factories import Tenant, make_members
from koinonia.app import create_app
from koinonia.config import Settings, get_settings
from koinonia.db.database import Database
from koinonia_sandbox import RunningSandbox, SandboxConfig, start_sandbox


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture(scope="session")
async def api_url(engine: AsyncEngine) -> AsyncIterator[str]:
    """The real app on a loopback port, where the sandbox posts delivery reports; its
    public_url is that port, so the webhooks verify the signatures the sandbox computed. It
    lives for the whole session on a database of its own (its own pool on the test database,
    real commits), as a server process would: nothing a test does to its own database reaches
    it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = get_settings().model_copy(update={"public_url": url})
    database = Database.open(settings, engine.url.render_as_string(hide_password=False))
    app = create_app(settings, database=database)
    # Routes read settings through dependencies; every one of them must see this URL.
    from koinonia.auth.deps import settings as settings_dependency

    app.dependency_overrides[settings_dependency] = lambda: settings
    server = _Server(uvicorn.Config(app, lifespan="off", log_level="error", access_log=False))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        assert not task.done(), "test API did not start"
        await asyncio.sleep(0.01)
    yield url
    server.should_exit = True
    await task
    sock.close()
    await database.dispose()


@pytest.fixture
async def sandbox(api_url: str) -> AsyncIterator[RunningSandbox]:
    settings = get_settings()
    running = await start_sandbox(
        SandboxConfig(
            twilio_account_sid=settings.twilio_account_sid,
            twilio_auth_token=settings.twilio_auth_token.get_secret_value(),
            telnyx_api_key=settings.telnyx_api_key.get_secret_value(),
            delivery_delay_ms=40,
            callback_attempts=2,
            callback_retry_ms=20,
            # Longer than any answer can take on a busy machine: a report the sandbox gave up
            # on is still applied by the server afterwards, after the test's
            # wait_for_callbacks() has returned (1,000 reports of one broadcast took > 5 s
            # next to a CPU hog, and the counts changed between two reads).
            callback_timeout_s=120.0,
            seed=7,
        )
    )
    yield running
    await running.stop()


@pytest.fixture
def make_settings(sandbox: RunningSandbox, api_url: str) -> Callable[..., Settings]:
    """Settings aimed at the sandbox and the test API; fast retries; overrides as keywords."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "sandbox_url": sandbox.base_url,
            "twilio_api_url": sandbox.base_url,
            "telnyx_api_url": sandbox.base_url,
            "public_url": api_url,
            "send_rate_per_number": 10_000.0,
            "retry_base_s": 0.05,
            "retry_max_s": 0.5,
            "sms_timeout_s": 5.0,
            **overrides,
        }
        return get_settings().model_copy(update=values)

    return make


@pytest.fixture
def broadcast(
    committed_session: AsyncSession, committed_tenants: Callable[..., Awaitable[Tenant]]
) -> Callable[..., Awaitable[Broadcast]]:
    """`await broadcast(n, content=...)`: a committed church with n members and one queued
    message to all of them, written through the real send path."""

    async def make(
        n: int,
        *,
        content: str = "Hi {first_name|friend}, see you Sunday!",
        provider: str = "sandbox",
    ) -> Broadcast:
        church = await committed_tenants(sms_provider=provider)
        members = await make_members(committed_session, church.church_id, n)
        message_id = await send_to_all(committed_session, church.church_id, content)
        return Broadcast(church, message_id, members)

    return make


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    """REDIS_URL when set; else a throwaway redis-server on a free port if one is installed."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tempfile.mkdtemp(prefix="koinonia-redis-")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
async def db_proxy(engine: AsyncEngine) -> AsyncIterator[DatabaseProxy]:
    """The test database behind a proxy the test can cut (see delivery.faults)."""
    proxy = DatabaseProxy(engine.url)
    await proxy.start()
    yield proxy
    await proxy.close()
