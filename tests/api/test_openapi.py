"""The OpenAPI document says what the API answers, and the API takes what the document says.

The conformance fuzzing of every operation is in test_openapi_fuzz.py; these are the targeted
checks: the error shape and statuses every operation declares, `Allow` on 405, JSON types in
request bodies taken as the document types them (no lax coercion), quiet hours and billing
months in the formats the document gives.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import httpx
import pytest

from fixtures.factories import Tenant
from koinonia.app import create_app
from koinonia.billing.service import month_text
from koinonia.config import get_settings

METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
ERROR_REF = "#/components/schemas/ErrorOut"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return create_app(get_settings()).openapi()


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


# --- Request bodies take exactly the JSON types the document gives --------------------------

# One value of each JSON type (True is the boolean, 1.5 the only non-integer number).
PROBES: list[tuple[str, object]] = [
    ("boolean", True),
    ("integer", 0),
    ("integer", 1700000000),
    ("number", 1.5),
    ("string", "1"),
    ("string", "true"),
    ("array", []),
    ("object", {}),
]


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _types(document: dict[str, Any], schema: dict[str, Any]) -> set[str]:
    """The JSON types a schema admits (integer admitted wherever number is)."""
    schema = _resolve(document, schema)
    if "anyOf" in schema:
        return set().union(*(_types(document, s) for s in schema["anyOf"]))
    if "enum" in schema or "const" in schema:
        values = schema.get("enum", [schema.get("const")])
        return {"string" if isinstance(v, str) else "other" for v in values}
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind} if kind else {"any"}
    return kinds | ({"integer"} if "number" in kinds else set())


def _fields(document: dict[str, Any], schema: dict[str, Any], prefix: str) -> list[tuple]:
    """(dotted name, schema) of every property, nested objects and array items included."""
    out: list[tuple[str, dict[str, Any]]] = []
    schema = _resolve(document, schema)
    for name, prop in schema.get("properties", {}).items():
        dotted = f"{prefix}{name}"
        out.append((dotted, prop))
        for option in [prop, *prop.get("anyOf", [])]:
            option = _resolve(document, option)
            if option.get("type") == "object" and "properties" in option:
                out.extend(_fields(document, option, f"{dotted}."))
            if option.get("type") == "array" and "items" in option:
                out.append((f"{dotted}.0", option["items"]))
    return out


def _body_at(dotted: str, value: object) -> object:
    """{"target": {"ids": [value]}} for "target.ids.0"."""
    for part in reversed(dotted.split(".")):
        value = [value] if part == "0" else {part: value}
    return value


def _json_operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    out = []
    for method, path, operation in _operations(document):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" in content and not path.startswith("/api/v1/webhooks/"):
            out.append((method, path, content["application/json"]["schema"]))
    return out


async def test_a_body_value_of_another_json_type_is_422_on_its_field(
    client: httpx.AsyncClient, tenant: Tenant, document: dict[str, Any]
) -> None:
    # Lax pydantic took `"dry_run": 0` as false, `"1"` or `true` as an integer, a number of
    # seconds as `scheduled_at`: none of them what the document allows.
    operations = _json_operations(document)
    assert len(operations) > 15
    accepted = []
    for method, path, schema in operations:
        url = _url(path)
        for dotted, prop in _fields(document, schema, ""):
            allowed = _types(document, prop)
            if "any" in allowed:
                continue
            for kind, value in PROBES:
                if kind in allowed or (kind == "integer" and "number" in allowed):
                    continue
                r = await client.request(
                    method, url, json=_body_at(dotted, value), headers=tenant.headers
                )
                fields = r.json().get("fields", {}) if r.status_code == 422 else {}
                if dotted not in fields:
                    accepted.append((method, path, dotted, value, r.status_code))
    assert accepted == []


# --- Formats ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "shown"),
    [
        ("21:00", "08:00", ("21:00", "08:00")),
        ("21:30:00", "7:05", ("21:30", "07:05")),
    ],
)
async def test_quiet_hours_are_taken_and_shown_as_hh_mm(
    client: httpx.AsyncClient, tenant: Tenant, start: str, end: str, shown: tuple[str, str]
) -> None:
    body = {"quiet_hours_start": start, "quiet_hours_end": end}
    r = await client.patch("/api/v1/church", json=body, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["quiet_hours_start"], r.json()["quiet_hours_end"]) == shown
    r = await client.get("/api/v1/church", headers=tenant.headers)
    assert (r.json()["quiet_hours_start"], r.json()["quiet_hours_end"]) == shown


@pytest.mark.parametrize(
    "start",
    ["21:00+05:00", "21:00Z", "21:00:00.123456", "21:00:30", "24:00", "9", "", 2100],
)
async def test_quiet_hours_with_an_offset_or_below_the_minute_are_422(
    client: httpx.AsyncClient, tenant: Tenant, start: object
) -> None:
    # An offset was dropped silently and microseconds came back in the answer.
    body = {"quiet_hours_start": start, "quiet_hours_end": "08:00"}
    r = await client.patch("/api/v1/church", json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert "quiet_hours_start" in r.json()["fields"]


@pytest.mark.parametrize(
    "month", ["0001-01", "1969-12", "2026-13", "2026-00", "2026-1", "10000-01"]
)
async def test_a_billing_month_outside_1970_01_to_9999_12_is_422(
    client: httpx.AsyncClient, tenant: Tenant, month: str
) -> None:
    # 0001-01 used to answer 200 with month "1-01".
    r = await client.get("/api/v1/billing/usage", params={"month": month}, headers=tenant.headers)
    assert r.status_code == 422 and "month" in r.json()["fields"]


@pytest.mark.parametrize("month", ["1970-01", "2026-11", "9999-12"])
async def test_a_billing_month_is_answered_as_yyyy_mm(
    client: httpx.AsyncClient, tenant: Tenant, month: str
) -> None:
    r = await client.get("/api/v1/billing/usage", params={"month": month}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["month"] == month


def test_a_month_is_written_with_four_year_digits() -> None:
    assert month_text(date(1, 1, 1)) == "0001-01"
    assert month_text(date(2026, 12, 1)) == "2026-12"
