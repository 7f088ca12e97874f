"""The per-request ASGI pipeline: bodies, admission, errors, observability (transport only).

One pure ASGI middleware does all of it, in one coroutine frame per request (it replaced four
stacked middlewares: each layer cost a coroutine frame and a `send` wrapper per request, ~10% of
a cached read):

1. Body: a request that carries one (`Content-Length` > 0 or `Transfer-Encoding`) is read whole
   BEFORE admission, within `body_timeout_s` (`upload_timeout_s` for paths ending in
   `upload_suffix`, the app's `/import`); a client that does not send it in time is answered
   408 and its connection closed. A body over `max_bytes` (`max_upload_bytes` for uploads) is
   refused with 413 (`kit.errors.PayloadTooLarge`), by `Content-Length`
   or while it streams; a client that disconnects mid-body is logged as status 499, nothing is
   answered and nothing is an error. Reading first is what keeps a slot from being held by a
   client that is not sending: 64 connections announcing a megabyte and sending a few bytes
   used to hold every slot, and every other request waited for as long as they stayed.
   The app then reads the body from memory.
2. Admission: at most `limit` requests in the app at once; the rest wait here, in arrival
   order, before they hold anything. Past the pool's size, more requests in flight only starve
   the ones holding connections (1,000 clients against pool 30 made checkouts time out at
   45 s); queueing at the door keeps every admitted request fast. Carriers' webhooks
   (`webhook_prefix`) and the unauthenticated auth endpoints (`public_paths`: login, register,
   refresh) have gates of their own: delivery reports never queue behind user traffic (carriers
   give up after 5-15 s), and a flood of logins cannot take the slots of signed-in users.
   `exempt_paths` (the app's health and metrics probes) skip admission.
3. Errors: an exception no handler took becomes the answer `on_error` makes of it (a JSON 500,
   or a 503 for a database outage), sent here, so the connection stays usable: Starlette's
   own last-resort handler re-raises after answering, and uvicorn then drops the keep-alive
   connection, failing the client's next request too.
4. Observability: request id (`X-Request-Id`, taken from the request when printable), statement
   count and database time per request (`track`, the app's `db.observe.track`), returned in
   `Server-Timing`,
   exported as metrics and logged as one `request` event per request.

What a request's writes cause (invalidating the church's cached documents, ending cached
sessions) is not decided here from the HTTP method: the services register it on their unit of
work (`db.session.on_commit`, `db.effects.church_changed`), so it runs only after the commit,
for requests and jobs alike, before the response starts.

Headers are the server's part: `kit.server` gives uvicorn a header deadline and keep-alive
timeout, so a connection that never finishes its headers is closed before it gets here.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Any, Protocol

import orjson
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from structlog.contextvars import bind_contextvars, unbind_contextvars

from koinonia.kit import metrics
from koinonia.kit.deadlines import Deadlines
from koinonia.kit.errors import KoinoniaError, PayloadTooLarge
from koinonia.kit.logging import log_request

# Logged (and counted) for a client that went away before it was answered: nginx's code.
CLIENT_CLOSED = 499

ErrorAnswer = Callable[[Exception, Scope], KoinoniaError]


class UnitStats(Protocol):
    """What `track` counts for one request: its statements and their database time."""

    count: int
    db_seconds: float


Track = Callable[[str], AbstractContextManager[UnitStats]]


def _json_error(
    status: int, code: str, detail: str, *, close: bool = False
) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps({"error": code, "detail": detail})
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if close:
        headers.append((b"connection", b"close"))
    return {"type": "http.response.start", "status": status, "headers": headers}, body


class RequestPipeline:
    """Body, admission, errors and observability in one ASGI layer."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        webhook_limit: int,
        public_limit: int,
        webhook_prefix: str,
        public_paths: Collection[str],
        exempt_paths: Collection[str],
        upload_suffix: str,
        max_bytes: int,
        max_upload_bytes: int,
        body_timeout_s: float,
        upload_timeout_s: float,
        on_error: ErrorAnswer,
        track: Track,
    ) -> None:
        self.app = app
        self.gate = asyncio.Semaphore(limit)
        self.webhook_gate = asyncio.Semaphore(webhook_limit)
        self.public_gate = asyncio.Semaphore(public_limit)
        self.webhook_prefix = webhook_prefix
        self.public_paths = frozenset(public_paths)
        self.exempt_paths, self.upload_suffix = frozenset(exempt_paths), upload_suffix
        self.max_bytes, self.max_upload_bytes = max_bytes, max_upload_bytes
        self.body_timeout_s, self.upload_timeout_s = body_timeout_s, upload_timeout_s
        self.on_error, self.track = on_error, track
        self.bodies = BodyReader()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        method: str = scope["method"]
        path: str = scope["path"]
        gate: asyncio.Semaphore | None
        if path.startswith(self.webhook_prefix):
            gate = self.webhook_gate
        elif path in self.public_paths:
            gate = self.public_gate
        elif path in self.exempt_paths:
            gate = None
        else:
            gate = self.gate
        upload = path.endswith(self.upload_suffix)
        limit = self.max_upload_bytes if upload else self.max_bytes
        request_id: str | None = None
        has_body = too_large = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                has_body = value != b"0"
                too_large = value.isdigit() and int(value) > limit
            elif name == b"transfer-encoding":
                has_body = True
            elif name == b"x-request-id" and request_id is None:
                text = value.decode("latin-1")[:64]
                request_id = text if text.isprintable() else None
        if request_id is None:
            request_id = os.urandom(16).hex()
        status = 500
        with self.track(f"{method} {path}") as stats:
            bind_contextvars(request_id=request_id)
            answered = False

            async def send_observed(message: Message) -> None:
                nonlocal status, answered
                if message["type"] == "http.response.start":
                    status = message["status"]
                    total_ms = (time.perf_counter() - started) * 1000
                    timing = (
                        f'db;dur={stats.db_seconds * 1000:.2f};desc="{stats.count} statements", '
                        f"app;dur={total_ms:.2f}"
                    )
                    message = {
                        **message,
                        "headers": [
                            *message.get("headers", ()),
                            (b"x-request-id", request_id.encode()),
                            (b"server-timing", timing.encode()),
                        ],
                    }
                    answered = True
                await send(message)

            try:
                if too_large:
                    await _answer(send_observed, *_too_large(limit))
                    return
                if has_body:
                    timeout = self.upload_timeout_s if upload else self.body_timeout_s
                    body = await self.bodies.read(receive, limit, timeout)
                    if body is None:  # the client went away: nobody to answer
                        status = CLIENT_CLOSED
                        return
                    if isinstance(body, int):
                        await _answer(send_observed, *_refusal(body, limit, timeout))
                        return
                    receive = _replay(body, receive)
                if gate is not None:
                    await gate.acquire()
                try:
                    await self.app(scope, receive, send_observed)
                finally:
                    if gate is not None:
                        gate.release()
            except Exception as exc:
                if answered:
                    raise  # the response is half sent: only closing the connection ends it
                if isinstance(exc, ClientDisconnect):
                    status = CLIENT_CLOSED
                    return
                error = self.on_error(exc, scope)
                await _answer(send_observed, *_error_answer(error))
            finally:
                elapsed = time.perf_counter() - started
                route_path = getattr(scope.get("route"), "path", "unmatched")
                metrics.observe_request(method, route_path, status, elapsed)
                state = scope.get("state") or {}
                log_request(
                    request_id,
                    method=method,
                    path=path,
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    statements=stats.count,
                    db_ms=round(stats.db_seconds * 1000, 2),
                    church_id=state.get("church_id"),
                )
                unbind_contextvars("request_id")


