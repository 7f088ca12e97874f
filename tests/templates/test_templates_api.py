"""Templates API: CRUD, validation, tenancy, conflicts, pagination and flat statement counts."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.database import StatementLog
from fixtures.factories import Tenant
from koinonia.models import Template
from koinonia.models.template import TEMPLATE_CATEGORIES
from koinonia.templates.schemas import Category

URL = "/api/v1/templates"
Counter = Callable[[], AbstractContextManager[StatementLog]]


async def make_templates(
    session: AsyncSession, church_id: int, count: int, *, category: str = "event"
) -> list[int]:
    rows = [
        {"church_id": church_id, "name": f"T{category}{i}", "content": "Hi", "category": category}
        for i in range(count)
    ]
    ids = list((await session.execute(insert(Template).returning(Template.id), rows)).scalars())
    await session.commit()
    return [int(i) for i in ids]


def test_categories_match_the_model() -> None:
    assert set(get_args(Category)) == set(TEMPLATE_CATEGORIES)


async def test_crud_roundtrip(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"name": "Sunday", "content": "See you at 10, {first_name|friend}!", "category": "event"}
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["usage_count"] == 0 and created["content"] == body["content"]
    tid = created["id"]

    r = await client.patch(f"{URL}/{tid}", json={"category": "prayer"}, headers=tenant.headers)
    assert r.status_code == 200, r.text
    assert (r.json()["category"], r.json()["name"]) == ("prayer", "Sunday")

    r = await client.patch(f"{URL}/{tid}", json={}, headers=tenant.headers)
    assert r.status_code == 200 and r.json() == {**created, "category": "prayer"}

    r = await client.get(f"{URL}/{tid}", headers=tenant.headers)
    assert r.status_code == 200 and r.json()["category"] == "prayer"

    assert (await client.delete(f"{URL}/{tid}", headers=tenant.headers)).status_code == 204
    assert (await client.get(f"{URL}/{tid}", headers=tenant.headers)).status_code == 404
    assert (await client.delete(f"{URL}/{tid}", headers=tenant.headers)).status_code == 404


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"name": "", "content": "x", "category": "event"}, {"name"}),
        ({"name": "A", "content": "x" * 1601, "category": "event"}, {"content"}),
        ({"name": "A", "content": "", "category": "event"}, {"content"}),
        ({"name": "A", "content": "x", "category": "party"}, {"category"}),
        ({"name": "A", "content": "x", "category": "event", "colour": "red"}, {"colour"}),
        ({"content": "x"}, {"name", "category"}),
    ],
)
async def test_create_validation(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], fields: set[str]
) -> None:
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "validation_error"
    assert set(r.json()["fields"]) == fields


async def test_content_of_1600_chars_is_fine(client: httpx.AsyncClient, tenant: Tenant) -> None:
    body = {"name": "Long", "content": "x" * 1600, "category": "offering"}
    assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201


async def test_patch_validation(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    (tid,) = await make_templates(session, tenant.church_id, 1)
    for body, field in [
        ({"name": None}, "name"),
        ({"content": None}, "content"),
        ({"category": "nope"}, "category"),
        ({"content": "x" * 1601}, "content"),
        ({"usage_count": 5}, "usage_count"),
    ]:
        r = await client.patch(f"{URL}/{tid}", json=body, headers=tenant.headers)
        assert r.status_code == 422, (body, r.text)
        assert list(r.json()["fields"]) == [field]


async def test_name_conflicts(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    body = {"name": "Welcome", "content": "Hi", "category": "welcome"}
    assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201
    r = await client.post(URL, json=body, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["fields"] == {"name": "taken"}

    r = await client.post(URL, json={**body, "name": "Other"}, headers=tenant.headers)
    r = await client.patch(
        f"{URL}/{r.json()['id']}", json={"name": "Welcome"}, headers=tenant.headers
    )
    assert r.status_code == 409 and r.json()["error"] == "conflict"


async def test_same_name_in_another_church(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    body = {"name": "Welcome", "content": "Hi", "category": "welcome"}
    assert (await client.post(URL, json=body, headers=tenant.headers)).status_code == 201
    assert (await client.post(URL, json=body, headers=other_tenant.headers)).status_code == 201


async def test_requires_a_valid_token(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    (tid,) = await make_templates(session, tenant.church_id, 1)
    body = {"name": "A", "content": "x", "category": "event"}
    for headers in [{}, {"Authorization": "Bearer not-a-token"}]:
        for method, url, json in [
            ("GET", URL, None),
            ("POST", URL, body),
            ("GET", f"{URL}/{tid}", None),
            ("PATCH", f"{URL}/{tid}", {"name": "B"}),
            ("DELETE", f"{URL}/{tid}", None),
        ]:
            r = await client.request(method, url, json=json, headers=headers)
            assert r.status_code == 401, (method, url, r.text)
    r = await client.get(f"{URL}/{tid}", headers=tenant.headers)
    assert r.json()["name"] == "Tevent0"


async def test_another_churchs_template_is_404(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    (tid,) = await make_templates(session, other_tenant.church_id, 1)
    for method, json in [
        ("GET", None),
        ("PATCH", {"name": "Mine"}),
        ("PATCH", {}),
        ("DELETE", None),
    ]:
        r = await client.request(method, f"{URL}/{tid}", json=json, headers=tenant.headers)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.get(URL, headers=tenant.headers)
    assert r.json() == {"items": [], "next_cursor": None}
    r = await client.get(f"{URL}/{tid}", headers=other_tenant.headers)
    assert r.json()["name"] == "Tevent0"


async def test_filter_by_category(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    events = await make_templates(session, tenant.church_id, 2, category="event")
    await make_templates(session, tenant.church_id, 3, category="prayer")
    r = await client.get(URL, params={"category": "event"}, headers=tenant.headers)
    assert [t["id"] for t in r.json()["items"]] == events
    r = await client.get(URL, params={"category": "bogus"}, headers=tenant.headers)
    assert r.status_code == 422 and "category" in r.json()["fields"]


async def test_pagination_walks_every_page_once(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    ids = await make_templates(session, tenant.church_id, 7)
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        r = await client.get(URL, params=params, headers=tenant.headers)
        assert r.status_code == 200
        seen += [t["id"] for t in r.json()["items"]]
        pages += 1
        cursor = r.json()["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(ids) and pages == 3
    r = await client.get(URL, params={"cursor": "%%%"}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def test_list_statements_flat(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, count_statements: Counter
) -> None:
    await make_templates(session, tenant.church_id, 1)
    with count_statements() as one:
        assert (await client.get(URL, headers=tenant.headers)).status_code == 200
    await make_templates(session, tenant.church_id, 99, category="prayer")
    with count_statements() as hundred:
        r = await client.get(URL, params={"limit": 200}, headers=tenant.headers)
    assert len(r.json()["items"]) == 100
    assert one.count == hundred.count == 2  # auth + the page
