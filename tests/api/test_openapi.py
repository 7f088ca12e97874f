"""The OpenAPI document says what the API answers, and the API takes what the document says.

The conformance fuzzing of every operation is in test_openapi_fuzz.py; these are the targeted
checks: the error shape and statuses every operation declares, `Allow` on 405, JSON types in
request bodies taken as the document types them (no lax coercion), quiet hours and billing
months in the formats the document gives.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    return app.openapi()


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _url(path: str) -> str:
    """The path with 1 for every id."""
    return re.sub(r"\{[a-z_]+\}", "1", path)


def _schema_ref(response: dict[str, Any]) -> str | None:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref")


def test_validation_errors_are_documented_as_the_error_shape_sent(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    assert set(schemas["ErrorOut"]["required"]) == {"error", "detail"}
    assert schemas["ErrorOut"]["properties"]["fields"]["type"] == "object"
    for method, path, operation in _operations(document):
        for status, response in operation["responses"].items():
            if status.startswith("4") or status.startswith("5"):
                assert _schema_ref(response) in {
                    ERROR_REF,
                    "#/components/schemas/PlanLimitOut",
                    "#/components/schemas/RateLimitedOut",
                    "#/components/schemas/ReadyOut",
                }, (method, path, status)


def test_every_operation_declares_the_errors_it_can_answer(document: dict[str, Any]) -> None:
    for method, path, operation in _operations(document):
        declared = set(operation["responses"])
        if operation.get("security") and path != "/api/v1/auth/refresh":
            assert {"401", "429"} <= declared, (method, path)
            assert "Retry-After" in operation["responses"]["429"]["headers"]
        if "requestBody" in operation:
            assert {"400", "408", "413"} <= declared, (method, path)
        if "{" in path:
            assert "404" in declared, (method, path)
        if path not in {"/healthz", "/metrics"}:
            assert "503" in declared, (method, path)
            assert "Retry-After" in operation["responses"]["503"].get("headers", {}) or (
                path == "/readyz"
            )
    paths = document["paths"]
    assert "409" in paths["/api/v1/branches/{branch_id}"]["delete"]["responses"]
    assert "402" in paths["/api/v1/messages"]["post"]["responses"]
    assert "403" in paths["/api/v1/church"]["patch"]["responses"]
    plan_limit = paths["/api/v1/members"]["post"]["responses"]["402"]
    assert _schema_ref(plan_limit) == "#/components/schemas/PlanLimitOut"
    assert paths["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}


async def test_405_allows_every_method_the_path_takes(
    client: httpx.AsyncClient, document: dict[str, Any]
) -> None:
    # Starlette answered with the methods of the first route of the path only (FastAPI makes a
    # route per method): `Allow: GET` on /branches, which takes POST too.
    for path in document["paths"]:
        # Every operation whose path template matches the URL (/groups/1/members/import is
        # also DELETE /groups/{group_id}/members/{member_id}, answered 422 on member_id).
        url = _url(path)
        allowed = {
            method.upper()
            for template, operations in document["paths"].items()
            if re.fullmatch(re.sub(r"\{[a-z_]+\}", "[^/]+", template), url)
            for method in operations
        }
        for method in METHODS:
            if method in allowed:
                continue
            r = await client.request(method, url)
            assert r.status_code == 405, (method, path, r.status_code)
            assert set(r.headers["allow"].split(", ")) == allowed, (method, path)
            assert r.json()["error"] == "method_not_allowed"


async def test_the_docs_page_renders_the_document(client: httpx.AsyncClient) -> None:
    # The README sends readers to /docs.
    r = await client.get("/docs")
    assert r.status_code == 200 and "/openapi.json" in r.text
    r = await client.get("/openapi.json")
    assert r.status_code == 200 and "ErrorOut" in r.json()["components"]["schemas"]