class BodyReader:
    """Reads bodies under deadlines (`kit.deadlines`): a reader past its deadline is cancelled,
    and turns that cancellation into a 408. (`asyncio.timeout` per request cost ~20 µs of CPU
    per request with a body, measured.)"""

    def __init__(self) -> None:
        self.expired: set[asyncio.Task[Any]] = set()
        self.deadlines: Deadlines[asyncio.Task[Any]] = Deadlines(self._expire)

    def _expire(self, task: asyncio.Task[Any]) -> None:
        # A task has a deadline only while it waits in `receive()` (its one await in `read`),
        # so the cancellation always lands inside `read`, never in the app.
        self.expired.add(task)
        task.cancel()

    async def read(self, receive: Receive, limit: int, deadline_s: float) -> bytes | int | None:
        """The whole body; 408 or 413 when it is refused; None when the client disconnected."""
        task = asyncio.current_task()
        assert task is not None
        self.deadlines.add(task, deadline_s)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                message = await receive()
                if message["type"] != "http.request":  # http.disconnect
                    return None
                chunk: bytes = message.get("body", b"")
                size += len(chunk)
                if size > limit:
                    return 413
                chunks.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(chunks)
        except asyncio.CancelledError:
            if task not in self.expired:
                raise  # cancelled by someone else (shutdown): not ours to swallow
            task.uncancel()
            return 408
        finally:
            self.deadlines.discard(task)
            self.expired.discard(task)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The app's `receive`: the body read already, then the server's (for disconnects)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()

    return replay


def _too_large(limit: int) -> tuple[dict[str, Any], bytes]:
    return _error_answer(PayloadTooLarge(f"request body over {limit} bytes"))


def _refusal(status: int, limit: int, timeout: float) -> tuple[dict[str, Any], bytes]:
    if status == 413:
        return _too_large(limit)
    # The rest of the body may still come: the connection cannot carry another request.
    return _json_error(
        408, "request_timeout", f"request body not received within {timeout:g} s", close=True
    )


def _error_answer(error: KoinoniaError) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    for name, value in (error.headers or {}).items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return {"type": "http.response.start", "status": error.status, "headers": headers}, body


async def _answer(send: Send, start: dict[str, Any], body: bytes) -> None:
    await send(start)
    await send({"type": "http.response.body", "body": body})
