"""Conversations for admins: the inbox list, one thread, replies and status (SPEC §4.4).

Inbound texts arrive through inbound.py; this is the admin side. Every function runs a
constant number of statements.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.conversations.inbound import MAX_TEXT_CHARS
from koinonia.conversations.repository import ConversationRepository
from koinonia.conversations.schemas import (
    ConversationMember,
    ConversationOut,
    ConversationPatch,
    LastMessage,
    ReplyIn,
    ReplyOut,
    ThreadMessageOut,
)
from koinonia.db.effects import church_changed
from koinonia.kit.errors import Conflict, NotFound, ValidationFailed
from koinonia.kit.pagination import ID, TIMESTAMP, CursorSpec
from koinonia.messages import limits
from koinonia.messages.service import Outgoing, enqueue

CONVERSATIONS_CURSOR = CursorSpec("conversations", (TIMESTAMP, ID))
THREAD_CURSOR = CursorSpec("thread", (ID,))


def _out(row: Any) -> ConversationOut:
    last = None
    if row.last_direction is not None:
        last = LastMessage(
            direction=row.last_direction, body=row.last_body, created_at=row.last_created_at
        )
    return ConversationOut(
        id=row.id,
        status=row.status,
        unread_count=row.unread_count,
        last_message_at=row.last_message_at,
        created_at=row.created_at,
        member=ConversationMember(
            id=row.member_id,
            first_name=row.first_name,
            last_name=row.last_name,
            phone=row.phone,
            consent=row.consent,
        ),
        last_message=last,
    )


async def list_conversations(
    session: AsyncSession,
    auth: AuthContext,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
    unread_only: bool,
) -> tuple[list[ConversationOut], str | None]:
    key = CONVERSATIONS_CURSOR.decode(cursor)
    rows = await ConversationRepository(session, church_id=auth.church_id).page(
        after=(key[0], key[1]) if key else None, limit=limit, status=status, unread_only=unread_only
    )
    items, next_cursor = CONVERSATIONS_CURSOR.page(rows, limit, lambda r: (r.last_message_at, r.id))
    return [_out(r) for r in items], next_cursor


async def get_conversation(
    session: AsyncSession, auth: AuthContext, conversation_id: int
) -> ConversationOut:
    row = await ConversationRepository(session, church_id=auth.church_id).get(conversation_id)
    if row is None:
        raise NotFound("conversation", conversation_id)
    return _out(row)


async def update_conversation(
    session: AsyncSession, auth: AuthContext, conversation_id: int, data: ConversationPatch
) -> ConversationOut:
    if data.status is None and data.read is None:
        return await get_conversation(session, auth, conversation_id)
    row = await ConversationRepository(session, church_id=auth.church_id).update(
        conversation_id, status=data.status, read=data.read
    )
    if row is None:
        raise NotFound("conversation", conversation_id)
    church_changed(session, auth.church_id)
    return _out(row)


async def list_thread(
    session: AsyncSession,
    auth: AuthContext,
    conversation_id: int,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[ThreadMessageOut], str | None]:
    repo = ConversationRepository(session, church_id=auth.church_id)
    if not await repo.exists(conversation_id):
        raise NotFound("conversation", conversation_id)
    key = THREAD_CURSOR.decode(cursor, query=str(conversation_id))
    rows = await repo.thread(conversation_id, before_id=key[0] if key else None, limit=limit)
    items, next_cursor = THREAD_CURSOR.page(
        rows, limit, lambda r: (r.id,), query=str(conversation_id)
    )
    return [ThreadMessageOut.model_validate(r._mapping) for r in items], next_cursor


async def reply(
    session: AsyncSession, auth: AuthContext, conversation_id: int, data: ReplyIn
) -> ReplyOut:
    """group_chat: to every opted-in member as "{church name}: {body}", held by quiet hours
    like any broadcast. inbox: to this member only, never held (it answers their own text);
    409 when they opted out. 402 when the month's texts would be exceeded."""
    repo = ConversationRepository(session, church_id=auth.church_id)
    found = await repo.for_reply(conversation_id)
    if found is None:
        raise NotFound("conversation", conversation_id)
    church, member_id, consent = found[0], int(found[1]), str(found[2])
    if church.conversation_mode == "inbox":
        if consent != "opted_in":
            raise Conflict(
                "this member opted out of texts; they must text START to hear from you again",
                code="member_opted_out",
            )
        limits.check_verbatim(church.sms_provider, data.body, field="body")
        created = await enqueue(
            session,
            Outgoing(
                church=church,
                plan_texts=auth.plan.texts_per_month,
                content=data.body,
                kind="reply",
                target_type="members",
                target_ids=[member_id],
                created_by=auth.admin_id,
                hold_for_quiet_hours=False,
                conversation_id=conversation_id,
            ),
        )
    else:
        content = f"{church.name}: {data.body}"
        if len(content) > MAX_TEXT_CHARS:
            room = MAX_TEXT_CHARS - len(church.name) - 2
            raise ValidationFailed.field(
                "body", f"at most {room} characters in group chat (the church name comes first)"
            )
        limits.check_verbatim(church.sms_provider, content, field="body")
        created = await enqueue(
            session,
            Outgoing(
                church=church,
                plan_texts=auth.plan.texts_per_month,
                content=content,
                kind="reply",
                target_type="all",
                created_by=auth.admin_id,
                conversation_id=conversation_id,
            ),
        )
    row = await repo.add_outbound(
        conversation_id,
        body=data.body,
        message_id=created.id,
        status="queued" if consent == "opted_in" else "skipped",
    )
    return ReplyOut(
        message=ThreadMessageOut.model_validate(row._mapping),
        message_id=created.id,
        mode="inbox" if church.conversation_mode == "inbox" else "group_chat",
        recipient_count=created.recipients,
        status=created.status,
        scheduled_at=created.due_at if created.status == "scheduled" else None,
    )
