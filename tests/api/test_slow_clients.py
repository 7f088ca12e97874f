"""Slow and vanishing clients against the real server: they cannot hold the API's capacity, they
are timed out by configured deadlines, and their disappearance is not an error. Deadlines are
set small and the tests assert what the server decides (408, closed connection, other requests
served meanwhile), never how long anything took."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from api.live import HANG_S, ServeApi, request, until

LOGIN = "/api/v1/auth/login"
TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
BRANCHES = "/api/v1/branches"


def stalled(path: str) -> bytes:
    """Headers announcing a megabyte, then a few bytes of it: the rest never comes."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode() + b'{"em'


async def test_stalled_bodies_hold_no_slot_and_others_are_served(serve_api: ServeApi) -> None:
    # Long body deadline: the stalled clients keep their connections for the whole test.
    async with (
        serve_api(
            max_requests_in_flight=2,
            max_public_in_flight=2,
            max_webhooks_in_flight=2,
            body_timeout_s=600,
        ) as server,
        AsyncExitStack() as stack,
    ):
        for path in [LOGIN, TWILIO_STATUS, BRANCHES, "/api/v1/members"] * 3:
            conn = await stack.enter_async_context(server.connect())
            await conn.send(stalled(path))
        await until(lambda: server.requests_in_progress() == 12)  # all stalled, in the server

        answers = await asyncio.gather(
            server.fetch(request("GET", BRANCHES)),
            server.fetch(request("POST", TWILIO_STATUS, b"MessageSid=SM1&MessageStatus=sent")),
            server.fetch(
                request(
                    "POST",
                    LOGIN,
                    b'{"email": "nobody@example.com", "password": "wrong password"}',
                    Content_Type="application/json",
                )
            ),
        )
    assert [a.status for a in answers] == [401, 403, 401]


async def test_a_body_not_sent_in_time_is_408_and_the_connection_closed(
    serve_api: ServeApi,
) -> None:
    async with serve_api(body_timeout_s=0.2) as server, server.connect() as conn:
        await conn.send(stalled(LOGIN))
        answer = await conn.response()
        assert answer.status == 408 and b'"request_timeout"' in answer.body
        assert answer.headers["connection"] == "close"
        assert await conn.closed_by_server()


async def test_an_upload_has_its_own_body_deadline(serve_api: ServeApi) -> None:
    path = "/api/v1/groups/1/members/import"
    async with (
        serve_api(body_timeout_s=0.1, upload_timeout_s=600) as server,
        server.connect() as upload,
    ):
        await upload.send(stalled(path))
        async with server.connect() as other:  # started later, timed out by now
            await other.send(stalled(LOGIN))
            assert (await other.response()).status == 408
        await upload.send(b"x" * (1_000_000 - 4))  # the rest of the upload arrives
        answer = await upload.response()
        assert answer.status != 408 and answer.status < 500


async def test_connections_that_never_complete_their_headers_are_closed(
    serve_api: ServeApi,
) -> None:
    async with serve_api(header_timeout_s=0.2, keep_alive_timeout_s=600) as server:
        async with server.connect() as silent:  # connects, sends nothing
            assert await silent.closed_by_server()
        async with server.connect() as dribbling:  # slowloris: a header line now and then
            await dribbling.send(b"GET /healthz HTTP/1.1\r\nHost: test\r\n")

            async def dribble() -> None:
                for n in range(int(HANG_S * 10)):
                    await dribbling.send(f"X-Slow-{n}: 1\r\n".encode())
                    await asyncio.sleep(0.1)

            task = asyncio.create_task(dribble())
            try:
                assert await dribbling.closed_by_server()
            finally:
                task.cancel()
        async with server.connect() as reused:  # a kept-alive connection starts a new request
            await reused.send(request("GET", "/healthz"))
            assert (await reused.response()).status == 200
            await reused.send(b"GET /healthz HTTP/1.1\r\n")
            assert await reused.closed_by_server()


async def test_complete_requests_are_not_cut_by_the_deadlines(serve_api: ServeApi) -> None:
    async with (
        serve_api(header_timeout_s=0.3, body_timeout_s=0.3) as server,
        server.connect() as conn,
    ):
        for _ in range(3):  # keep-alive: each request gets its own header deadline
            await conn.send(request("GET", "/healthz"))
            assert (await conn.response()).status == 200
            await asyncio.sleep(0.2)
        await conn.send(request("POST", LOGIN, b'{"email": "x"}'))
        assert (await conn.response()).status == 422


async def test_an_error_does_not_cost_the_connection(serve_api: ServeApi) -> None:
    async with serve_api() as server:

        async def broken() -> None:
            raise RuntimeError("a bug")

        server.app.add_api_route("/broken", broken)
        with capture_logs() as logs:
            async with server.connect() as conn:
                await conn.send(request("GET", "/broken"))
                answer = await conn.response()
                assert answer.status == 500 and b'"internal_error"' in answer.body
                assert "connection" not in answer.headers
                await conn.send(request("GET", "/healthz"))  # same connection
                assert (await conn.response()).status == 200
    assert [e["event"] for e in logs].count("unhandled_error") == 1


def _client_gone_count() -> float:
    labels = {"method": "POST", "route": "unmatched", "status": "499"}
    return REGISTRY.get_sample_value("koinonia_http_requests_total", labels) or 0.0


async def test_a_client_gone_mid_body_is_not_an_error(serve_api: ServeApi) -> None:
    before = _client_gone_count()
    async with serve_api() as server:
        with capture_logs() as logs:
            async with server.connect() as conn:
                await conn.send(stalled(TWILIO_STATUS))
            # Counted as a client that went away (499), before the webhook ran at all.
            await until(lambda: _client_gone_count() > before)
            assert (await server.fetch(request("GET", "/healthz"))).status == 200
    assert not [e for e in logs if e["log_level"] in ("error", "critical")]
