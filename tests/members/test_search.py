from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant
from koinonia.members.service import search_cursor

PEOPLE = [
    ("José", "García", "+13035550101"),
    ("Zoë", "Okafor", "+13035550102"),
    ("Joseph", "Smith", "+13035550103"),
    ("Mary", "Josephine", "+13035550104"),
    ("Anna", "Lee", "+12025559876"),
]


async def _seed(session: AsyncSession, church_id: int) -> None:
    await session.execute(
        text(
            "INSERT INTO members (church_id, first_name, last_name, phone) VALUES (:c, :f, :l, :p)"
        ),
        [{"c": church_id, "f": f, "l": ln, "p": p} for f, ln, p in PEOPLE],
    )
    await session.commit()


async def _search(client: httpx.AsyncClient, t: Tenant, q: str, **params: Any) -> list[str]:
    r = await client.get("/api/v1/members", params={"q": q, **params}, headers=t.headers)
    assert r.status_code == 200, r.text
    return [f"{m['first_name']} {m['last_name']}" for m in r.json()["items"]]


async def test_accent_and_case_insensitive(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await _seed(session, tenant.church_id)
    assert await _search(client, tenant, "jose") == [
        "José García",
        "Joseph Smith",
        "Mary Josephine",
    ]
    assert await _search(client, tenant, "ZOE") == ["Zoë Okafor"]
    assert await _search(client, tenant, "garcía") == ["José García"]
    assert await _search(client, tenant, "rcí") == ["José García"]  # substring inside a name


async def test_ranking_name_prefix_then_last_name_first(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await _seed(session, tenant.church_id)
    names = await _search(client, tenant, "joseph")
    # "Joseph Smith" starts with it; "Mary Josephine" written last name first does. (A middle
    # word starting with q, as "ann" in "Mary Ann Smith", ranks as a substring.)
    assert names == ["Joseph Smith", "Mary Josephine"]


async def test_phone_digits(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await _seed(session, tenant.church_id)
    assert await _search(client, tenant, "9876") == ["Anna Lee"]
    assert await _search(client, tenant, "(202) 555-98") == ["Anna Lee"]
    assert len(await _search(client, tenant, "555-01")) == 4
    assert await _search(client, tenant, "555") == []  # under 4 digits: names only


async def test_other_churches_never_returned(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _seed(session, other_tenant.church_id)
    assert await _search(client, tenant, "jose") == []
    assert await _search(client, tenant, "0101") == []


async def test_ranked_pagination_walks_everything_once(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await session.execute(
        text(
            "INSERT INTO members (church_id, first_name, last_name, phone)"
            " SELECT :c, 'Jo' || repeat('h', i % 4), 'N' || i, '+1303555' || lpad(i::text, 4, '0')"
            " FROM generate_series(1, 23) AS i"
        ),
        {"c": tenant.church_id},
    )
    await session.commit()
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "jo", "limit": 5, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/members", params=params, headers=tenant.headers)).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == len(set(seen)) == 23
    # An id-only cursor, or one naming no search tier, is rejected, not silently misread.
    spec = search_cursor("jo")
    with_tier = [spec.encode([tier, "jo", 1], query="jo") for tier in (0, 99)]
    for bad in ("WzFd", *with_tier):
        r = await client.get(
            "/api/v1/members", params={"q": "jo", "cursor": bad}, headers=tenant.headers
        )
        assert r.status_code == 422, r.text
        assert r.json()["fields"] == {"cursor": "malformed cursor"}


async def test_last_name_first_and_tiers_in_order_across_pages(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    people = [
        ("Ana", "Lima", "+13035550201"),  # "lima ana": last name first
        ("Limón", "Díaz", "+13035550202"),  # full name starts with "lim"
        ("Eli", "Milimo", "+13035550203"),  # "lim" inside
        ("Lima", "Zed", "+13035550204"),  # full name starts with "lim"
        ("Bo", "Lim", "+13035550205"),  # last name first
        ("Carl", "Olim", "+13035550206"),  # inside
    ]
    await session.execute(
        text(
            "INSERT INTO members (church_id, first_name, last_name, phone) VALUES (:c, :f, :l, :p)"
        ),
        [{"c": tenant.church_id, "f": f, "l": ln, "p": p} for f, ln, p in people],
    )
    await session.commit()
    names: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"q": "LIM", "limit": 2, **({"cursor": cursor} if cursor else {})}
        r = await client.get("/api/v1/members", params=params, headers=tenant.headers)
        page = r.json()
        names += [f"{m['first_name']} {m['last_name']}" for m in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    # Tier by tier (name prefix, last-name-first prefix, substring), each by its folded key.
    assert names == [
        "Lima Zed",
        "Limón Díaz",
        "Bo Lim",
        "Ana Lima",
        "Carl Olim",
        "Eli Milimo",
    ]
    assert await _search(client, tenant, "lima an") == ["Ana Lima"]
    assert await _search(client, tenant, "li") == ["Lima Zed", "Limón Díaz", "Bo Lim", "Ana Lima"]
