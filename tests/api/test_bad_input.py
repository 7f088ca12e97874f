"""Odd input found by walking every endpoint: each must be a 4xx, never a 500 (SPEC §3, §6)."""

from __future__ import annotations

import base64

import httpx
import orjson
import pytest

from fixtures.factories import Tenant
from koinonia.branches.service import BRANCHES_CURSOR
from koinonia.conversations.service import CONVERSATIONS_CURSOR
from koinonia.groups.service import GROUPS_CURSOR
from koinonia.kit.errors import ValidationFailed
from koinonia.kit.pagination import CursorSpec
from koinonia.members.service import MEMBERS_CURSOR
from koinonia.messages.service import MESSAGES_CURSOR
from koinonia.templates.service import TEMPLATES_CURSOR


def _cursor(spec: CursorSpec, key: list[object]) -> str:
    """A cursor of `spec`'s list holding `key` as given (the encoder would refuse some)."""
    tag = orjson.loads(base64.urlsafe_b64decode(spec.encode([]) + "=="))[0]
    return base64.urlsafe_b64encode(orjson.dumps([tag, *key])).decode().rstrip("=")


@pytest.mark.parametrize("value", [2**63, 2**64 - 1])
def test_a_cursor_id_outside_bigint_is_malformed(value: int) -> None:
    # orjson reads unsigned 64-bit integers: past 2**63 - 1 PostgreSQL refuses the bind.
    with pytest.raises(ValidationFailed):
        MEMBERS_CURSOR.decode(_cursor(MEMBERS_CURSOR, [value]))
    assert MEMBERS_CURSOR.decode(MEMBERS_CURSOR.encode([2**63 - 1])) == (2**63 - 1,)


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ("/api/v1/branches", BRANCHES_CURSOR),
        ("/api/v1/groups", GROUPS_CURSOR),
        ("/api/v1/members", MEMBERS_CURSOR),
        ("/api/v1/templates", TEMPLATES_CURSOR),
    ],
)
async def test_an_out_of_range_cursor_is_422(
    client: httpx.AsyncClient, tenant: Tenant, path: str, spec: CursorSpec
) -> None:
    cursor = _cursor(spec, [2**64 - 1])
    r = await client.get(path, params={"cursor": cursor}, headers=tenant.headers)
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
    for path, spec in [
        ("/api/v1/messages", MESSAGES_CURSOR),
        ("/api/v1/conversations", CONVERSATIONS_CURSOR),
    ]:
        cursor = _cursor(spec, [at, 1])
        r = await client.get(path, params={"cursor": cursor}, headers=tenant.headers)
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
