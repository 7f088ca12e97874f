from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from koinonia.auth.deps import Auth, DbSession
from koinonia.kit.openapi import AUTHENTICATED, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit
from koinonia.recurring import service
from koinonia.recurring.schemas import RecurringIn, RecurringOut, RecurringPatch

router = APIRouter(prefix="/recurring", tags=["recurring"], responses=AUTHENTICATED)

NOT_FOUND = not_found("recurring message")

Active = Annotated[
    bool | None, Query(description="Only active (true) or only paused (false) schedules.")
]


@router.get("", response_model=Page[RecurringOut])
async def list_recurring(
    auth: Auth,
    session: DbSession,
    active: Active = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[RecurringOut]:
    """The church's recurring messages by id, each with its next firing (UTC and local)."""
    items, next_cursor = await service.list_recurring(
        session, auth, active=active, limit=limit, cursor=cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=RecurringOut)
async def create_recurring(data: RecurringIn, auth: Auth, session: DbSession) -> RecurringOut:
    """Schedules a text daily, weekly (`day_of_week`, 0 = Monday) or monthly (`day_of_month`;
    31 in a shorter month means its last day) at `time_of_day` in the church's timezone,
    DST-correct. Each firing sends to the target's opted-in members like `POST /messages`,
    held during quiet hours, counted against the month's texts (skipped when over the plan)."""
    return await service.create_recurring(session, auth, data)


@router.get("/{recurring_id}", response_model=RecurringOut, responses=NOT_FOUND)
async def get_recurring(recurring_id: Id, auth: Auth, session: DbSession) -> RecurringOut:
    """One recurring message with its next and last firing."""
    return await service.get_recurring(session, auth, recurring_id)


@router.patch("/{recurring_id}", response_model=RecurringOut, responses=NOT_FOUND)
async def update_recurring(
    recurring_id: Id, data: RecurringPatch, auth: Auth, session: DbSession
) -> RecurringOut:
    """Changes the given fields; `is_active` pauses or resumes. Any change recomputes the next
    firing from now, so resuming never sends the occurrences missed while paused."""
    return await service.update_recurring(session, auth, recurring_id, data)


@router.delete("/{recurring_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_recurring(recurring_id: Id, auth: Auth, session: DbSession) -> None:
    """Deletes the schedule; messages it already sent stay in the history."""
    await service.delete_recurring(session, auth, recurring_id)
