"""Hot reads: the busiest GET routes answered without FastAPI's per-request machinery.

Why: a cached stats document costs a few microseconds to find, but FastAPI spent most of the
request around it: matching the path against every included router, then solving the route's
dependency tree (`solve_dependencies`, 28% of the samples of a cached `/stats/summary`,
BENCHMARKS.md), and the session dependency opened a database session the cached answer never
used. Here a dict lookup finds the route, and the handler calls the same functions the FastAPI
endpoint calls.

What it guarantees (tests/api/test_hot_reads.py compares both paths):

- The same checks: `auth.deps.authenticate` (token, revocation through the session cache's
  'ended' marks or the database, the church's rate limit counted, the church's cache version
  read), then the same service function with the same arguments, answered by the same response
  code (`stats.router.json_document`, `kit.pagination.page_response`) and the same error answer
  as the app's handler (`error_response`): byte-identical bodies, status and headers.
- Only requests it can take exactly as FastAPI would: GET of a listed path whose query string
  holds only the parameters listed for it, each given once, in a canonical valid form
  (`days=30`, `limit=50`, a non-empty cursor). Anything else (a bad value, an unknown or
  repeated parameter, a search) goes to FastAPI, whose validation answers it as before; so
  does everything while `app.dependency_overrides` is set (tests that replace dependencies).
- Everything around the request still happens: this layer sits inside `kit.http.RequestPipeline`
  (admission, request id, metrics under the route's path, the request log, Server-Timing), and
  sets `scope["route"]` and the request's church as FastAPI's route would.
- The database session is opened only when a statement must run (`db.database.LazyReadSession`:
  the session cache missed, or the document is not cached), from the app's database as a unit
  of work like the dependency's, and its statements run without BEGIN / COMMIT like
  `ReadDbSession`'s (both are `Database.read_only`).

The routes stay declared in their routers, so OpenAPI lists them as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.types import ASGIApp, Receive, Scope, Send

from koinonia.auth import deps
from koinonia.auth.context import AuthContext
from koinonia.db.database import LazyReadSession
from koinonia.db.session import SessionSource
from koinonia.kit.errors import KoinoniaError
from koinonia.kit.pagination import DEFAULT_LIMIT, MAX_LIMIT, page_response
from koinonia.members import service as members
from koinonia.stats import service as stats
from koinonia.stats.router import json_document

Handler = Callable[[AuthContext, SessionSource, dict[str, Any]], Awaitable[Response]]
# A parameter's value as FastAPI would give it to the endpoint, or None: not in the canonical
# form this layer takes (FastAPI answers that request).
Parser = Callable[[str], Any]


def error_response(exc: KoinoniaError) -> Response:
    """A domain error's answer: the app's exception handler and this layer both answer with it."""
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _header(scope: Scope, name: bytes) -> str | None:
    """The first value of a header, as `request.headers.get(...)` gives it (ASGI servers
    lower-case header names)."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bounded_int(low: int, high: int) -> Parser:
    def parse(value: str) -> int | None:
        if not value.isascii() or not value.isdigit() or value.startswith("0"):
            return None
        number = int(value)
        return number if low <= number <= high else None

    return parse


def _cursor(value: str) -> str | None:
    # kit.params.Cursor: at most 2,000 characters; an empty one is left to FastAPI.
    return value if 0 < len(value) <= 2000 else None


@dataclass(frozen=True, slots=True)
class HotRoute:
    handler: Handler
    params: dict[str, Parser]
    defaults: dict[str, Any]

    def arguments(self, query_string: bytes) -> dict[str, Any] | None:
        """The endpoint's arguments from the query string, or None when FastAPI must answer."""
        arguments = dict(self.defaults)
        if not query_string:
            return arguments
        seen: set[str] = set()
        for name, raw in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            parse = self.params.get(name)
            if parse is None or name in seen:
                return None
            value = parse(raw)
            if value is None:
                return None
            seen.add(name)
            arguments[name] = value
        return arguments


async def _summary(auth: AuthContext, source: SessionSource, args: dict[str, Any]) -> Response:
    return json_document(await stats.summary(source, auth))


async def _branches(auth: AuthContext, source: SessionSource, args: dict[str, Any]) -> Response:
    return json_document(await stats.branches(source, auth, days=args["days"]))


async def _messages(auth: AuthContext, source: SessionSource, args: dict[str, Any]) -> Response:
    return json_document(await stats.messages(source, auth, days=args["days"]))


async def _members(auth: AuthContext, source: SessionSource, args: dict[str, Any]) -> Response:
    items, next_cursor = await members.list_members(
        await source(),
        auth,
        group_id=None,
        branch_id=None,
        consent=None,
        q=None,
        limit=args["limit"],
        cursor=args["cursor"],
    )
    return page_response(items, next_cursor)


def hot_routes(prefix: str) -> dict[str, HotRoute]:
    """The hot reads by path. Defaults and bounds are those of the routes' declarations
    (stats.router `Days`, members.router `list_members`, kit.params)."""
    days = {"days": _bounded_int(1, 365)}
    return {
        f"{prefix}/stats/summary": HotRoute(_summary, {}, {}),
        f"{prefix}/stats/branches": HotRoute(_branches, days, {"days": 30}),
        f"{prefix}/stats/messages": HotRoute(_messages, days, {"days": 30}),
        f"{prefix}/members": HotRoute(
            _members,
            {"limit": _bounded_int(1, MAX_LIMIT), "cursor": _cursor},
            {"limit": DEFAULT_LIMIT, "cursor": None},
        ),
    }


class HotReads:
    """ASGI middleware in front of FastAPI's routing (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, routes: dict[str, HotRoute]) -> None:
        self.app = app
        self.api = api
        self.routes = routes
        self._declared: dict[str, APIRoute] | None = None

    def declared(self, path: str) -> APIRoute:
        """The route FastAPI would put in `scope["route"]` for `path` (metrics label requests
        by it): the router's own `APIRoute`, found through the app's included routers."""
        if self._declared is None:
            self._declared = {
                context.path: context.original_route
                for context in iter_route_contexts(self.api.routes)
                if isinstance(context.original_route, APIRoute)
                and context.path is not None
                and "GET" in (context.methods or ())
            }
        return self._declared[path]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            route = self.routes.get(scope["path"])
            if route is not None and not self.api.dependency_overrides:
                arguments = route.arguments(scope["query_string"])
                if arguments is not None:
                    scope["route"] = self.declared(scope["path"])
                    response = await self.answer(route, arguments, scope)
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def answer(self, route: HotRoute, arguments: dict[str, Any], scope: Scope) -> Response:
        # The session, if one was opened, ends with the `async with` block as the dependency's
        # would: committed (a read has nothing to commit) or, when an error leaves it, rolled
        # back, before the response starts.
        try:
            async with AsyncExitStack() as stack:
                source = LazyReadSession(deps.database_of(self.api), stack)
                token = deps.bearer_token_of(_header(scope, b"authorization"))
                auth = await deps.authenticate(await deps.settings(), token, source)
                scope.setdefault("state", {})["church_id"] = auth.church_id
                return await route.handler(auth, source, arguments)
        except KoinoniaError as exc:
            return error_response(exc)
