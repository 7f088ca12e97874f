from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from koinonia.kit.schemas import In, Out, not_null

ConversationStatus = Literal["open", "closed", "archived"]
ReplyBody = Annotated[str, StringConstraints(min_length=1, max_length=1600)]


class ConversationMember(Out):
    id: int
    first_name: str
    last_name: str
    phone: str
    consent: str = Field(description="`opted_in` or `opted_out` (texted STOP, or the carrier).")


class LastMessage(Out):
    direction: Literal["inbound", "outbound"]
    body: str = Field(description="The first 160 characters.")
    created_at: datetime


class ConversationOut(Out):
    id: int
    status: ConversationStatus = Field(
        description="`open`; `closed` (handled: the member's next text reopens it); "
        "`archived` (filed away: stays archived when the member texts again, though the "
        "text still counts as unread and moves it up the list)."
    )
    unread_count: int = Field(description="Member texts since an admin last read or replied.")
    last_message_at: datetime
    created_at: datetime
    member: ConversationMember
    last_message: LastMessage | None


class ConversationPatch(In):
    status: ConversationStatus | None = None
    read: bool | None = Field(
        None, description="true: mark read (unread count 0); false: mark unread."
    )

    _not_null = not_null("status", "read")


class ThreadMessageOut(Out):
    id: int
    direction: Literal["inbound", "outbound"] = Field(
        description="`inbound`: the member's text; `outbound`: an admin's reply."
    )
    body: str = Field(description="What the member or the admin wrote (without any prefix).")
    created_at: datetime
    message_id: int | None = Field(
        description="Outbound: the message that carries it (GET /messages/{id} for delivery)."
    )
    status: str | None = Field(
        description="Inbound: `received`. Outbound: its delivery to this member (queued, "
        "sending, sent, delivered, undelivered, failed, skipped)."
    )


class ReplyIn(In):
    body: ReplyBody = Field(
        description="Up to 1,600 characters, sent exactly as written (no merge fields). In "
        "`group_chat` mode it goes to every opted-in member as `{church name}: {body}`; in "
        "`inbox` mode to this member only."
    )


class ReplyOut(Out):
    message: ThreadMessageOut = Field(description="The reply as it now stands in the thread.")
    message_id: int
    mode: Literal["group_chat", "inbox"]
    recipient_count: int
    status: str = Field(description="`queued`, or `scheduled` when quiet hours hold it.")
    scheduled_at: datetime | None
