from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from koinonia.auth.deps import Auth, DbSession
from koinonia.conversations import service
from koinonia.conversations.schemas import (
    ConversationOut,
    ConversationPatch,
    ConversationStatus,
    ReplyIn,
    ReplyOut,
    ThreadMessageOut,
)
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit

router = APIRouter(prefix="/conversations", tags=["conversations"], responses=AUTHENTICATED)

NOT_FOUND = not_found("conversation")

StatusFilter = Annotated[ConversationStatus | None, Query(description="Only this status.")]
UnreadOnly = Annotated[bool, Query(description="Only conversations with unread texts.")]


@router.get("", response_model=Page[ConversationOut])
async def list_conversations(
    auth: Auth,
    session: DbSession,
    status: StatusFilter = None,
    unread_only: UnreadOnly = False,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ConversationOut]:
    """One conversation per member who has texted the church's number, latest activity first
    (`last_message_at` descending, then id), each with the member, the unread count and a
    preview of the newest text. Keyword texts (STOP, START, HELP) are not conversation."""
    items, next_cursor = await service.list_conversations(
        session, auth, limit=limit, cursor=cursor, status=status, unread_only=unread_only
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{conversation_id}", response_model=ConversationOut, responses=NOT_FOUND)
async def get_conversation(conversation_id: Id, auth: Auth, session: DbSession) -> ConversationOut:
    """One conversation, as in the list."""
    return await service.get_conversation(session, auth, conversation_id)


@router.patch("/{conversation_id}", response_model=ConversationOut, responses=NOT_FOUND)
async def update_conversation(
    conversation_id: Id, data: ConversationPatch, auth: Auth, session: DbSession
) -> ConversationOut:
    """Set the status (`open`, `closed`, `archived`) and/or mark it read (`"read": true`, the
    unread count becomes 0) or unread (`"read": false`)."""
    return await service.update_conversation(session, auth, conversation_id, data)


@router.get(
    "/{conversation_id}/messages", response_model=Page[ThreadMessageOut], responses=NOT_FOUND
)
async def list_thread(
    conversation_id: Id,
    auth: Auth,
    session: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[ThreadMessageOut]:
    """The thread, newest first (the next page goes further back in time): the member's texts
    and the admins' replies in this conversation, each outbound one with its delivery status
    to this member."""
    items, next_cursor = await service.list_thread(
        session, auth, conversation_id, limit=limit, cursor=cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/{conversation_id}/reply",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ReplyOut,
    responses={
        **NOT_FOUND,
        **errors(
            {
                402: "The month's texts would exceed the plan (`plan_limit_reached`).",
                409: "Inbox mode and the member opted out (`member_opted_out`), or the church"
                " has no SMS number.",
            }
        ),
    },
)
async def reply(conversation_id: Id, data: ReplyIn, auth: Auth, session: DbSession) -> ReplyOut:
    """Reply, sent by the workers like any message (durable, tracked per recipient).

    `group_chat` mode: to every opted-in member as `{church name}: {body}` (quiet hours hold it
    like a broadcast). `inbox` mode: to this member only, not held by quiet hours (it answers
    their own text); 409 `member_opted_out` if they opted out. 402 when the month's texts would
    be exceeded. The reply joins the thread and marks the conversation read."""
    return await service.reply(session, auth, conversation_id, data)
