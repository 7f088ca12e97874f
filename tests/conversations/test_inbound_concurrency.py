"""The same inbound text delivered twice at the same moment (a provider retry racing the
original), with real commits on two connections: stored once, relayed once, counted once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from conversations.support import church_number, member_phone, provider_id
from fixtures.factories import Tenant, make_members
from koinonia.conversations.inbound import InboundOutcome, InboundResult, handle_inbound_text
from koinonia.db.database import Database


async def _deliver(database: Database, to: str, sender: str, body: str, pid: str) -> InboundOutcome:
    """One webhook request: its own unit of work, committed at the end."""
    async with database.session() as session:
        return await handle_inbound_text(
            session,
            provider="twilio",
            provider_message_id=pid,
            from_number=sender,
            to_number=to,
            body=body,
        )


async def test_concurrent_duplicates_store_and_relay_once(
    committed_session: AsyncSession,
    committed_database: Database,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    church = await committed_tenants()
    number = await church_number(committed_session, church.church_id)
    alice, *_others = await make_members(committed_session, church.church_id, 4)
    phone = await member_phone(committed_session, alice)
    await committed_session.commit()
    for round_ in range(5):  # first round creates the conversation, later ones reuse it
        pid = provider_id()
        outcomes = await asyncio.gather(
            *(_deliver(committed_database, number, phone, f"round {round_}", pid) for _ in range(2))
        )
        assert sorted(o.outcome for o in outcomes) == [
            InboundResult.DUPLICATE,
            InboundResult.STORED,
        ]
    counts = (
        await committed_session.execute(
            text(
                """
                SELECT (SELECT count(*) FROM conversation_messages WHERE church_id = :c),
                       (SELECT count(*) FROM messages WHERE church_id = :c AND kind = 'relay'),
                       (SELECT count(*) FROM conversations WHERE church_id = :c),
                       (SELECT unread_count FROM conversations WHERE church_id = :c)
                """
            ),
            {"c": church.church_id},
        )
    ).one()
    await committed_session.commit()
    assert tuple(counts) == (5, 5, 1, 5)


async def test_concurrent_different_texts_all_count(
    committed_session: AsyncSession,
    committed_database: Database,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    church = await committed_tenants()
    number = await church_number(committed_session, church.church_id)
    alice, _bob = await make_members(committed_session, church.church_id, 2)
    phone = await member_phone(committed_session, alice)
    await committed_session.commit()
    # Ten texts at once from a member with no conversation yet: one conversation, ten unread.
    outcomes = await asyncio.gather(
        *(
            _deliver(committed_database, number, phone, f"text {i}", provider_id())
            for i in range(10)
        )
    )
    assert {o.outcome for o in outcomes} == {InboundResult.STORED}
    assert len({o.conversation_id for o in outcomes}) == 1
    unread = await committed_session.scalar(
        text("SELECT unread_count FROM conversations WHERE church_id = :c"),
        {"c": church.church_id},
    )
    await committed_session.commit()
    assert unread == 10


async def test_concurrent_stops_confirm_once(
    committed_session: AsyncSession,
    committed_database: Database,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    church = await committed_tenants()
    number = await church_number(committed_session, church.church_id)
    (alice,) = await make_members(committed_session, church.church_id, 1)
    phone = await member_phone(committed_session, alice)
    await committed_session.commit()
    pid = provider_id()
    outcomes = await asyncio.gather(
        *(_deliver(committed_database, number, phone, "STOP", pid) for _ in range(3))
    )
    assert sum(o.reply_message_id is not None for o in outcomes) == 1
    assert sum(o.consent_changed for o in outcomes) == 1
    confirmations = await committed_session.scalar(
        text("SELECT count(*) FROM messages WHERE church_id = :c AND kind = 'system'"),
        {"c": church.church_id},
    )
    await committed_session.commit()
    assert confirmations == 1
