"""The FastAPI application: lifespan (database, store, migrations), routers, errors, middleware.

The app owns its database (`db.database.Database`) on `app.state.database`, and with it the
writer of its delivery reports (`app.state.report_writer`): opened by the lifespan from the
settings, or given to `create_app` by a caller that owns it (`koinonia dev` shares one with its
worker; tests give theirs)."""

from __future__ import annotations

import gc
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.exceptions import HTTPException as StarletteHTTPException

from koinonia.config import Settings, get_settings
from koinonia.db import observe
from koinonia.db.database import Database
from koinonia.db.migrate import migrate
from koinonia.db.outage import outage_cause
from koinonia.hot_reads import HotReads, error_response, hot_routes
from koinonia.kit import metrics, openapi
from koinonia.kit.errors import DatabaseUnavailable, InternalError, KoinoniaError
from koinonia.kit.http import RequestPipeline
from koinonia.kit.logging import configure_logging_from, log
from koinonia.kit.store import get_store, init_store

API_PREFIX = "/api/v1"
# The probes skip the request pipeline's admission gate: they must answer while it is full.
PROBES = ("/healthz", "/readyz", "/metrics")
# The order the API documentation lists its sections in (routes are registered in another
# order, see create_app).
TAGS = [
    "auth",
    "church",
    "branches",
    "groups",
    "members",
    "templates",
    "messages",
    "conversations",
    "recurring",
    "webhooks",
    "stats",
    "billing",
    "ops",
]

DESCRIPTION = """
Koinonia: texting for churches. Every list is cursor-paginated (`limit` ≤ 200, `cursor` from
`next_cursor`). Errors share one shape: `{"error": code, "detail": text, "fields": {...}}`.
Authenticate with `Authorization: Bearer <access token>` from `/auth/login`.
"""


def _routers() -> list[Any]:
    from koinonia.auth.router import router as auth
    from koinonia.billing.router import router as billing
    from koinonia.branches.router import router as branches
    from koinonia.churches.router import router as churches
    from koinonia.conversations.router import router as conversations
    from koinonia.groups.router import router as groups
    from koinonia.members.router import router as members
    from koinonia.messages.router import router as messages
    from koinonia.recurring.router import router as recurring
    from koinonia.stats.router import router as stats
    from koinonia.templates.router import router as templates
    from koinonia.webhooks.router import router as webhooks

    return [
        webhooks,
        members,
        stats,
        auth,
        churches,
        branches,
        groups,
        templates,
        messages,
        conversations,
        recurring,
        billing,
    ]


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    """The API. Without `database`, the lifespan opens one from `settings`, migrates it, tunes
    the collector for a long-lived API process and disposes of the database at shutdown (what
    `koinonia serve` runs); with one, the caller owns it (migrated, disposed of by the caller)
    and the lifespan leaves it and the collector alone."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging_from(settings)
        init_store(settings.redis_url, settings.store_prefix)
        opened = Database.open(settings) if database is None else None
        try:
            if opened is not None:
                await migrate(opened.engine)
                _serve_from(app, opened)
                _tune_gc()
            log.info("api_started", env=settings.env)
            yield
        finally:  # also when start-up failed (a migration that raised)
            if opened is not None:
                await opened.dispose()
            await get_store().close()
            metrics.process_exiting()

    app = FastAPI(
        title="Koinonia API",
        version="1.0",
        description=DESCRIPTION,
        openapi_tags=[{"name": tag} for tag in TAGS],
        lifespan=lifespan,
        telemetry=None
        if settings.opentelemetry
        else {"tracing": False, "metrics": False, "logs": False},
    )
    # Routes are matched in registration order, one regex per route: the probes and the
    # busiest routers (webhooks, members, stats) come first. Prefixes never overlap, so the
    # order changes nothing but the work of matching.
    _install_ops_routes(app, settings)
    for router in _routers():
        app.include_router(router, prefix=API_PREFIX)
    _install_error_handlers(app)
    openapi.install(app)
    # Innermost first: the hot reads run inside the request pipeline, in front of routing.
    app.add_middleware(HotReads, api=app, routes=hot_routes(API_PREFIX))
    app.add_middleware(
        RequestPipeline,
        limit=settings.max_requests_in_flight,
        webhook_limit=settings.max_webhooks_in_flight,
        public_limit=settings.max_public_in_flight,
        webhook_prefix=f"{API_PREFIX}/webhooks/",
        public_paths=[f"{API_PREFIX}/auth/{name}" for name in ("login", "register", "refresh")],
        exempt_paths=PROBES,
        upload_suffix="/import",
        max_bytes=settings.max_body_bytes,
        max_upload_bytes=settings.max_upload_bytes,
        body_timeout_s=settings.body_timeout_s,
        upload_timeout_s=settings.upload_timeout_s,
        on_error=UnhandledErrors(),
        track=observe.track,
    )
    if database is not None:
        _serve_from(app, database)
    return app


def _serve_from(app: FastAPI, database: Database) -> None:
    """The app's database, and the delivery-report writer storing into it."""
    from koinonia.webhooks.batching import ReportWriter

    app.state.database = database
    app.state.report_writer = ReportWriter.into(database)


