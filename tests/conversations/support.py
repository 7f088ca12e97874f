"""Helpers for conversation tests: post an inbound text the way a webhook does, read back what
was written (messages and their recipients) straight from SQL."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.conversations.inbound import InboundOutcome, handle_inbound_text
from koinonia.db.session import UnitOfWork

_ids = itertools.count(1)


def provider_id() -> str:
    return f"SMtest{next(_ids):010d}"


async def church_number(session: AsyncSession, church_id: int) -> str:
    number = await session.scalar(
        text("SELECT sms_number FROM churches WHERE id = :c"), {"c": church_id}
    )
    assert number is not None
    return str(number)


async def member_phone(session: AsyncSession, member_id: int) -> str:
    phone = await session.scalar(text("SELECT phone FROM members WHERE id = :m"), {"m": member_id})
    return str(phone)


async def text_in(
    session: AsyncSession,
    *,
    to: str,
    sender: str,
    body: str,
    pid: str | None = None,
    provider: str = "twilio",
) -> InboundOutcome:
    """One inbound text in its own unit of work, committed as the webhook's request is."""
    uow = UnitOfWork(session)
    outcome = await handle_inbound_text(
        session,
        provider=provider,
        provider_message_id=pid or provider_id(),
        from_number=sender,
        to_number=to,
        body=body,
    )
    await uow.commit()
    return outcome


async def messages(session: AsyncSession, church_id: int, kind: str | None = None) -> list[Any]:
    """The church's messages (oldest first), each with its recipients' member ids and phones."""
    stmt = text(
        """
        SELECT m.id, m.kind, m.content, m.status, m.conversation_id, m.scheduled_at,
               COALESCE(array_agg(r.member_id ORDER BY r.member_id)
                        FILTER (WHERE r.member_id IS NOT NULL), '{}') AS member_ids,
               COALESCE(array_agg(r.phone ORDER BY r.member_id)
                        FILTER (WHERE r.member_id IS NOT NULL), '{}') AS phones
        FROM messages m LEFT JOIN message_recipients r ON r.message_id = m.id
        WHERE m.church_id = :c AND (CAST(:kind AS varchar) IS NULL OR m.kind = :kind)
        GROUP BY m.id ORDER BY m.id
        """
    )
    return list((await session.execute(stmt, {"c": church_id, "kind": kind})).all())


async def member_consent(session: AsyncSession, member_id: int) -> Any:
    stmt = text("SELECT consent, consent_source, consent_changed_at FROM members WHERE id = :m")
    return (await session.execute(stmt, {"m": member_id})).one()


async def stored_texts(session: AsyncSession, church_id: int) -> list[Any]:
    stmt = text(
        "SELECT id, conversation_id, direction, body, provider_message_id"
        " FROM conversation_messages WHERE church_id = :c ORDER BY id"
    )
    return list((await session.execute(stmt, {"c": church_id})).all())
