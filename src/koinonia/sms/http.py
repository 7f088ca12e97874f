"""The HTTP client of the provider adapters: keep-alive HTTP/1.1 POSTs, nothing else.

The adapters make one kind of request, millions of times: POST a small body with the same
headers to the same URL, read the status, Retry-After and a small JSON body. aiohttp's
general-purpose client spends ~125 µs of CPU on each (request and response objects, header
multidicts, payload registry, tracing hooks, timers); this client spends ~30 µs, which on a
two-core machine is the difference between the workers or the carrier being the bottleneck.

What it does: one pool of keep-alive connections per origin (scheme, host, port) with at most
`limit` open at once (requests beyond wait for one), TLS for https (certificates verified
against the system's CAs, as aiohttp does), a total timeout per request covering the wait for a
connection, connecting, sending and reading, and connections idle longer than `keepalive_s`
closed instead of reused (checked when the next request to that origin picks one).
Responses are parsed by llhttp (httptools, the C parser uvicorn uses): Content-Length,
chunked and close-delimited bodies, `Connection: close`, interim 1xx answers.

Codings: requests say `Accept-Encoding: identity`, but a server may compress anyway (an
accepted text's answer must still be read, or the text is recorded as failed), so gzip and
deflate are decoded wherever they appear: in `Content-Encoding`, and in `Transfer-Encoding`
before a final `chunked` (llhttp removes the chunking) or alone (the body then ends with the
connection, as RFC 9112 §6.3 says). Any other coding, or `chunked` anywhere but last, cannot
be read: the exchange fails with an HttpError naming the coding (a transient result, like a
reset). Decoded bodies are held to the same size limit as plain ones. A body without codings
costs nothing extra.

What it does not do, because the adapters need none of it: redirects, proxies, cookies,
request streaming. A request is never retried: a POST may have been acted on, and a transport
failure is a transient result the dispatcher retries with backoff, as it did with aiohttp.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import zlib
from collections import deque
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

import httptools

MAX_BODY = 1 << 20  # a provider's answer is a few hundred bytes; more is a broken server
USER_AGENT = "koinonia"
# Codings this client can undo (the names RFC 9110 §8.4.1 registers, and identity).
_DECODABLE = frozenset((b"gzip", b"x-gzip", b"deflate", b"identity"))


class HttpError(Exception):
    """The exchange failed at the transport level (refused, reset, closed, malformed)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    retry_after: str | None  # the Retry-After header, if any


@dataclass(frozen=True, slots=True)
class Prepared:
    """A URL and headers encoded once; `HttpClient.post` adds the body per request."""

    origin: tuple[str, str, int]  # scheme, host, port
    head: bytes  # request line and headers, up to (not including) Content-Length


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        self._chunks: list[bytes] = []
        self._size = 0
        self._retry_after: str | None = None
        self._headers_done = False
        self._delimited = False  # Content-Length or chunked: the body's end is in the message
        self._has_length = False
        # Codings named by Transfer-Encoding / Content-Encoding, in the order the server
        # applied them; None when the header is absent (the common case costs nothing).
        self._transfer: list[bytes] | None = None
        self._content: list[bytes] | None = None
        self._codings: list[bytes] | None = None  # what the body needs undone, in applied order

    # --- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            # Nothing asked: a server talking out of turn (a 408 before an idle close).
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            # An HttpError raised by a callback below arrives wrapped in "User callback error".
            cause = exc.__context__
            self._fail(
                cause if isinstance(cause, HttpError) else HttpError(f"malformed response: {exc}")
            )
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            if self._headers_done and not self._delimited and exc is None:
                # A body delimited by the end of the connection (no length, not chunked). One
                # with a length or chunks that ends early is cut off: an error, never an answer.
                self._complete(keep_alive=False)
            else:
                self._fail(HttpError(f"connection closed: {exc}" if exc else "connection closed"))

    # --- httptools callbacks ----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"retry-after":
            self._retry_after = value.decode("latin-1").strip()
        elif lowered == b"content-length":
            self._has_length = True
        elif lowered == b"transfer-encoding":
            # Repeated headers are one list (RFC 9110 §5.3), as llhttp reads them.
            self._transfer = (self._transfer or []) + _coding_names(value)
        elif lowered == b"content-encoding":
            self._content = (self._content or []) + _coding_names(value)

    def on_headers_complete(self) -> None:
        self._headers_done = True
        transfer, content = self._transfer, self._content
        if transfer is None:
            self._delimited = self._has_length
        else:
            # llhttp de-chunks a body whose last transfer coding is chunked; otherwise the
            # body runs to the end of the connection, still in every coding listed.
            self._delimited = bool(transfer) and transfer[-1] == b"chunked"
            if self._delimited:
                transfer = transfer[:-1]
            for coding in transfer:
                if coding == b"chunked":
                    raise HttpError("chunked is not the final transfer coding")
                if coding not in _DECODABLE:
                    raise HttpError(f"unsupported transfer coding {coding.decode('latin-1')!r}")
        if content is not None:
            for coding in content:
                if coding not in _DECODABLE:
                    raise HttpError(f"unsupported content coding {coding.decode('latin-1')!r}")
        if transfer or content:
            # Content codings were applied first, transfer codings on top of them.
            self._codings = [*(content or ()), *(transfer or ())]

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_BODY:
            raise HttpError("response body too large")  # surfaces from feed_data
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:  # interim answer: the real one follows
            self._reset()
            return
        self._complete(keep_alive=self._parser.should_keep_alive())

    # --- requests ---------------------------------------------------------------------------

    def send(self, request: bytes) -> asyncio.Future[Response]:
        if self.transport is None or self.closed:
            raise HttpError("connection closed")
        self._reset()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _reset(self) -> None:
        self._chunks = []
        self._size = 0
        self._retry_after = None
        self._headers_done = False
        self._delimited = False
        self._has_length = False
        self._transfer = self._content = self._codings = None

    def _complete(self, *, keep_alive: bool) -> None:
        waiter, self._waiter = self._waiter, None
        if not keep_alive:
            self.close()
        if waiter is None or waiter.done():
            return
        body = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        if self._codings is not None and body:
            try:
                body = _decode(body, self._codings)
            except HttpError as exc:
                waiter.set_exception(exc)
                return
        waiter.set_result(Response(self._parser.get_status_code(), body, self._retry_after))

    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)


