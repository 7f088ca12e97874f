"""The adapters' HTTP client against scripted raw servers: framing, keep-alive, limits, failures."""

from __future__ import annotations

import asyncio
import gzip
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio

from koinonia.sms import OutboundSms
from koinonia.sms.http import MAX_BODY, HttpClient, HttpError
from koinonia.sms.twilio import TwilioProvider

pytestmark = pytest.mark.asyncio(loop_scope="function")

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # → keep the connection


class RawServer:
    """Reads one request at a time (head + Content-Length body) and lets `handler` answer."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/send"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.handler(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest_asyncio.fixture(loop_scope="function")
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[RawServer]]]:
    servers: list[RawServer] = []

    async def start(handler: Handler) -> RawServer:
        server = RawServer(handler)
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.stop()


def answer(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def ok(_request: bytes, writer: asyncio.StreamWriter) -> bool:
    writer.write(answer(201, b'{"sid": "SM1"}'))
    return True


async def test_posts_the_prepared_head_and_body_and_reuses_the_connection(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    server = await serve(ok)
    client = HttpClient(limit=4)
    request = client.prepare(server.url + "?x=1", {"Authorization": "Basic abc"})
    try:
        first = await client.post(request, b"To=%2B1", within_s=5)
        second = await client.post(request, b"To=%2B2", within_s=5)
    finally:
        await client.close()
    assert (first.status, first.body, first.retry_after) == (201, b'{"sid": "SM1"}', None)
    assert second.status == 201
    assert server.connections == 1  # keep-alive
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /send?x=1 HTTP/1.1"
    assert b"Authorization: Basic abc" in lines
    assert b"Content-Length: 7" in lines
    assert b"Accept-Encoding: identity" in lines  # what we can read: a plain body
    assert any(line.startswith(b"Host: 127.0.0.1:") for line in lines)
    assert body == b"To=%2B1"


async def test_chunked_bodies_retry_after_and_interim_answers(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def chunked(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        writer.write(
            b"HTTP/1.1 429 Too Many\r\nTransfer-Encoding: chunked\r\nRetry-After: 3\r\n\r\n"
            b'4\r\n{"a"\r\n4\r\n: 1}\r\n0\r\n\r\n'
        )
        return True

    server = await serve(chunked)
    client = HttpClient()
    try:
        response = await client.post(client.prepare(server.url, {}), b"x", within_s=5)
    finally:
        await client.close()
    assert (response.status, response.body, response.retry_after) == (429, b'{"a": 1}', "3")


async def test_a_body_ended_by_closing_and_connection_close_are_honoured(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def close_delimited(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"ok": true}')
        return False  # the server closes: that ends the body

    server = await serve(close_delimited)
    client = HttpClient()
    request = client.prepare(server.url, {})
    try:
        first = await client.post(request, b"1", within_s=5)
        second = await client.post(request, b"2", within_s=5)
    finally:
        await client.close()
    assert (first.status, first.body) == (200, b'{"ok": true}')
    assert second.body == b'{"ok": true}'
    assert server.connections == 2  # never reused after Connection: close


@pytest.mark.parametrize(
    "cut",
    [
        b'HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{"sid":',
        b'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"sid":\r\n',
    ],
)
async def test_a_body_cut_off_by_a_close_is_an_error_not_an_answer(
    serve: Callable[[Handler], Awaitable[RawServer]], cut: bytes
) -> None:
    async def truncating(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(cut)
        return False

    server = await serve(truncating)
    client = HttpClient()
    try:
        with pytest.raises(HttpError):
            await client.post(client.prepare(server.url, {}), b"1", within_s=5)
    finally:
        await client.close()


async def test_timeout_closes_the_connection_so_a_late_answer_is_never_misread(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    calls = 0

    async def late_then_fast(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(0.3)
            writer.write(answer(200, b"late"))
        else:
            writer.write(answer(200, b"fast"))
        return True

    server = await serve(late_then_fast)
    client = HttpClient()
    request = client.prepare(server.url, {})
    try:
        with pytest.raises(TimeoutError):
            await client.post(request, b"1", within_s=0.1)
        second = await client.post(request, b"2", within_s=5)
    finally:
        await client.close()
    assert second.body == b"fast"
    assert server.connections == 2


async def test_connections_per_origin_never_exceed_the_limit(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def slow(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        await asyncio.sleep(0.02)
        writer.write(answer(201, b"{}"))
        return True

    server = await serve(slow)
    client = HttpClient(limit=3)
    request = client.prepare(server.url, {})
    try:
        results = await asyncio.gather(*(client.post(request, b"x", within_s=5) for _ in range(30)))
    finally:
        await client.close()
    assert [r.status for r in results] == [201] * 30
    assert server.connections == 3


async def test_a_connection_the_server_dropped_while_idle_is_not_reused(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def one_per_connection(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(201, b"{}"))  # keep-alive promised, then closed while idle
        await writer.drain()
        return False

    server = await serve(one_per_connection)
    client = HttpClient()
    request = client.prepare(server.url, {})
    try:
        await client.post(request, b"1", within_s=5)
        # Until the server's close reaches us (the pooled connection sees it), however slow.
        [idle] = client._pools[request.origin].idle
        deadline = time.monotonic() + 30
        while not idle.closed:
            assert time.monotonic() < deadline, "the server's close never reached the client"
            await asyncio.sleep(0.001)
        second = await client.post(request, b"2", within_s=5)
    finally:
        await client.close()
    assert second.status == 201
    assert server.connections == 2


async def test_malformed_answers_and_resets_are_transport_errors(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    async def garbage(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"NOT HTTP AT ALL\r\n\r\n")
        return True

    async def hang_up(_request: bytes, _writer: asyncio.StreamWriter) -> bool:
        return False

    client = HttpClient()
    try:
        for handler in (garbage, hang_up):
            server = await serve(handler)
            with pytest.raises(HttpError):
                await client.post(client.prepare(server.url, {}), b"x", within_s=5)
    finally:
        await client.close()


async def test_idle_connections_expire_after_keepalive(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    server = await serve(ok)
    client = HttpClient(keepalive_s=0.05)
    request = client.prepare(server.url, {})
    try:
        await client.post(request, b"1", within_s=5)
        await asyncio.sleep(0.1)
        await client.post(request, b"2", within_s=5)
    finally:
        await client.close()
    assert server.connections == 2


async def test_prepare_refuses_what_it_cannot_send() -> None:
    with pytest.raises(ValueError, match="http"):
        HttpClient.prepare("ftp://example.org/x", {})
    with pytest.raises(ValueError, match="cannot be set"):
        HttpClient.prepare("https://example.org/x", {"X": "a\r\nInjected: 1"})
    with pytest.raises(ValueError, match="cannot be set"):
        HttpClient.prepare("https://example.org/x", {"Content-Length": "3"})
    prepared = HttpClient.prepare("https://api.twilio.com/2010-04-01/M.json", {})
    assert prepared.origin == ("https", "api.twilio.com", 443)
    assert prepared.head.startswith(b"POST /2010-04-01/M.json HTTP/1.1\r\nHost: api.twilio.com\r\n")


# --- codings ---------------------------------------------------------------------------------

SID = b'{"sid": "SM1", "status": "queued"}'


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [
        b"%x\r\n%b\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def raw_deflate(body: bytes) -> bytes:
    """Deflate without the zlib wrapper, as some servers send `Content-Encoding: deflate`."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(body) + packer.flush()


