"""Every route with an id in its path answers 404 for another church's object, for every method.

Routes are discovered from the app, so a new route is covered the day it is added; a new kind of
id needs a factory below (the test says so).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from koinonia.models import Template

Factory = Callable[[AsyncSession, Tenant, dict[str, int]], Awaitable[int]]


async def _branch(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    return await make_branch(s, t.church_id)


async def _group(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    return await make_group(s, t.church_id, await make_branch(s, t.church_id))


async def _member(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    # In the group when the route also names one, so the pair exists in the other church.
    return (await make_members(s, t.church_id, 1, group_id=ids.get("group_id")))[0]


async def _template(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    stmt = (
        insert(Template)
        .values(church_id=t.church_id, name="T", content="Hi", category="event")
        .returning(Template.id)
    )
    tid = (await s.execute(stmt)).scalar_one()
    await s.commit()
    return int(tid)


async def _admin(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    return (await make_tenant(s, church_id=t.church_id, role="CO_ADMIN")).admin_id


async def _message(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    mid = (
        await s.execute(
            text(
                "INSERT INTO messages (church_id, content, kind, target_type, encoding, segments,"
                " status) VALUES (:c, 'hi', 'broadcast', 'all', 'GSM-7', 1, 'queued') RETURNING id"
            ),
            {"c": t.church_id},
        )
    ).scalar_one()
    await s.commit()
    return int(mid)


async def _recurring(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    rid = (
        await s.execute(
            text(
                "INSERT INTO recurring_messages (church_id, name, content, target_type, frequency,"
                " time_of_day, next_send_at) VALUES (:c, 'R', 'hi', 'all', 'daily', '09:00',"
                " now() + interval '1 day') RETURNING id"
            ),
            {"c": t.church_id},
        )
    ).scalar_one()
    await s.commit()
    return int(rid)


async def _conversation(s: AsyncSession, t: Tenant, ids: dict[str, int]) -> int:
    member = (await make_members(s, t.church_id, 1))[0]
    cid = (
        await s.execute(
            text("INSERT INTO conversations (church_id, member_id) VALUES (:c, :m) RETURNING id"),
            {"c": t.church_id, "m": member},
        )
    ).scalar_one()
    await s.commit()
    return int(cid)


FACTORIES: dict[str, Factory] = {
    "branch_id": _branch,
    "group_id": _group,
    "member_id": _member,
    "template_id": _template,
    "admin_id": _admin,
    "message_id": _message,
    "recurring_id": _recurring,
    "conversation_id": _conversation,
}

# Bodies that pass validation, so the request reaches the ownership check.
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/groups/{group_id}/members"): {"member_ids": [1]},
    ("POST", "/api/v1/conversations/{conversation_id}/reply"): {"body": "Amen"},
}


def _id_routes(app: FastAPI) -> list[tuple[str, str, list[str]]]:
    """Every (method, path) with a path parameter, from the OpenAPI document (all routers)."""
    out = []
    for path, operations in app.openapi()["paths"].items():
        if "{" in path:
            params = re.findall(r"{(\w+)}", path)
            for method in sorted(operations):
                out.append((method.upper(), path, params))
    return out


async def test_every_id_route_hides_other_churches(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    routes = _id_routes(app)
    assert len(routes) >= 10
    missing = {p for _, _, params in routes for p in params} - FACTORIES.keys()
    assert not missing, f"add a factory for {missing} to the tenancy sweep"
    failures = []
    for method, path, params in routes:
        other = await make_tenant(session)
        ids: dict[str, int] = {}
        for p in params:
            ids[p] = await FACTORIES[p](session, other, ids)
        url = path.format(**ids)
        if path.endswith("/import"):
            files = {"file": ("m.csv", b"first_name,phone\nA,3035550101\n", "text/csv")}
            r = await client.request(method, url, files=files, headers=tenant.headers)
        else:
            body = BODIES.get((method, path), {} if method in {"POST", "PATCH", "PUT"} else None)
            r = await client.request(method, url, json=body, headers=tenant.headers)
        if r.status_code != 404:
            failures.append(f"{method} {path}: {r.status_code} {r.text[:200]}")
    assert not failures, "\n".join(failures)
