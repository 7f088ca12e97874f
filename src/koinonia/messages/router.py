from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response, status

from koinonia.auth.deps import Auth, DbSession
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit
from koinonia.messages import service
from koinonia.messages.schemas import DryRunOut, MessageCreated, MessageIn, MessageOut, RecipientOut
from koinonia.models.message import MESSAGE_KINDS, MESSAGE_STATUSES, RECIPIENT_STATUSES

router = APIRouter(prefix="/messages", tags=["messages"], responses=AUTHENTICATED)

NOT_FOUND = not_found("message")

Kind = Literal[MESSAGE_KINDS]  # type: ignore[valid-type]
Status = Literal[MESSAGE_STATUSES]  # type: ignore[valid-type]
RecipientStatus = Literal[RECIPIENT_STATUSES]  # type: ignore[valid-type]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=MessageCreated | DryRunOut,
    responses={
        200: {"model": DryRunOut, "description": "dry run: nothing was written"},
        **errors(
            {
                402: "The month's texts would exceed the plan (`plan_limit_reached`).",
                409: "The church has no SMS number (`conflict`).",
            }
        ),
    },
)
async def send_message(
    data: MessageIn, auth: Auth, session: DbSession, response: Response
) -> MessageCreated | DryRunOut:
    """Send to everyone, branches, groups or members, now or at `scheduled_at`.

    Writes the message and every recipient (distinct opted-in members; opted-out ones are
    skipped and counted) and reserves the texts against the month's quota, then returns 202:
    delivery happens in the workers. 402 when the plan's monthly texts would be exceeded; 422 for
    unknown target ids or merge fields; 409 when the church has no SMS number. With `dry_run`
    it answers 200 with the audience, segments, cost and quota, and writes nothing."""
    result = await service.send(session, auth, data)
    if isinstance(result, DryRunOut):
        response.status_code = status.HTTP_200_OK
    return result


@router.get("", response_model=Page[MessageOut])
async def list_messages(
    auth: Auth,
    session: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    kind: Annotated[Kind | None, Query()] = None,
    status: Annotated[Status | None, Query()] = None,
) -> Page[MessageOut]:
    """History, newest first, each with its recipient counts by status and delivery rate."""
    items, next_cursor = await service.list_messages(
        session, auth, limit=limit, cursor=cursor, kind=kind, status=status
    )
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{message_id}", response_model=MessageOut, responses=NOT_FOUND)
async def get_message(message_id: Id, auth: Auth, session: DbSession) -> MessageOut:
    return await service.get_message(session, auth, message_id)


@router.get("/{message_id}/recipients", response_model=Page[RecipientOut], responses=NOT_FOUND)
async def list_recipients(
    message_id: Id,
    auth: Auth,
    session: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
    status: Annotated[RecipientStatus | None, Query()] = None,
) -> Page[RecipientOut]:
    """Every recipient with their delivery status, attempts and provider error, by member id."""
    items, next_cursor = await service.list_recipients(
        session, auth, message_id, limit=limit, cursor=cursor, status=status
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/{message_id}/cancel",
    response_model=MessageOut,
    responses={
        **NOT_FOUND,
        **errors({409: "The message already finished or was cancelled (`not_cancellable`)."}),
    },
)
async def cancel_message(message_id: Id, auth: Auth, session: DbSession) -> MessageOut:
    """Stop a scheduled or sending message: recipients not yet handed to the carrier are
    skipped and their texts return to the month's quota. 409 if it already finished."""
    return await service.cancel(session, auth, message_id)
