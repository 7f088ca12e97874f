"""Inbound texts (SPEC §4.3-4.4) through the webhooks' entry point, inside a rolled-back test
transaction: keywords, unknown senders, storing once, relays."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import (
    church_number,
    member_consent,
    member_phone,
    messages,
    provider_id,
    stored_texts,
    text_in,
)
from fixtures.factories import Seeder, Tenant, make_members
from koinonia.conversations.inbound import DEFAULT_UNKNOWN_SENDER_REPLY, InboundResult
from koinonia.conversations.keywords import Keyword

UNKNOWN = "+12025550143"


async def _church_name(session: AsyncSession, church_id: int) -> str:
    return str(
        await session.scalar(text("SELECT name FROM churches WHERE id = :c"), {"c": church_id})
    )


async def _shift_auto_replies_to_yesterday(session: AsyncSession, church_id: int) -> None:
    await session.execute(
        text("UPDATE inbound_auto_replies SET day = day - 1 WHERE church_id = :c"),
        {"c": church_id},
    )
    await session.commit()


# --- keywords ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", ["STOP", "stop.", " Stop ", "STOPALL", "Unsubscribe!", "quit"])
async def test_stop_opts_out_with_one_system_confirmation(
    session: AsyncSession, tenant: Tenant, body: str
) -> None:
    number = await church_number(session, tenant.church_id)
    alice, _bob = await make_members(session, tenant.church_id, 2)
    phone = await member_phone(session, alice)

    out = await text_in(session, to=number, sender=phone, body=body)

    assert out.outcome is InboundResult.KEYWORD and out.keyword is Keyword.STOP
    assert out.consent_changed and out.member_id == alice
    consent = await member_consent(session, alice)
    assert (consent.consent, consent.consent_source) == ("opted_out", "keyword")
    assert consent.consent_changed_at is not None
    sent = await messages(session, tenant.church_id)
    assert [(m.kind, m.member_ids, m.phones, m.status) for m in sent] == [
        ("system", [alice], [phone], "queued")
    ]
    name = await _church_name(session, tenant.church_id)
    assert sent[0].content == f"You're unsubscribed from {name} texts. Reply START to resubscribe."
    assert sent[0].id == out.reply_message_id
    assert await stored_texts(session, tenant.church_id) == []  # a keyword is not chat


async def test_stop_is_confirmed_once_however_often_it_arrives(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1)
    phone = await member_phone(session, alice)
    pid = provider_id()
    first = await text_in(session, to=number, sender=phone, body="STOP", pid=pid)
    retried = await text_in(session, to=number, sender=phone, body="STOP", pid=pid)  # redelivery
    again = await text_in(session, to=number, sender=phone, body="stop!")  # member repeats
    assert first.consent_changed and first.reply_message_id is not None
    assert not retried.consent_changed and retried.reply_message_id is None
    assert not again.consent_changed and again.reply_message_id is None
    assert len(await messages(session, tenant.church_id, "system")) == 1
    # A day later a repeated STOP is answered again (once), and consent stays opted out.
    await _shift_auto_replies_to_yesterday(session, tenant.church_id)
    later = await text_in(session, to=number, sender=phone, body="Stop")
    assert later.reply_message_id is not None and not later.consent_changed
    assert len(await messages(session, tenant.church_id, "system")) == 2
    assert (await member_consent(session, alice)).consent == "opted_out"


async def test_start_opts_back_in_and_stop_start_stop_confirms_each(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1, consent="opted_out")
    phone = await member_phone(session, alice)
    out = await text_in(session, to=number, sender=phone, body="start")
    assert out.keyword is Keyword.START and out.consent_changed
    consent = await member_consent(session, alice)
    assert (consent.consent, consent.consent_source) == ("opted_in", "keyword")
    await text_in(session, to=number, sender=phone, body="STOP")
    await text_in(session, to=number, sender=phone, body="unstop")
    sent = await messages(session, tenant.church_id)
    assert [m.kind for m in sent] == ["system"] * 3  # every change of mind is confirmed
    assert [m.content.split(" ")[1] for m in sent] == ["subscribed", "unsubscribed", "subscribed"]
    assert (await member_consent(session, alice)).consent == "opted_in"


async def test_help_names_the_church_and_how_to_stop(session: AsyncSession, tenant: Tenant) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1)
    phone = await member_phone(session, alice)
    out = await text_in(session, to=number, sender=phone, body="HELP")
    assert out.keyword is Keyword.HELP and not out.consent_changed
    await text_in(session, to=number, sender=phone, body="info")  # same day: not again
    sent = await messages(session, tenant.church_id)
    assert [(m.kind, m.member_ids) for m in sent] == [("system", [alice])]
    name = await _church_name(session, tenant.church_id)
    assert name in sent[0].content and sent[0].content.endswith("Reply STOP to unsubscribe.")
    consent = await member_consent(session, alice)
    assert (consent.consent, consent.consent_source) == ("opted_in", None)


async def test_a_sentence_with_stop_in_it_is_chat(session: AsyncSession, tenant: Tenant) -> None:
    number = await church_number(session, tenant.church_id)
    alice, bob = await make_members(session, tenant.church_id, 2)
    out = await text_in(
        session, to=number, sender=await member_phone(session, alice), body="stop texting me"
    )
    assert out.outcome is InboundResult.STORED and out.keyword is None
    assert (await member_consent(session, alice)).consent == "opted_in"
    sent = await messages(session, tenant.church_id)
    assert [(m.kind, m.member_ids) for m in sent] == [("relay", [bob])]


async def test_opted_out_member_is_left_out_of_later_relays_and_broadcasts(
    client: httpx.AsyncClient, session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    alice, bob, carol = await make_members(session, tenant.church_id, 3)
    await text_in(session, to=number, sender=await member_phone(session, bob), body="STOP")
    await text_in(session, to=number, sender=await member_phone(session, alice), body="Hi all")
    relays = await messages(session, tenant.church_id, "relay")
    assert [r.member_ids for r in relays] == [[carol]]  # not the sender, not bob
    r = await client.post(
        "/api/v1/messages",
        json={"content": "Service at 10", "target": {"type": "all"}},
        headers=tenant.headers,
    )
    assert (r.json()["recipient_count"], r.json()["skipped_opted_out"]) == (2, 1)


# --- chat, relays -----------------------------------------------------------------------------


async def test_group_chat_relays_to_other_opted_in_members_literally(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1, first_name="Alice")
    others = await make_members(session, tenant.church_id, 3)
    await make_members(session, tenant.church_id, 2, consent="opted_out")
    body = "Who brings {first_name|snacks}? {church_name} {last_name} {"
    out = await text_in(session, to=number, sender=await member_phone(session, alice), body=body)
    assert out.outcome is InboundResult.STORED and out.relay_message_id is not None
    (relay,) = await messages(session, tenant.church_id)
    assert relay.id == out.relay_message_id and relay.kind == "relay"
    assert relay.content == f"Alice0: {body}"  # braces are the member's words, not merge fields
    assert relay.member_ids == sorted(others)
    assert relay.conversation_id == out.conversation_id
    assert relay.status == "queued"
    (stored,) = await stored_texts(session, tenant.church_id)
    assert (stored.direction, stored.body, stored.conversation_id) == (
        "inbound",
        body,
        out.conversation_id,
    )


async def test_the_same_text_twice_is_stored_and_relayed_once(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    alice, _bob = await make_members(session, tenant.church_id, 2)
    phone = await member_phone(session, alice)
    pid = provider_id()
    first = await text_in(session, to=number, sender=phone, body="Praise!", pid=pid)
    second = await text_in(session, to=number, sender=phone, body="Praise!", pid=pid)
    assert (first.outcome, second.outcome) == (InboundResult.STORED, InboundResult.DUPLICATE)
    assert len(await stored_texts(session, tenant.church_id)) == 1
    assert len(await messages(session, tenant.church_id, "relay")) == 1
    unread = await session.scalar(
        text("SELECT unread_count FROM conversations WHERE id = :i"), {"i": first.conversation_id}
    )
    assert unread == 1


async def test_texts_count_on_one_conversation_and_reopen_it(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1)
    phone = await member_phone(session, alice)
    first = await text_in(session, to=number, sender=phone, body="one")
    cid = first.conversation_id

    async def state() -> tuple[str, int]:
        row = (
            await session.execute(
                text("SELECT status, unread_count FROM conversations WHERE id = :i"), {"i": cid}
            )
        ).one()
        return row[0], row[1]

    await text_in(session, to=number, sender=phone, body="two")
    assert await state() == ("open", 2)
    await session.execute(
        text("UPDATE conversations SET status = 'closed' WHERE id = :i"), {"i": cid}
    )
    third = await text_in(session, to=number, sender=phone, body="three")
    assert third.conversation_id == cid and await state() == ("open", 3)  # closed → reopened
    await session.execute(
        text("UPDATE conversations SET status = 'archived' WHERE id = :i"), {"i": cid}
    )
    await text_in(session, to=number, sender=phone, body="four")
    assert await state() == ("archived", 4)  # archived stays filed away, but counts unread


async def test_inbox_mode_stores_without_relaying(session: AsyncSession, tenant: Tenant) -> None:
    await Seeder(session, tenant.church_id).update_church(conversation_mode="inbox")
    number = await church_number(session, tenant.church_id)
    alice, _bob = await make_members(session, tenant.church_id, 2)
    out = await text_in(session, to=number, sender=await member_phone(session, alice), body="hi")
    assert out.outcome is InboundResult.STORED and out.relay_message_id is None
    assert out.relay_skipped is None
    assert await messages(session, tenant.church_id) == []
    assert len(await stored_texts(session, tenant.church_id)) == 1


async def test_relay_over_quota_is_skipped_but_the_text_is_kept(
    session: AsyncSession, tenant: Tenant
) -> None:
    await Seeder(session, tenant.church_id).update_church(plan="starter")
    now = datetime.now(UTC)
    await session.execute(
        text(
            "INSERT INTO usage (church_id, month, texts) VALUES (:c, :m, 1000)"
            " ON CONFLICT (church_id, month) DO UPDATE SET texts = 1000"
        ),
        {"c": tenant.church_id, "m": now.date().replace(day=1)},
    )
    number = await church_number(session, tenant.church_id)
    alice, _bob = await make_members(session, tenant.church_id, 2)
    phone = await member_phone(session, alice)
    out = await text_in(session, to=number, sender=phone, body="Anyone there?")
    assert out.outcome is InboundResult.STORED and out.relay_skipped == "quota"
    assert await messages(session, tenant.church_id) == []
    assert len(await stored_texts(session, tenant.church_id)) == 1
    # Carrier-mandated answers are never refused for quota.
    stop = await text_in(session, to=number, sender=phone, body="STOP")
    assert stop.reply_message_id is not None


async def test_sender_number_is_normalised(session: AsyncSession, tenant: Tenant) -> None:
    number = await church_number(session, tenant.church_id)
    (alice,) = await make_members(session, tenant.church_id, 1)
    e164 = await member_phone(session, alice)  # +1202xxxxxxx
    national = f"({e164[2:5]}) {e164[5:8]}-{e164[8:]}"
    out = await text_in(session, to=number, sender=national, body="hello")
    assert out.outcome is InboundResult.STORED and out.member_id == alice


# --- unknown numbers and senders --------------------------------------------------------------


async def test_unknown_sender_gets_one_auto_reply_a_day(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    await make_members(session, tenant.church_id, 2)
    first = await text_in(session, to=number, sender=UNKNOWN, body="Hi, is this Grace?")
    second = await text_in(session, to=number, sender=UNKNOWN, body="Hello??")
    assert first.outcome is InboundResult.UNKNOWN_SENDER and first.reply_message_id is not None
    assert second.outcome is InboundResult.UNKNOWN_SENDER and second.reply_message_id is None
    (reply,) = await messages(session, tenant.church_id)
    name = await _church_name(session, tenant.church_id)
    assert reply.kind == "system" and reply.phones == [UNKNOWN]
    assert reply.content == DEFAULT_UNKNOWN_SENDER_REPLY.replace("{church_name}", name)
    # The one recipient is tracked like any other, under an id no member has or will have.
    (recipient_id,) = reply.member_ids
    members = await session.scalar(
        text("SELECT count(*) FROM members WHERE id = :i OR phone = :p"),
        {"i": recipient_id, "p": UNKNOWN},
    )
    assert members == 0  # nobody was created either
    (new_member,) = await make_members(session, tenant.church_id, 1)
    assert new_member > recipient_id
    assert await stored_texts(session, tenant.church_id) == []
    # Next day: one more reply.
    await _shift_auto_replies_to_yesterday(session, tenant.church_id)
    third = await text_in(session, to=number, sender=UNKNOWN, body="Hello again")
    assert third.reply_message_id is not None


async def test_unknown_sender_reply_is_the_churchs_own(
    session: AsyncSession, tenant: Tenant
) -> None:
    await Seeder(session, tenant.church_id).update_church(
        unknown_sender_reply="{church_name} here: call 555-0100."
    )
    number = await church_number(session, tenant.church_id)
    await text_in(session, to=number, sender=UNKNOWN, body="hi")
    (reply,) = await messages(session, tenant.church_id)
    name = await _church_name(session, tenant.church_id)
    assert reply.content == f"{name} here: call 555-0100."


async def test_unknown_sender_texting_stop_gets_nothing(
    session: AsyncSession, tenant: Tenant
) -> None:
    number = await church_number(session, tenant.church_id)
    out = await text_in(session, to=number, sender=UNKNOWN, body="STOP")
    assert out.outcome is InboundResult.UNKNOWN_SENDER and out.reply_message_id is None
    assert await messages(session, tenant.church_id) == []


@pytest.mark.parametrize("sender", ["12345", "GRACE", "+1555", "+15550100000", "+999123456"])
async def test_a_sender_that_is_no_valid_number_gets_no_auto_reply(
    session: AsyncSession, tenant: Tenant, sender: str
) -> None:
    # A reply would be refused by the carrier (Twilio 21211) and still counted as usage.
    number = await church_number(session, tenant.church_id)
    out = await text_in(session, to=number, sender=sender, body="hello")
    assert out.outcome is InboundResult.UNKNOWN_SENDER and out.reply_message_id is None
    assert out.church_id == tenant.church_id
    assert await messages(session, tenant.church_id) == []


async def test_unknown_church_number_is_acknowledged_and_ignored(
    session: AsyncSession, tenant: Tenant
) -> None:
    out = await text_in(session, to="+13125550199", sender=UNKNOWN, body="hello")
    assert out.outcome is InboundResult.UNKNOWN_NUMBER and out.church_id is None
    assert await messages(session, tenant.church_id) == []


async def test_a_text_costs_the_same_statements_for_2_or_60_members(
    session: AsyncSession, tenant: Tenant, other_tenant: Tenant, count_statements: object
) -> None:
    counts = []
    for t, n in ((tenant, 2), (other_tenant, 60)):
        number = await church_number(session, t.church_id)
        ids = await make_members(session, t.church_id, n)
        phone = await member_phone(session, ids[0])
        await text_in(session, to=number, sender=phone, body="first")  # conversation exists
        with count_statements() as log:  # type: ignore[operator]
            await text_in(session, to=number, sender=phone, body="second")
        counts.append(log.count)
    assert counts[0] == counts[1] <= 8, counts
