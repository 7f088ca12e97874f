"""kit.http.RequestPipeline: body limits, request ids and timing headers on every answer."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.types import Message, Receive, Scope, Send

from fixtures.factories import Tenant
from koinonia.app import PROBES, UnhandledErrors
from koinonia.db import observe
from koinonia.kit.http import RequestPipeline


async def test_a_streamed_body_over_the_limit_is_413(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"name": "'
        for _ in range(40):
            yield b"x" * 65_536
        yield b'"}'

    r = await client.post(
        "/api/v1/branches",
        content=chunks(),
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"] == "payload_too_large"
    assert r.headers["x-request-id"] and "server-timing" in r.headers


async def test_every_answer_has_a_request_id_and_timing(client: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/api/v1/stats/summary", "/no/such/path"):
        r = await client.get(path)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), path
        assert re.search(
            r'db;dur=[\d.]+;desc="\d+ statements", app;dur=[\d.]+', r.headers["server-timing"]
        )
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3


async def test_an_unprintable_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"X-Request-Id": "a\tb"})
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


async def test_requests_are_counted_by_route_and_status(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await client.get("/api/v1/branches", headers=tenant.headers)
    await client.get("/api/v1/branches")  # 401
    text = (await client.get("/metrics")).text
    for status in ("200", "401"):
        assert re.search(
            r'koinonia_http_requests_total\{method="GET",route="/branches",status="'
            + status
            + r'"\} [1-9]',
            text,
        ), status
    assert 'koinonia_http_request_seconds_count{route="/branches"}' in text


def _pipeline(app: Any, *, limit: int = 1) -> RequestPipeline:
    return RequestPipeline(
        app,
        limit=limit,
        webhook_limit=1,
        public_limit=1,
        webhook_prefix="/api/v1/webhooks/",
        public_paths=["/api/v1/auth/login"],
        exempt_paths=PROBES,
        upload_suffix="/import",
        max_bytes=1000,
        max_upload_bytes=1000,
        body_timeout_s=60,
        upload_timeout_s=60,
        on_error=UnhandledErrors(),
        track=observe.track,
    )


async def _call(pipeline: RequestPipeline, path: str, method: str = "GET") -> int:
    """One request through the pipeline; its status."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "headers": [], "state": {}}
    await pipeline(scope, receive, send)
    return int(sent[0]["status"])


async def test_webhooks_and_logins_are_admitted_by_gates_of_their_own() -> None:
    """User traffic filling every slot of the main gate delays neither carriers' webhooks nor
    logins; each has its own capacity, and queues only behind its own kind."""
    release = asyncio.Event()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["path"] == "/api/v1/members":
            await release.wait()  # a slow user request, holding its slot
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    pipeline = _pipeline(app, limit=2)
    users = [asyncio.create_task(_call(pipeline, "/api/v1/members")) for _ in range(3)]
    await asyncio.sleep(0)
    async with asyncio.timeout(10):  # a guard against a hang, not a measurement
        assert await _call(pipeline, "/api/v1/webhooks/twilio/status", "POST") == 200
        assert await _call(pipeline, "/api/v1/webhooks/telnyx", "POST") == 200
        assert await _call(pipeline, "/api/v1/auth/login", "POST") == 200
        assert await _call(pipeline, "/healthz") == 200
    assert pipeline.gate.locked() and not any(u.done() for u in users)
    release.set()
    assert await asyncio.gather(*users) == [200, 200, 200]
