"""The conversations API: list (order, filters, cursor, constant statements), one
conversation, its thread, replies in both modes, status and read state, auth and tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import church_number, member_phone, messages, text_in
from fixtures.factories import Seeder, Tenant, make_members

API = "/api/v1/conversations"


async def _texting_members(
    session: AsyncSession, tenant: Tenant, n: int, *, texts: int = 1
) -> tuple[list[int], list[int]]:
    """n members who each sent `texts` texts, in member order: (member ids, conversation ids)."""
    number = await church_number(session, tenant.church_id)
    ids = await make_members(session, tenant.church_id, n)
    phones = [await member_phone(session, m) for m in ids]
    conversations = []
    for phone in phones:
        for i in range(texts):
            out = await text_in(session, to=number, sender=phone, body=f"text {i} from {phone}")
        assert out.conversation_id is not None
        conversations.append(out.conversation_id)
    return ids, conversations


async def _get(client: httpx.AsyncClient, t: Tenant, url: str, **params: Any) -> Any:
    r = await client.get(url, params=params, headers=t.headers)
    assert r.status_code == 200, r.text
    return r.json()


async def test_list_is_newest_activity_first_with_member_and_preview(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    members, convs = await _texting_members(session, tenant, 3)
    number = await church_number(session, tenant.church_id)
    # The first member texts again: their conversation moves to the top with 2 unread.
    await text_in(session, to=number, sender=await member_phone(session, members[0]), body="again")
    body = await _get(client, tenant, API)
    assert [c["id"] for c in body["items"]] == [convs[0], convs[2], convs[1]]
    assert body["next_cursor"] is None
    top = body["items"][0]
    assert top["unread_count"] == 2 and top["status"] == "open"
    assert top["member"]["id"] == members[0] and top["member"]["first_name"] == "Member0"
    assert top["member"]["phone"] == await member_phone(session, members[0])
    assert top["last_message"]["direction"] == "inbound" and top["last_message"]["body"] == "again"
    one = await _get(client, tenant, f"{API}/{convs[0]}")
    assert one == top


async def test_cursor_pages_through_ties_without_gaps(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    _, convs = await _texting_members(session, tenant, 7)
    # Ties on the time: the id breaks them, so no conversation is skipped or repeated.
    await session.execute(
        text("UPDATE conversations SET last_message_at = :t WHERE id = ANY(:ids)"),
        {"t": datetime(2026, 1, 1, tzinfo=UTC), "ids": convs[2:5]},
    )
    await session.commit()
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await _get(client, tenant, API, **params)
        seen += [c["id"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [convs[6], convs[5], convs[1], convs[0], convs[2], convs[3], convs[4]]
    r = await client.get(API, params={"cursor": "garbage"}, headers=tenant.headers)
    assert r.status_code == 422 and "cursor" in r.json()["fields"]


async def test_filters_mark_read_and_status(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    _, convs = await _texting_members(session, tenant, 3, texts=2)
    r = await client.patch(f"{API}/{convs[0]}", json={"read": True}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 0
    r = await client.patch(f"{API}/{convs[1]}", json={"status": "closed"}, headers=tenant.headers)
    assert r.json()["status"] == "closed" and r.json()["unread_count"] == 2
    r = await client.patch(
        f"{API}/{convs[2]}", json={"status": "archived", "read": True}, headers=tenant.headers
    )
    assert (r.json()["status"], r.json()["unread_count"]) == ("archived", 0)
    unread = await _get(client, tenant, API, unread_only="true")
    assert [c["id"] for c in unread["items"]] == [convs[1]]
    closed = await _get(client, tenant, API, status="closed")
    assert [c["id"] for c in closed["items"]] == [convs[1]]
    r = await client.patch(f"{API}/{convs[0]}", json={"read": False}, headers=tenant.headers)
    assert r.json()["unread_count"] == 1
    r = await client.patch(f"{API}/{convs[0]}", json={}, headers=tenant.headers)
    assert r.status_code == 200 and r.json()["unread_count"] == 1
    for bad in ({"status": "deleted"}, {"status": None}, {"read": None}, {"unread_count": 0}):
        r = await client.patch(f"{API}/{convs[0]}", json=bad, headers=tenant.headers)
        assert r.status_code == 422, bad
    r = await client.get(API, params={"status": "nope"}, headers=tenant.headers)
    assert r.status_code == 422


async def test_list_statements_do_not_grow_with_conversations(
    client: httpx.AsyncClient,
    session: AsyncSession,
    tenant: Tenant,
    other_tenant: Tenant,
    count_statements: Any,
) -> None:
    counts = []
    for t, n in ((tenant, 1), (other_tenant, 100)):
        await _texting_members(session, t, n)
        with count_statements() as log:
            page = await _get(client, t, API, limit=200)
        assert len(page["items"]) == n
        counts.append(log.count)
    assert counts[0] == counts[1], counts


async def test_thread_newest_first_with_replies(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await Seeder(session, tenant.church_id).update_church(conversation_mode="inbox")
    (member,), (conv,) = await _texting_members(session, tenant, 1, texts=3)
    r = await client.post(
        f"{API}/{conv}/reply", json={"body": "See you Sunday"}, headers=tenant.headers
    )
    assert r.status_code == 202, r.text
    page = await _get(client, tenant, f"{API}/{conv}/messages", limit=2)
    assert [(m["direction"], m["body"]) for m in page["items"]] == [
        ("outbound", "See you Sunday"),
        ("inbound", f"text 2 from {await member_phone(session, member)}"),
    ]
    assert page["items"][0]["status"] == "queued" and page["items"][1]["status"] == "received"
    assert page["items"][0]["message_id"] == r.json()["message_id"]
    rest = await _get(client, tenant, f"{API}/{conv}/messages", limit=2, cursor=page["next_cursor"])
    assert [m["body"][:6] for m in rest["items"]] == ["text 1", "text 0"]
    assert rest["next_cursor"] is None
    # Replying read the conversation and made it the latest activity.
    detail = await _get(client, tenant, f"{API}/{conv}")
    assert detail["unread_count"] == 0 and detail["last_message"]["direction"] == "outbound"


async def test_inbox_reply_reaches_only_that_member_even_in_quiet_hours(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    # Quiet all day long: a broadcast would wait, a reply to the member's own text does not.
    await Seeder(session, tenant.church_id).update_church(
        conversation_mode="inbox",
        quiet_hours_start=time(0, 0),
        quiet_hours_end=time(23, 59, 59),
    )
    (member, *_others), convs = await _texting_members(session, tenant, 3)
    r = await client.post(
        f"{API}/{convs[0]}/reply",
        json={"body": "Praying for you, {first_name}"},
        headers=tenant.headers,
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert (body["mode"], body["recipient_count"], body["status"]) == ("inbox", 1, "queued")
    (reply,) = await messages(session, tenant.church_id)
    assert (reply.kind, reply.member_ids, reply.conversation_id) == ("reply", [member], convs[0])
    assert reply.content == "Praying for you, {first_name}" and reply.scheduled_at is None


async def test_group_chat_reply_goes_to_all_opted_in_with_church_name(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    members, convs = await _texting_members(session, tenant, 2)  # each text relayed to the other
    (opted_out,) = await make_members(session, tenant.church_id, 1, consent="opted_out")
    r = await client.post(f"{API}/{convs[0]}/reply", json={"body": "Amen!"}, headers=tenant.headers)
    assert r.status_code == 202, r.text
    assert (r.json()["mode"], r.json()["recipient_count"]) == ("group_chat", 2)
    *_relays, reply = await messages(session, tenant.church_id)
    name = await session.scalar(
        text("SELECT name FROM churches WHERE id = :c"), {"c": tenant.church_id}
    )
    assert (reply.kind, reply.content) == ("reply", f"{name}: Amen!")
    assert reply.member_ids == sorted(members) and opted_out not in reply.member_ids
    r = await client.post(
        f"{API}/{convs[0]}/reply", json={"body": "x" * 1600}, headers=tenant.headers
    )
    assert r.status_code == 422 and "body" in r.json()["fields"]


async def test_reply_refusals(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    await Seeder(session, tenant.church_id).update_church(conversation_mode="inbox")
    (member, _bob), convs = await _texting_members(session, tenant, 2)
    # 409: the member opted out (inbox mode).
    await text_in(
        session,
        to=await church_number(session, tenant.church_id),
        sender=await member_phone(session, member),
        body="STOP",
    )
    r = await client.post(f"{API}/{convs[0]}/reply", json={"body": "hi"}, headers=tenant.headers)
    assert r.status_code == 409 and r.json()["error"] == "member_opted_out"
    # 402: the month's texts are used up; nothing is written.
    await Seeder(session, tenant.church_id).update_church(plan="starter")
    await session.execute(
        text(
            "INSERT INTO usage (church_id, month, texts) VALUES (:c, :m, 1000)"
            " ON CONFLICT (church_id, month) DO UPDATE SET texts = 1000"
        ),
        {"c": tenant.church_id, "m": datetime.now(UTC).date().replace(day=1)},
    )
    await session.commit()
    r = await client.post(f"{API}/{convs[1]}/reply", json={"body": "hi"}, headers=tenant.headers)
    assert r.status_code == 402 and r.json()["limit"] == 1000
    thread = await _get(client, tenant, f"{API}/{convs[1]}/messages")
    assert [m["direction"] for m in thread["items"]] == ["inbound"]
    # 422: empty or too long.
    for bad in ({}, {"body": ""}, {"body": "x" * 1601}):
        r = await client.post(f"{API}/{convs[1]}/reply", json=bad, headers=tenant.headers)
        assert r.status_code == 422, bad


async def test_auth_and_other_churches(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant, other_tenant: Tenant
) -> None:
    _, (conv,) = await _texting_members(session, other_tenant, 1)
    assert (await client.get(API)).status_code == 401
    assert (await client.get(f"{API}/{conv}")).status_code == 401
    mine = await _get(client, tenant, API)
    assert mine["items"] == []
    for method, url, body in (
        ("GET", f"{API}/{conv}", None),
        ("GET", f"{API}/{conv}/messages", None),
        ("PATCH", f"{API}/{conv}", {"read": True}),
        ("POST", f"{API}/{conv}/reply", {"body": "hi"}),
        ("GET", f"{API}/999999999", None),
    ):
        r = await client.request(method, url, json=body, headers=tenant.headers)
        assert r.status_code == 404, (method, url, r.text)
    detail = await _get(client, other_tenant, f"{API}/{conv}")
    assert detail["unread_count"] == 1  # untouched by the other church's PATCH
    assert await messages(session, tenant.church_id) == []
