"""ASGI middleware: request body limits and per-request observability."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from koinonia.db import observe
from koinonia.kit import metrics
from koinonia.kit.logging import log


def _json_error(status: int, code: str, detail: str) -> tuple[dict[str, Any], bytes]:
    body = orjson.dumps({"error": code, "detail": detail})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))],
    }
    return start, body


class BodyLimit:
    """Refuse bodies over the limit with 413 before the app reads them (uploads get more)."""

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_upload_bytes: int) -> None:
        self.app, self.max_bytes, self.max_upload_bytes = app, max_bytes, max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_upload_bytes if scope["path"].endswith("/import") else self.max_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._refuse(send, limit)
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:
            await self._refuse(send, limit)

    @staticmethod
    async def _refuse(send: Send, limit: int) -> None:
        start, body = _json_error(413, "payload_too_large", f"request body over {limit} bytes")
        await send(start)
        await send({"type": "http.response.body", "body": body})


class BodyTooLarge(Exception):
    pass


class Observe:
    """Request id, statement count and database time per request: logged, exported as metrics
    and returned in `Server-Timing` and `X-Request-Id`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _header(scope, b"x-request-id") or uuid.uuid4().hex
        started = time.perf_counter()
        status = 500
        with observe.track(f"{scope['method']} {scope['path']}") as stats:
            structlog.contextvars.bind_contextvars(request_id=request_id)

            async def send_wrapper(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                    total_ms = (time.perf_counter() - started) * 1000
                    timing = (
                        f'db;dur={stats.db_seconds * 1000:.2f};desc="{stats.count} statements", '
                        f"app;dur={total_ms:.2f}"
                    )
                    headers = list(message.get("headers", []))
                    headers.append((b"x-request-id", request_id.encode()))
                    headers.append((b"server-timing", timing.encode()))
                    message = {**message, "headers": headers}
                await send(message)

            try:
                await self.app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - started
                route = scope.get("route")
                route_path = getattr(route, "path", "unmatched")
                metrics.HTTP_REQUESTS.labels(scope["method"], route_path, str(status)).inc()
                metrics.HTTP_SECONDS.labels(route_path).observe(elapsed)
                state = scope.get("state") or {}
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 2),
                    statements=stats.count,
                    db_ms=round(stats.db_seconds * 1000, 2),
                    church_id=state.get("church_id"),
                )
                structlog.contextvars.unbind_contextvars("request_id")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text = value.decode("latin-1")[:64]
            return text if text.isprintable() else None
    return None


class Admission:
    """At most `limit` requests in the app at once; the rest wait here, in arrival order,
    before they hold anything. Past the pool's size, more requests in flight only starve the
    ones holding connections (1,000 clients against pool 30 made checkouts time out at 45 s);
    queueing at the door keeps every admitted request fast. Health and metrics skip the line."""

    EXEMPT = ("/healthz", "/readyz", "/metrics")

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app = app
        self.gate = asyncio.Semaphore(limit)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.EXEMPT:
            await self.app(scope, receive, send)
            return
        async with self.gate:
            await self.app(scope, receive, send)
