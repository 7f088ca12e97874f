"""Helpers of the tests that race delivery reports against the dispatcher: signed Twilio status
callbacks through the app, and row locks the test holds to force an interleaving."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from fixtures.locks import lock_waiters
from koinonia.config import get_settings
from koinonia.sms.signatures import TWILIO_SIGNATURE_HEADER, twilio_signature
from koinonia_sandbox import RunningSandbox

TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
WAIT_S = 60.0  # a generous bound for one step on a busy machine; never a timing assertion


async def post_report(
    client: httpx.AsyncClient, sid: str, status: str, error_code: str | None = None
) -> None:
    settings = get_settings()
    params = {"AccountSid": settings.twilio_account_sid, "MessageSid": sid, "MessageStatus": status}
    if error_code is not None:
        params["ErrorCode"] = error_code
    signature = twilio_signature(
        settings.public_url + TWILIO_STATUS,
        params,
        settings.twilio_auth_token.get_secret_value(),
    )
    response = await client.post(
        TWILIO_STATUS,
        content=urllib.parse.urlencode(params).encode(),
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            TWILIO_SIGNATURE_HEADER: signature,
        },
    )
    assert response.status_code == 200, response.text


async def report_all(client: httpx.AsyncClient, sids: list[str], status: str) -> None:
    await asyncio.gather(*(post_report(client, sid, status) for sid in sids))


async def until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not await condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.005)


class Blockers:
    """Transactions of the test's own that hold row locks the writers will queue behind."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.open: list[AsyncConnection] = []

    async def hold(self, sql: str, **params: Any) -> AsyncConnection:
        conn = await self.engine.connect()
        await conn.begin()
        await conn.execute(text(sql), params)
        self.open.append(conn)
        return conn

    async def release(self, conn: AsyncConnection) -> None:
        await conn.commit()
        await conn.close()
        self.open.remove(conn)

    async def lock_waiters(self, query: str = "", event: str = "") -> int:
        """Backends of this database waiting for a lock (see fixtures.locks.lock_waiters)."""
        async with self.engine.connect() as conn:
            return await lock_waiters(conn, query, event)

    async def close(self) -> None:
        for conn in list(self.open):
            await self.release(conn)


def provider_ids(sandbox: RunningSandbox) -> list[str]:
    return sorted(msg.id for msg in sandbox.carrier.messages)  # reset before each round


async def true(value: bool) -> bool:
    return value


async def more(count: Awaitable[int], than: int = 0) -> bool:
    return await count > than


def deferred_reports() -> float:
    """Reports the webhook writer has left for a later batch (their text was being written
    back), as its metric counts them."""
    return REGISTRY.get_sample_value("koinonia_status_reports_deferred_total") or 0.0
