"""End to end: the sandbox's real, signed callbacks over loopback HTTP reach the API served by
uvicorn, through the real pool with real commits (so this test cleans up after itself)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import uvicorn
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fixtures.factories import Seeder, SeedFor, Tenant
from koinonia.app import create_app
from koinonia.auth.deps import settings as settings_dependency
from koinonia.config import Settings, get_settings
from koinonia.db.database import Database
from koinonia.sms.base import OutboundSms, create_http_client
from koinonia.sms.http import HttpClient
from koinonia.sms.providers import build_provider
from koinonia_sandbox import RunningSandbox, SandboxConfig, start_sandbox

TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
TWILIO_INBOUND = "/api/v1/webhooks/twilio/inbound"
TELNYX = "/api/v1/webhooks/telnyx"


@dataclass
class LiveApi:
    base_url: str
    settings: Settings


@pytest.fixture
async def live_api(committed_database: Database) -> AsyncIterator[LiveApi]:
    """The app on a free loopback port, its public_url pointed at itself."""
    app = create_app(get_settings(), database=committed_database)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", log_level="warning", access_log=False
        )
    )
    task = asyncio.create_task(server.serve())
    await until(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    settings = get_settings().model_copy(update={"public_url": base_url})
    app.dependency_overrides[settings_dependency] = lambda: settings
    yield LiveApi(base_url, settings)
    server.should_exit = True
    await task


@pytest.fixture
async def sandbox(live_api: LiveApi) -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(
        SandboxConfig(
            twilio_auth_token=live_api.settings.twilio_auth_token.get_secret_value(),
            delivery_delay_ms=200,  # 'sent' after 100 ms, the final report after 200 ms
            callback_retry_ms=20,
            twilio_inbound_url=live_api.base_url + TWILIO_INBOUND,
            telnyx_inbound_url=live_api.base_url + TELNYX,
        )
    )
    yield running
    await running.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    client = aiohttp.ClientSession()
    yield client
    await client.close()


@pytest.fixture
async def provider_http() -> AsyncIterator[HttpClient]:
    """The adapters' client (koinonia.sms.http), shared as a worker shares it."""
    client = create_http_client()
    yield client
    await client.close()


@pytest.fixture
async def church(
    committed_tenants: Callable[..., Awaitable[Tenant]], committed_seed: SeedFor
) -> Seeder:
    """A committed church; deleting it cascades to its messages, recipients and counts."""
    return committed_seed(await committed_tenants())


async def new_recipient(church: Seeder) -> int:
    """A message with one recipient the dispatcher has claimed (status sending, no id yet)."""
    return await church.message(recipients={1: "sending"})


async def write_back(engine: AsyncEngine, message_id: int, provider_id: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE message_recipients SET provider_message_id = :p, sent_at = now()"
                " WHERE message_id = :m"
            ),
            {"p": provider_id, "m": message_id},
        )


async def fetch(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).one_or_none()


async def until(condition: Callable[[], bool], within_s: float = 10.0) -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_the_sandboxs_delivery_reports_reach_the_api_and_deliver_the_recipient(
    engine: AsyncEngine,
    live_api: LiveApi,
    sandbox: RunningSandbox,
    provider_http: HttpClient,
    church: Seeder,
    provider: str,
) -> None:
    message_id = await new_recipient(church)
    adapter = build_provider(
        "sandbox" if provider == "twilio" else "telnyx",
        base_url=sandbox.base_url,
        twilio_account_sid=sandbox.config.twilio_account_sid,
        twilio_auth_token=sandbox.config.twilio_auth_token,
        telnyx_api_key=sandbox.config.telnyx_api_key,
        http=provider_http,
    )
    callback = live_api.base_url + (TWILIO_STATUS if provider == "twilio" else TELNYX)

    result = await adapter.send(OutboundSms("+15550100001", "+13035559999", "Hello", callback))
    assert result.ok and result.provider_id
    await write_back(engine, message_id, result.provider_id)

    counts = sandbox.carrier.counts
    await until(lambda: counts["callbacks_delivered"] + counts["callbacks_failed"] >= 2)
    assert (counts["callbacks_delivered"], counts["callbacks_failed"]) == (2, 0)

    row = await fetch(
        engine,
        "SELECT status, delivered_at FROM message_recipients WHERE message_id = :m",
        m=message_id,
    )
    assert row.status == "delivered" and row.delivered_at is not None
    counted = await fetch(
        engine,
        "SELECT sum(n) FILTER (WHERE status = 'delivered') AS delivered,"
        " sum(n) FILTER (WHERE status <> 'delivered') AS other"
        " FROM message_status_counts WHERE message_id = :m",
        m=message_id,
    )
    assert (counted.delivered, counted.other) == (1, 0)


async def test_reports_that_beat_the_write_back_wait_in_pending(
    engine: AsyncEngine,
    live_api: LiveApi,
    sandbox: RunningSandbox,
    provider_http: HttpClient,
    church: Seeder,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 0, "undelivered_rate": 1.0})
    message_id = await new_recipient(church)
    adapter = build_provider(
        "sandbox",
        base_url=sandbox.base_url,
        twilio_account_sid=sandbox.config.twilio_account_sid,
        twilio_auth_token=sandbox.config.twilio_auth_token,
        http=provider_http,
    )
    result = await adapter.send(
        OutboundSms("+15550100001", "+13035559999", "Hello", live_api.base_url + TWILIO_STATUS)
    )
    assert result.provider_id
    counts = sandbox.carrier.counts
    await until(lambda: counts["callbacks_delivered"] + counts["callbacks_failed"] >= 2)
    assert counts["callbacks_delivered"] == 2
    try:
        kept = await fetch(
            engine,
            "SELECT status, error_code FROM pending_status_reports WHERE provider_message_id = :p",
            p=result.provider_id,
        )
        assert (kept.status, kept.error_code) == ("undelivered", "30003")
        row = await fetch(
            engine, "SELECT status FROM message_recipients WHERE message_id = :m", m=message_id
        )
        assert row.status == "sending"  # until the dispatcher records the send and applies it
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text("DELETE FROM pending_status_reports WHERE provider_message_id = :p"),
                {"p": result.provider_id},
            )


@pytest.mark.parametrize("provider", ["twilio", "telnyx"])
async def test_the_sandboxs_inbound_texts_are_verified_and_acknowledged(
    live_api: LiveApi, sandbox: RunningSandbox, http: aiohttp.ClientSession, provider: str
) -> None:
    async with http.post(
        sandbox.base_url + "/sandbox/inbound",
        json={"provider": provider, "from": "+15550100001", "to": "+13035559999", "body": "Hi"},
    ) as r:
        answer = await r.json()
    assert r.status == 200, answer
    assert answer["status"] == 200
    if provider == "twilio":
        assert "<Response/>" in answer["body"]
