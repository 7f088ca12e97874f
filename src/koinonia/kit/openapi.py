"""The OpenAPI document, made to say what the API answers (a client generated from it must work).

- One error schema, `ErrorOut` (`{"error", "detail", "fields"?}`, what every handler sends),
  with `PlanLimitOut` (402) and `RateLimitedOut` (429) adding their keys. Routers declare the
  errors their operations answer with `errors({status: description})`, per route or for a
  whole router (`AUTHENTICATED`: 401 and the church's 429 for every route behind a token).
- `install(app)` completes the document with what holds for every operation, whatever its
  router: FastAPI's `HTTPValidationError` 422 becomes `ErrorOut` (the shape the validation
  handler really sends); operations with a body can answer 400 (unparsable body), 408 (body
  too slow), 413 (body too large) and 422; every operation that reaches the database can answer
  503 with `Retry-After`. The probes, declared in app.py without models, get theirs here.
- `install(app)` also answers 405 with the `Allow` header listing every method the path takes:
  Starlette lists only the methods of the first route matching the path (`Allow: GET` on a
  path that also takes POST), since FastAPI makes one route per method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

Responses = dict[int | str, dict[str, Any]]


class ErrorOut(BaseModel):
    """Every error answer has this shape; some codes add keys of their own."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(
        description="Machine-readable code: `validation_error`, `not_found`, `conflict`, "
        "`plan_limit_reached`, `rate_limited`, `unauthorized`, `session_revoked`..."
    )
    detail: str = Field(description="What went wrong, in words for people.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Only when input was refused: what is wrong with each input field, by its "
        "dotted name (`target.ids`, `cursor`, `file`).",
    )


class PlanLimitOut(ErrorOut):
    """402: the plan's limit would be exceeded (`plan_limit_reached`)."""

    resource: str = Field(description="What is limited: members, branches, co-admins, texts...")
    limit: int
    usage: int
    requested: int
    remaining: int = Field(description="max(limit - usage, 0).")


class RateLimitedOut(ErrorOut):
    """429: too many requests (`rate_limited`); retry after `retry_after` seconds."""

    retry_after: int = Field(description="Seconds to wait; also the `Retry-After` header.")


class ReadyOut(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = Field(
        description="`database` (and `redis` when configured): `ok` or `error: <cause>`."
    )


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer", "minimum": 0},
    }
}
_MODELS: dict[int, type[ErrorOut]] = {402: PlanLimitOut, 429: RateLimitedOut}


def errors(descriptions: Mapping[int, str]) -> Responses:
    """`responses=` for a route or router: each status answered with the error shape."""
    out: Responses = {}
    for status, description in descriptions.items():
        response: dict[str, Any] = {
            "model": _MODELS.get(status, ErrorOut),
            "description": description,
        }
        if status == 429:
            response["headers"] = _RETRY_AFTER
        out[status] = response
    return out


AUTHENTICATED = errors(
    {
        401: "No valid access token (`not_authenticated`, `invalid_token`, `token_expired`), "
        "or its session ended (`session_revoked`).",
        429: "The church's requests per minute are used up (`rate_limited`).",
    }
)
PRIMARY_ONLY = errors({403: "Only the church's PRIMARY admin may do this (`primary_only`)."})


def not_found(what: str) -> Responses:
    return errors({404: f"No {what} with this id in this church (`not_found`)."})


# --- What holds for every operation, added to the document generated from the routes ----------

_BODY_ERRORS = {
    "400": "The body could not be parsed (malformed JSON or form data).",
    "408": "The body did not arrive in time (`request_timeout`).",
    "413": "The body is over the size limit (`payload_too_large`).",
}
_INVALID = "Invalid input (`validation_error`): `fields` says what is wrong with each field."
_UNAVAILABLE = "The database is unavailable for now (`service_unavailable`); retry later."
# Operations that never touch the database, so never answer 503.
_NO_DATABASE = frozenset({("get", "/healthz"), ("get", "/metrics")})
_ERROR_REF = {"$ref": "#/components/schemas/ErrorOut"}


def _error_response(description: str, *, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ERROR_REF}},
    }
    if headers:
        response["headers"] = headers
    return response


def _probes(paths: dict[str, Any]) -> None:
    """The probes are declared in app.py with plain responses: give them their real answers."""
    ready = {"application/json": {"schema": {"$ref": "#/components/schemas/ReadyOut"}}}
    readyz = paths["/readyz"]["get"]["responses"]
    readyz["200"] = {"description": "The database (and Redis) answer.", "content": ready}
    readyz["503"] = {"description": "A dependency does not answer.", "content": ready}
    paths["/metrics"]["get"]["responses"]["200"] = {
        "description": "Prometheus text exposition format.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }


def complete(document: dict[str, Any]) -> dict[str, Any]:
    """Adds to a generated document the answers every operation can give (module docstring)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ReadyOut):
        schemas.setdefault(model.__name__, model.model_json_schema(mode="serialization"))
    paths: dict[str, Any] = document.get("paths", {})
    for path, operations in paths.items():
        for method, operation in operations.items():
            responses: dict[str, Any] = operation.setdefault("responses", {})
            has_body = "requestBody" in operation
            if "422" in responses:  # FastAPI declares it where it validates parameters or a body
                responses["422"] = _error_response(_INVALID)
            if has_body:
                for status, description in _BODY_ERRORS.items():
                    responses.setdefault(status, _error_response(description))
            if (method, path) not in _NO_DATABASE:
                responses.setdefault("503", _error_response(_UNAVAILABLE, headers=_RETRY_AFTER))
    if "/readyz" in paths and "/metrics" in paths:
        _probes(paths)
    # FastAPI's own validation error shapes are never sent.
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """The methods for which routing finds a route of this path, asked of the router itself
    (FastAPI's included routers are not flat lists of routes in every version)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    detail = exc.detail if isinstance(exc, StarletteHTTPException) else "Method Not Allowed"
    return JSONResponse(
        {"error": "method_not_allowed", "detail": str(detail)},
        status_code=405,
        headers={"Allow": ", ".join(_allowed_methods(request))},
    )


def install(app: FastAPI) -> None:
    """Serve the completed document at /openapi.json (and /docs), and true 405 answers."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    # A handler for the status code takes precedence over app.py's HTTPException handler.
    app.add_exception_handler(405, _method_not_allowed)
