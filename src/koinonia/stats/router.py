from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from koinonia.auth.deps import Auth, ReadDbSession
from koinonia.db.session import given
from koinonia.kit.openapi import AUTHENTICATED
from koinonia.stats import service
from koinonia.stats.schemas import BranchStatsPage, MessageStatsOut, SummaryOut

router = APIRouter(prefix="/stats", tags=["stats"], responses=AUTHENTICATED)

Days = Annotated[
    int,
    Query(
        ge=1,
        le=365,
        description="Window: today and the N-1 days before it, in the church's timezone.",
    ),
]


def json_document(body: bytes) -> Response:
    # Cached documents are served as stored; the response model documents them.
    return Response(content=body, media_type="application/json")


@router.get("/summary", response_model=SummaryOut)
async def summary(auth: Auth, session: ReadDbSession) -> Response:
    """The church at a glance. Definitions:

    - `members`: all members of the church (`total`), by SMS consent (`opted_in`, `opted_out`).
    - `branches`, `groups`: how many exist now.
    - `month`: the billing month, the current UTC calendar month.
    - `texts`, `segments`: the month's usage as billed: one text per recipient of a message
      created this month (reserved when it is written; cancelled, never-sent recipients are
      given back), and the SMS segments actually handed to the carrier for them.
    - `messages`: messages of any kind created this month (UTC).
    - `sent`, `delivered`, `undelivered`, `failed`: recipients of those messages by their
      current delivery status (`sent` = handed to the carrier, no report yet).
    - `delivery_rate`: delivered / (sent + delivered + undelivered + failed) over those
      messages, rounded to 4 places; null when none was handed to the carrier yet.

    Cached 60 s per church; any successful write of the church refreshes it at once."""
    return json_document(await service.summary(given(session), auth))


@router.get("/branches", response_model=BranchStatsPage)
async def branch_stats(auth: Auth, session: ReadDbSession, days: Days = 30) -> Response:
    """Every branch of the church (by id; plans allow few, so no pagination). Definitions:

    - `groups`: groups in the branch now. `members`: distinct members in at least one of those
      groups now, whatever their consent (a member of two of its groups counts once).
    - The window: messages created since `since`, the church-local midnight starting the
      oldest of the `days` days (today included).
    - `messages`: messages of the window that targeted the branch: sent to it by branch
      (`target.type` = `branches` with its id), or to one of its groups (`groups`), the
      group's current branch deciding. A message to several groups of one branch counts once
      for that branch; a message to several branches counts for each of them, with all of its
      recipients. Messages to `all` or to `members` count for no branch.
    - `texts`: recipients of those messages except `skipped` ones (cancelled before sending):
      queued, sending, sent, delivered, undelivered and failed.
    - `sent`, `delivered`, `undelivered`, `failed`: those recipients by current status.
    - `delivery_rate`: delivered / (sent + delivered + undelivered + failed); null when none.

    Cached 5 minutes per church and `days`; any successful write of the church refreshes it at
    once. 422 when `days` is not 1-365."""
    return json_document(await service.branches(given(session), auth, days=days))


@router.get("/messages", response_model=MessageStatsOut)
async def message_stats(auth: Auth, session: ReadDbSession, days: Days = 30) -> Response:
    """Messages created in the window: since `since`, the church-local midnight starting the
    oldest of the `days` days (today included). Definitions:

    - `messages`: messages of any kind (broadcasts, replies, relays, welcomes, recurring).
    - `by_status`: their recipients by current status; `texts`: all of them but `skipped`.
    - `delivery_rate`: delivered / (sent + delivered + undelivered + failed), rounded to 4
      places; null when none was handed to the carrier yet.
    - `series`: one entry per church-local day of the window, oldest first, days without
      messages included with zeros: the messages created that day, their texts and how many of
      those were delivered (whenever the delivery happened).

    Cached 2 minutes per church and `days`; any successful write of the church refreshes it at
    once. 422 when `days` is not 1-365."""
    return json_document(await service.messages(given(session), auth, days=days))
