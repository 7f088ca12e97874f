"""Odd input found by walking every endpoint: each must be a 4xx, never a 500 (SPEC §3, §6)."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from fixtures.factories import Tenant
from koinonia.kit.errors import ValidationFailed
from koinonia.kit.pagination import decode_cursor, encode_cursor


def _cursor(key: list[object]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_cursor_id_outside_bigint_is_malformed(value: int) -> None:
    # orjson reads unsigned 64-bit integers: past 2**63 - 1 PostgreSQL refuses the bind.
    with pytest.raises(ValidationFailed):
        decode_cursor(_cursor([value]), int)
    assert decode_cursor(encode_cursor([2**63 - 1]), int) == (2**63 - 1,)


@pytest.mark.parametrize(
    "path", ["/api/v1/branches", "/api/v1/groups", "/api/v1/members", "/api/v1/templates"]
)
async def test_an_out_of_range_cursor_is_422(
    client: httpx.AsyncClient, tenant: Tenant, path: str
) -> None:
    r = await client.get(path, params={"cursor": _cursor([2**64 - 1])}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/v1/branches", {"name": "Down\x00town"}, "name"),
        ("PATCH", "/api/v1/church", {"name": "\x00"}, "name"),
        ("POST", "/api/v1/templates", {"name": "t", "content": "hi\x00"}, "content"),
        ("POST", "/api/v1/messages", {"content": "\x00hi", "target": {"type": "all"}}, "content"),
    ],
)
async def test_a_nul_character_in_a_body_is_422_on_the_field(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, body: dict, field: str
) -> None:
    r = await client.request(method, path, json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert field in r.json()["fields"]


async def test_a_nul_character_in_a_search_is_422(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    r = await client.get("/api/v1/members", params={"q": "Ann\x00"}, headers=tenant.headers)
    assert r.status_code == 422 and "q" in r.json()["fields"]


@pytest.mark.parametrize("at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"])
async def test_a_cursor_time_outside_utc_range_is_422(
    client: httpx.AsyncClient, tenant: Tenant, at: str
) -> None:
    # Valid ISO 8601, but the instant has no UTC representation: asyncpg overflowed (500).
    for path in ["/api/v1/messages", "/api/v1/conversations"]:
        r = await client.get(path, params={"cursor": _cursor([at, 1])}, headers=tenant.headers)
        assert r.status_code == 422 and "cursor" in r.json()["fields"]


@pytest.mark.parametrize(
    "at", ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "9999-12-31T23:00:00+00:00"]
)
async def test_a_scheduled_time_at_the_edge_of_the_calendar_is_422(
    client: httpx.AsyncClient, tenant: Tenant, at: str
) -> None:
    body = {"content": "x", "target": {"type": "all"}, "scheduled_at": at}
    r = await client.post("/api/v1/messages", json=body, headers=tenant.headers)
    assert r.status_code == 422 and "scheduled_at" in r.json()["fields"]
