from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, model_validator

from koinonia.kit.schemas import (
    ClockTime,
    ClockTimeOut,
    Email,
    In,
    Name,
    OptionalName,
    Out,
    Phone,
    TimeZone,
    Title,
    not_null,
)


class ChurchOut(Out):
    id: int
    name: str
    contact_email: str
    timezone: str
    sms_number: str | None
    sms_provider: str
    plan: str
    subscription_status: str
    trial_ends_at: datetime | None
    conversation_mode: str
    quiet_hours_start: ClockTimeOut | None = Field(description="Church-local HH:MM.")
    quiet_hours_end: ClockTimeOut | None = Field(description="Church-local HH:MM.")
    unknown_sender_reply: str | None
    created_at: datetime


class ChurchPatch(In):
    name: Title | None = None
    contact_email: Email | None = None
    timezone: TimeZone | None = None
    sms_number: Phone | None = None
    sms_provider: Literal["sandbox", "twilio", "telnyx"] | None = None
    conversation_mode: Literal["group_chat", "inbox"] | None = Field(
        None,
        description="group_chat: inbound texts are relayed to every other member and replies go "
        "to all; inbox: nothing is relayed and a reply goes to that member only.",
    )
    quiet_hours_start: ClockTime | None = Field(
        None,
        description="Church-local time quiet hours begin, HH:MM (e.g. 21:00; `:00` seconds are "
        "accepted, a UTC offset is not); null disables.",
    )
    quiet_hours_end: ClockTime | None = Field(
        None, description="Church-local time they end, HH:MM (08:00)."
    )
    unknown_sender_reply: Annotated[str, StringConstraints(max_length=480)] | None = None

    _not_null = not_null("name", "contact_email", "timezone", "sms_provider", "conversation_mode")

    @model_validator(mode="after")
    def _quiet_hours_pair(self) -> ChurchPatch:
        given = self.model_fields_set & {"quiet_hours_start", "quiet_hours_end"}
        if len(given) == 1 or (
            given and (self.quiet_hours_start is None) != (self.quiet_hours_end is None)
        ):
            raise ValueError("quiet_hours_start and quiet_hours_end are set (or cleared) together")
        return self


class AdminOut(Out):
    id: int
    email: str
    first_name: str
    last_name: str
    role: str
    created_at: datetime


class AdminInvite(In):
    email: Email
    first_name: Name
    last_name: OptionalName = ""


class AdminInvited(AdminOut):
    temporary_password: str = Field(
        description="Shown once. The co-admin logs in with it and should change it."
    )