def _coding_names(value: bytes) -> list[bytes]:
    """`gzip, chunked` → [b"gzip", b"chunked"]: lower-cased, parameters dropped."""
    names = (part.partition(b";")[0].strip().lower() for part in value.split(b","))
    return [name for name in names if name]


def _decode(body: bytes, codings: list[bytes]) -> bytes:
    """Undo `codings` (applied in this order) on `body`; HttpError if it cannot be read."""
    for coding in reversed(codings):
        if coding == b"identity":
            continue
        try:
            if coding == b"deflate":
                # HTTP's deflate is the zlib format; some servers send raw deflate instead.
                try:
                    body = _inflate(body, zlib.MAX_WBITS)
                except zlib.error:
                    body = _inflate(body, -zlib.MAX_WBITS)
            else:  # gzip, x-gzip
                body = _inflate(body, 16 + zlib.MAX_WBITS)
        except zlib.error as exc:
            raise HttpError(f"undecodable {coding.decode()} body: {exc}") from None
    return body


def _inflate(data: bytes, wbits: int) -> bytes:
    """Decompress a whole stream (several gzip members included), at most MAX_BODY bytes."""
    out: list[bytes] = []
    size = 0
    while True:
        inflater = zlib.decompressobj(wbits)
        part = inflater.decompress(data, MAX_BODY + 1 - size)
        size += len(part)
        if size > MAX_BODY:
            raise HttpError("response body too large")
        if not inflater.eof:
            raise zlib.error("truncated stream")
        out.append(part)
        data = inflater.unused_data
        if not data or wbits != 16 + zlib.MAX_WBITS:
            # Only gzip has members; trailing bytes after a zlib or raw stream are ignored.
            return out[0] if len(out) == 1 else b"".join(out)


class _Pool:
    """Connections to one origin: idle ones most recent last, at most `limit` in use."""

    def __init__(self, limit: int) -> None:
        self.slots = asyncio.Semaphore(limit)
        self.idle: deque[_Connection] = deque()


class HttpClient:
    """Keep-alive connection pools, one per origin. Create inside a running event loop's
    lifetime; `close()` closes every connection."""

    def __init__(
        self,
        *,
        limit: int = 200,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.keepalive_s = keepalive_s
        self._ssl_context = ssl_context
        self._pools: dict[tuple[str, str, int], _Pool] = {}
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def prepare(url: str, headers: dict[str, str]) -> Prepared:
        """Encode the request line and headers of POSTs to `url` once."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {path} HTTP/1.1", f"Host: {parts.netloc.rpartition('@')[2]}"]
        given = {name.lower() for name in headers}
        if "user-agent" not in given:
            lines.append(f"User-Agent: {USER_AGENT}")
        if "accept-encoding" not in given:
            lines.append("Accept-Encoding: identity")
        for name, value in headers.items():
            if "\r" in value or "\n" in value or name.lower() in ("content-length", "host"):
                raise ValueError(f"header {name!r} cannot be set")
            lines.append(f"{name}: {value}")
        head = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        return Prepared((parts.scheme, parts.hostname, port), head)

    async def post(self, request: Prepared, body: bytes, *, within_s: float) -> Response:
        """POST `body`. Raises TimeoutError when no answer within `within_s` seconds (waiting for
        a free connection included), HttpError or OSError when the transport fails."""
        if self._closed:
            raise HttpError("client is closed")
        pool = self._pools.get(request.origin)
        if pool is None:
            pool = self._pools[request.origin] = _Pool(self.limit)
        message = b"%bContent-Length: %d\r\n\r\n%b" % (request.head, len(body), body)
        async with asyncio.timeout(within_s), pool.slots:
            conn = self._idle_connection(pool) or await self._connect(request.origin)
            try:
                response = await conn.send(message)
            except BaseException:
                # Cancelled or timed out mid-exchange: a late answer must never be read as the
                # answer to the connection's next request.
                conn.close()
                raise
            if self._closed:
                conn.close()
            elif not conn.closed:
                conn.idle_since = time.monotonic()
                pool.idle.append(conn)
            return response

    def _idle_connection(self, pool: _Pool) -> _Connection | None:
        now = time.monotonic()
        idle = pool.idle
        # Oldest first: close those idle past keep-alive (the server may be about to).
        while idle and (idle[0].closed or now - idle[0].idle_since > self.keepalive_s):
            idle.popleft().close()
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def _connect(self, origin: tuple[str, str, int]) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = ssl.create_default_context()
            context = self._ssl_context
        _, conn = await loop.create_connection(
            _Connection, host, port, ssl=context, server_hostname=host if context else None
        )
        return conn

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()
        self._pools.clear()
        # Let transports finish closing before the loop may go away.
        with contextlib.suppress(Exception):
            await asyncio.sleep(0)