def _tune_gc() -> None:
    """The API process: everything alive at start-up (modules, routes, models) lives as long as
    the process, so it is moved out of the collector's generations, and the youngest generation
    is collected every 20,000 allocations instead of 700. A request allocates thousands of
    objects (ORM rows, models, dicts), so the default thresholds collected several times per
    request: measured -10% CPU per request on the list and cached-stats endpoints."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)


def _field_path(loc: Sequence[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or str(loc[0] if loc else "request")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(KoinoniaError)
    async def domain_error(request: Request, exc: KoinoniaError) -> Response:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        fields: dict[str, str] = {}
        for err in exc.errors():
            msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            fields.setdefault(_field_path(err.get("loc", ())), msg)
        status = 400 if any(e.get("type") == "json_invalid" for e in exc.errors()) else 422
        detail = "malformed JSON body" if status == 400 else "invalid input"
        return JSONResponse(
            {"error": "validation_error", "detail": detail, "fields": fields}, status_code=status
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, "http_error"), "detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    # Exceptions no handler takes are answered by the request pipeline (`unhandled_error`):
    # a handler registered for Exception runs in Starlette's outermost middleware, which
    # re-raises after answering, and uvicorn then drops the client's keep-alive connection.


# Seconds a client is asked to wait before retrying while the database is unavailable: a
# restart or failover takes a few seconds; a pool exhausted for pool_timeout_s is a backlog.
DATABASE_RETRY_AFTER_S = 5


class _OncePerCause:
    """Logs a recurring condition once per cause and then at most every `every_s` seconds, with
    how many occurrences went unlogged meanwhile: during an outage every request fails the same
    way, and a traceback per request made the API CPU-bound on logging (84 s outage, 13 s
    latency). Not the worker's `DatabaseOutage` (once per outage, then `database_recovered`):
    requests that succeed pass no sign to this log, so it cannot tell when an outage ends and
    repeats after `every_s` instead."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.logged_at: dict[str, float] = {}
        self.unlogged: dict[str, int] = {}

    def __call__(self, event: str, cause: str, **fields: Any) -> None:
        now = time.monotonic()
        last = self.logged_at.get(cause)
        if last is not None and now - last < self.every_s:
            self.unlogged[cause] = self.unlogged.get(cause, 0) + 1
            return
        self.logged_at[cause] = now
        log.warning(event, cause=cause, unlogged=self.unlogged.pop(cause, 0), **fields)


class UnhandledErrors:
    """The request pipeline's answer to an exception no handler took (`on_error`): 503
    `database_unavailable` with Retry-After when the database cannot serve (logged once per
    cause, without a traceback: the cause says it all), else a 500 with its traceback logged."""

    def __init__(self) -> None:
        self.log_outage = _OncePerCause()

    def __call__(self, exc: Exception, scope: Any) -> KoinoniaError:
        cause = outage_cause(exc)
        if cause is not None:
            error = f"{type(exc).__name__}: {exc}"[:300]
            self.log_outage("database_unavailable", cause, error=error, path=scope.get("path"))
            return DatabaseUnavailable(retry_after=DATABASE_RETRY_AFTER_S)
        log.error("unhandled_error", path=scope.get("path"), exc_info=exc)
        return InternalError("something went wrong on our side")


def _install_ops_routes(app: FastAPI, settings: Settings) -> None:
    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz(request: Request) -> Response:
        """The database (and Redis, when configured) answer."""
        checks: dict[str, str] = {}
        try:
            async with request.app.state.database.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        if settings.redis_url:
            checks["redis"] = "ok" if await get_store().ping() else "error"
        ok = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ok else "unavailable", "checks": checks},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["ops"], include_in_schema=True)
    async def prometheus_metrics() -> Response:
        """Prometheus metrics: HTTP, SQL statements, slow queries, N+1, pool, cache, SMS (of every
        worker process under `koinonia serve --workers N`, see kit.metrics)."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
