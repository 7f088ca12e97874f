"""Every write of a church's data invalidates its cached documents once it commits (the services
register it: db.effects.church_changed; the HTTP middleware no longer guesses from the method),
for requests and jobs alike; a write that rolls back invalidates nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import church_number, member_phone, text_in
from fixtures.factories import Tenant, make_members, make_tenant
from koinonia.db.database import Database
from koinonia.delivery.scheduler import fire_due_schedules
from koinonia.kit.cache import version_key
from koinonia.kit.store import get_store

API = "/api/v1"
# Writes that are not the church's data: credentials (register makes a church nothing has
# cached yet; login, refresh and logout write sessions, which no cached document reads) and the
# carriers' webhooks (inbound texts are covered below through the same service).
NOT_CHURCH_WRITES = (f"{API}/auth/", f"{API}/webhooks/")
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


async def version(church_id: int) -> bytes | None:
    return await get_store().get(version_key(church_id))


def write_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every write operation the API documents, but NOT_CHURCH_WRITES."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if not path.startswith(NOT_CHURCH_WRITES)
        for method in operations
        if method.upper() in WRITE_METHODS
    }


@dataclass
class Walk:
    client: httpx.AsyncClient
    tenant: Tenant
    covered: set[tuple[str, str]]

    async def write(
        self, method: str, route: str, path: str | None = None, **kwargs: Any
    ) -> httpx.Response:
        """One successful write through `route` (concrete `path`, default the route itself):
        the church's cache version has moved by the time it is answered."""
        before = await version(self.tenant.church_id)
        r = await self.client.request(
            method, API + (path or route), headers=self.tenant.headers, **kwargs
        )
        assert r.is_success, (method, route, r.status_code, r.text)
        assert await version(self.tenant.church_id) != before, (method, route)
        self.covered.add((method, API + route))
        return r


