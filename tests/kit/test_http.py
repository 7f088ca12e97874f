"""kit.http.RequestPipeline: body limits, request ids and timing headers on every answer."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx

from fixtures.factories import Tenant


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