async def exchange(
    serve: Callable[[Handler], Awaitable[RawServer]], raw: bytes, *, close: bool
) -> tuple[RawServer, HttpClient, Any]:
    """POST twice to a server answering `raw` (closing after it when `close`); the first
    answer, or the exception it raised."""

    async def scripted(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(raw)
        await writer.drain()
        return not close

    server = await serve(scripted)
    client = HttpClient()
    try:
        return server, client, await client.post(client.prepare(server.url, {}), b"x", within_s=5)
    except HttpError as exc:
        return server, client, exc
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("headers", "body", "close"),
    [
        # Content-Encoding, framed by Content-Length or chunks.
        ("Content-Encoding: gzip", gzip.compress(SID), False),
        ("Content-Encoding: x-gzip", gzip.compress(SID), False),
        ("Content-Encoding: deflate", zlib.compress(SID), False),
        ("Content-Encoding: deflate", raw_deflate(SID), False),  # raw deflate, as IIS sends
        ("Content-Encoding: GZIP, identity", gzip.compress(SID), False),
        (
            "Content-Encoding: deflate\r\nContent-Encoding: gzip",
            gzip.compress(zlib.compress(SID)),
            False,
        ),
        (
            "Content-Encoding: gzip",
            gzip.compress(SID[:10]) + gzip.compress(SID[10:]),
            False,
        ),  # two members
        (
            "Transfer-Encoding: chunked\r\nContent-Encoding: gzip",
            chunked(gzip.compress(SID)),
            False,
        ),
        # Transfer codings before a final chunked: llhttp de-chunks, we undo the rest.
        ("Transfer-Encoding: gzip, chunked", chunked(gzip.compress(SID)), False),
        (
            "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
            chunked(gzip.compress(SID)),
            False,
        ),
        (
            "Transfer-Encoding: deflate, chunked\r\nContent-Encoding: gzip",
            chunked(zlib.compress(gzip.compress(SID))),
            False,
        ),
        # A transfer coding without chunked: the body ends with the connection.
        ("Transfer-Encoding: gzip", gzip.compress(SID), True),
        ("Transfer-Encoding: identity", SID, True),
    ],
    ids=lambda value: value.replace("\r\n", " + ") if isinstance(value, str) else "",
)
async def test_compressed_answers_are_decoded_whatever_the_coding_header(
    serve: Callable[[Handler], Awaitable[RawServer]], headers: str, body: bytes, close: bool
) -> None:
    framing = "" if "Transfer-Encoding" in headers else f"Content-Length: {len(body)}\r\n"
    raw = f"HTTP/1.1 201 Created\r\n{framing}{headers}\r\n\r\n".encode() + body
    _, _, response = await exchange(serve, raw, close=close)
    assert not isinstance(response, Exception), response
    assert (response.status, response.body) == (201, SID)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (
            b"HTTP/1.1 201 X\r\nTransfer-Encoding: br, chunked\r\n\r\n" + chunked(b"xyz"),
            "unsupported transfer coding 'br'",
        ),
        (
            b"HTTP/1.1 201 X\r\nTransfer-Encoding: compress\r\n\r\nxyz",
            "unsupported transfer coding 'compress'",
        ),
        (
            b"HTTP/1.1 201 X\r\nTransfer-Encoding: chunked, gzip\r\n\r\n" + chunked(b"xyz"),
            "chunked is not the final",
        ),
        (
            b"HTTP/1.1 201 X\r\nContent-Length: 3\r\nContent-Encoding: zstd\r\n\r\nxyz",
            "unsupported content coding 'zstd'",
        ),
        (
            b"HTTP/1.1 201 X\r\nContent-Length: 3\r\nContent-Encoding: gzip\r\n\r\nxyz",
            "undecodable gzip body",
        ),
        (
            b"HTTP/1.1 201 X\r\nContent-Length: 12\r\nContent-Encoding: gzip\r\n\r\n"
            + gzip.compress(SID)[:12],
            "undecodable gzip body",
        ),
        (
            b"HTTP/1.1 201 X\r\nContent-Length: 3\r\nContent-Encoding: deflate\r\n\r\nxyz",
            "undecodable deflate body",
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_codings_that_cannot_be_read_are_transport_errors_that_say_why(
    serve: Callable[[Handler], Awaitable[RawServer]], raw: bytes, error: str
) -> None:
    _, _, response = await exchange(serve, raw, close=False)
    assert isinstance(response, HttpError)
    assert error in str(response)


async def test_a_decoded_body_is_held_to_the_size_limit(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    bomb = gzip.compress(b" " * (MAX_BODY + 1))  # ~1 kB that inflates past the limit
    raw = b"HTTP/1.1 201 X\r\nContent-Length: %d\r\nContent-Encoding: gzip\r\n\r\n%b" % (
        len(bomb),
        bomb,
    )
    _, _, response = await exchange(serve, raw, close=False)
    assert isinstance(response, HttpError)
    assert "too large" in str(response)
    # The same limit on a plain body says so too (it used to read "User callback error").
    big = b"HTTP/1.1 201 X\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1) + b" " * (MAX_BODY + 1)
    _, _, response = await exchange(serve, big, close=False)
    assert isinstance(response, HttpError)
    assert "too large" in str(response)


async def test_a_connection_is_reused_after_a_decoded_answer(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    body = chunked(gzip.compress(SID))

    async def gzipped(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 201 X\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body)
        return True

    server = await serve(gzipped)
    client = HttpClient()
    request = client.prepare(server.url, {})
    try:
        answers = [await client.post(request, b"x", within_s=5) for _ in range(3)]
    finally:
        await client.close()
    assert [a.body for a in answers] == [SID] * 3
    assert server.connections == 1


async def test_twilio_accepting_a_text_with_a_gzip_answer_is_a_sent_text(
    serve: Callable[[Handler], Awaitable[RawServer]],
) -> None:
    """The symptom: Twilio's 201 arrived gzip-compressed and the text was recorded as failed."""
    body = gzip.compress(b'{"sid": "SM0123456789abcdef0123456789abcdef", "status": "queued"}')

    async def compressing(_request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(answer(201, body, "Content-Encoding: gzip", "Content-Type: application/json"))
        return True

    server = await serve(compressing)
    provider = TwilioProvider("AC" + "1" * 32, "token", base_url=server.url.removesuffix("/send"))
    try:
        result = await provider.send(OutboundSms("+12025550001", "+15550100100", "Hi", None))
    finally:
        await provider.close()
    assert result.provider_id == "SM0123456789abcdef0123456789abcdef"
    assert result.error_code is None