async def test_every_write_route_invalidates(
    app: FastAPI, client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    walk = Walk(client, tenant, set())
    (member,) = await make_members(session, tenant.church_id, 1)
    await text_in(
        session,
        to=await church_number(session, tenant.church_id),
        sender=await member_phone(session, member),
        body="Hello",
    )
    conversation = (await client.get(f"{API}/conversations", headers=tenant.headers)).json()
    conversation_id = conversation["items"][0]["id"]

    await walk.write("PATCH", "/church", json={"name": "Renamed"})
    admin = (
        await walk.write("POST", "/admins", json={"email": "co@example.org", "first_name": "Co"})
    ).json()["id"]
    await walk.write("DELETE", "/admins/{admin_id}", f"/admins/{admin}")

    created = (
        await walk.write(
            "POST", "/members", json={"first_name": "A", "last_name": "B", "phone": "+12025550142"}
        )
    ).json()["id"]
    await walk.write(
        "PATCH", "/members/{member_id}", f"/members/{created}", json={"first_name": "C"}
    )

    branch = (await walk.write("POST", "/branches", json={"name": "North"})).json()["id"]
    await walk.write("PATCH", "/branches/{branch_id}", f"/branches/{branch}", json={"name": "N"})
    group = (
        await walk.write("POST", "/groups", json={"branch_id": branch, "name": "Youth"})
    ).json()["id"]
    await walk.write("PATCH", "/groups/{group_id}", f"/groups/{group}", json={"name": "Y"})
    await walk.write(
        "POST",
        "/groups/{group_id}/members",
        f"/groups/{group}/members",
        json={"member_ids": [created]},
    )
    await walk.write(
        "DELETE", "/groups/{group_id}/members/{member_id}", f"/groups/{group}/members/{created}"
    )
    await walk.write(
        "POST",
        "/groups/{group_id}/members/import",
        f"/groups/{group}/members/import",
        files={"file": ("m.csv", b"first_name,last_name,phone\nD,E,+12025550143\n", "text/csv")},
    )

    template = (
        await walk.write(
            "POST", "/templates", json={"name": "T", "content": "Hi", "category": "event"}
        )
    ).json()["id"]
    await walk.write(
        "PATCH", "/templates/{template_id}", f"/templates/{template}", json={"name": "U"}
    )
    await walk.write("DELETE", "/templates/{template_id}", f"/templates/{template}")

    schedule = {
        "name": "Daily",
        "content": "Hi",
        "target": {"type": "all"},
        "frequency": "daily",
        "time_of_day": "09:00",
    }
    recurring = (await walk.write("POST", "/recurring", json=schedule)).json()["id"]
    await walk.write(
        "PATCH", "/recurring/{recurring_id}", f"/recurring/{recurring}", json={"name": "D"}
    )
    await walk.write("DELETE", "/recurring/{recurring_id}", f"/recurring/{recurring}")

    later = {"content": "Hi", "target": {"type": "all"}, "scheduled_at": "2099-01-01T10:00:00Z"}
    message = (await walk.write("POST", "/messages", json=later)).json()["id"]
    await walk.write("POST", "/messages/{message_id}/cancel", f"/messages/{message}/cancel")

    await walk.write(
        "PATCH",
        "/conversations/{conversation_id}",
        f"/conversations/{conversation_id}",
        json={"read": True},
    )
    await walk.write(
        "POST",
        "/conversations/{conversation_id}/reply",
        f"/conversations/{conversation_id}/reply",
        json={"body": "Welcome"},
    )

    await walk.write("DELETE", "/members/{member_id}", f"/members/{created}")
    await walk.write("DELETE", "/groups/{group_id}", f"/groups/{group}")
    await walk.write("DELETE", "/branches/{branch_id}", f"/branches/{branch}")

    # A write route added later fails here until it says what its writes invalidate.
    assert walk.covered == write_routes(app)


# --- a cached read reflects each kind of write ---------------------------------------------


async def summary(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    r = await client.get(f"{API}/stats/summary", headers=tenant.headers)
    assert r.status_code == 200
    data: dict[str, Any] = r.json()
    return data


async def test_the_cached_summary_reflects_each_kind_of_write(
    client: httpx.AsyncClient, session: AsyncSession, database: Database, tenant: Tenant
) -> None:
    headers = tenant.headers
    seen = await summary(client, tenant)

    async def after(write: Callable[[], Awaitable[Any]], **changes: Any) -> None:
        """`write`, then the summary (cached before it) shows exactly these changes."""
        nonlocal seen
        assert await summary(client, tenant) == seen  # served from the cache
        await write()
        now = await summary(client, tenant)
        expected = {**seen, **{k: v(seen) for k, v in changes.items()}}
        assert now == expected
        seen = now

    def members(total: int = 0, opted_out: int = 0) -> Callable[[dict[str, Any]], Any]:
        def change(s: dict[str, Any]) -> dict[str, int]:
            m = s["members"]
            out = m["opted_out"] + opted_out
            return {
                "total": m["total"] + total,
                "opted_in": m["total"] + total - out,
                "opted_out": out,
            }

        return change

    async def post(path: str, **kwargs: Any) -> Any:
        r = await client.post(API + path, headers=headers, **kwargs)
        assert r.is_success, r.text
        return r.json()

    async def delete(path: str) -> None:
        assert (await client.delete(API + path, headers=headers)).status_code == 204

    new = {"first_name": "A", "last_name": "B", "phone": "+12025550150"}
    member: dict[str, Any] = {}

    async def create_member() -> None:
        member.update(await post("/members", json=new))

    await after(create_member, members=members(total=1))
    branch: dict[str, Any] = {}

    async def create_branch() -> None:
        branch.update(await post("/branches", json={"name": "North"}))

    await after(create_branch, branches=lambda s: s["branches"] + 1)
    group: dict[str, Any] = {}

    async def create_group() -> None:
        group.update(await post("/groups", json={"branch_id": branch["id"], "name": "Youth"}))

    await after(create_group, groups=lambda s: s["groups"] + 1)

    async def import_one() -> None:
        data = b"first_name,last_name,phone\nD,E,+12025550151\n"
        await post(f"/groups/{group['id']}/members/import", files={"file": ("m.csv", data)})

    await after(import_one, members=members(total=1))
    sent: dict[str, Any] = {}

    async def send() -> None:
        later = "2099-01-01T10:00:00Z"
        sent.update(
            await post(
                "/messages",
                json={"content": "Hi", "target": {"type": "all"}, "scheduled_at": later},
            )
        )

    await after(
        send, messages=lambda s: s["messages"] + 1, texts=lambda s: s["texts"] + 2
    )  # two opted-in members

    async def cancel() -> None:
        await post(f"/messages/{sent['id']}/cancel")

    await after(cancel, texts=lambda s: s["texts"] - 2)  # given back to the month's quota

    async def stop() -> None:  # an inbound text, not a request of the church's admins
        await text_in(
            session,
            to=await church_number(session, tenant.church_id),
            sender=member["phone"],
            body="STOP",
        )

    # The STOP confirmation is a message too (one text, to the member who opted out).
    await after(
        stop,
        members=members(opted_out=1),
        messages=lambda s: s["messages"] + 1,
        texts=lambda s: s["texts"] + 1,
    )

    async def schedule_fires() -> None:  # a job: the scheduler's unit of work
        rid = (
            await post(
                "/recurring",
                json={
                    "name": "Daily",
                    "content": "Hi",
                    "target": {"type": "all"},
                    "frequency": "daily",
                    "time_of_day": "09:00",
                },
            )
        )["id"]
        await session.execute(
            text(
                "UPDATE recurring_messages SET next_send_at = now() - interval '1 minute'"
                " WHERE id = :r"
            ),
            {"r": rid},
        )
        await session.commit()
        assert await fire_due_schedules(database, church_id=tenant.church_id) == 1

    await after(
        schedule_fires, messages=lambda s: s["messages"] + 1, texts=lambda s: s["texts"] + 1
    )

    async def delete_group() -> None:
        await delete(f"/groups/{group['id']}")

    await after(delete_group, groups=lambda s: s["groups"] - 1)

    async def delete_member() -> None:
        await delete(f"/members/{member['id']}")

    await after(delete_member, members=members(total=-1, opted_out=-1))


# --- rolled back: nothing invalidated ------------------------------------------------------


async def test_a_write_refused_after_writing_invalidates_nothing(
    client: httpx.AsyncClient, session: AsyncSession
) -> None:
    """The message and its recipients are written, then the quota refuses them (402): the
    transaction rolls back, and the cached summary stays what it was, still current."""
    starter = await make_tenant(session, plan="starter")
    await make_members(session, starter.church_id, 1001)  # one over the month's 1,000 texts
    before = await summary(client, starter)
    version_before = await version(starter.church_id)
    r = await client.post(
        f"{API}/messages",
        json={"content": "Hi", "target": {"type": "all"}},
        headers=starter.headers,
    )
    assert r.status_code == 402
    assert await version(starter.church_id) == version_before
    assert await summary(client, starter) == before


async def test_a_write_failing_later_invalidates_nothing(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The church is updated (and the invalidation registered), then the request fails: the
    update rolls back and the invalidation with it."""

    async def broken(*args: Any) -> int:
        raise RuntimeError("after the write")

    monkeypatch.setattr("koinonia.churches.service.reschedule_church", broken)
    version_before = await version(tenant.church_id)
    r = await client.patch(f"{API}/church", json={"timezone": "Asia/Tokyo"}, headers=tenant.headers)
    assert r.status_code == 500
    assert await version(tenant.church_id) == version_before
    church = (await client.get(f"{API}/church", headers=tenant.headers)).json()
    assert church["timezone"] != "Asia/Tokyo"
