from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from koinonia.kit.schemas import CLOCK_OUT_PATTERN, In, Out, Title, not_null
from koinonia.messages.schemas import Content, Target

Frequency = Literal["daily", "weekly", "monthly"]

_HHMM = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _hhmm(value: str) -> str:
    match = _HHMM.fullmatch(value)
    if match is None:
        raise ValueError("must be a 24-hour time HH:MM, e.g. 09:30")
    return f"{int(match.group(1)):02d}:{match.group(2)}"


TimeOfDay = Annotated[
    str,
    Field(
        max_length=5,
        json_schema_extra={"pattern": "^([01]?[0-9]|2[0-3]):[0-5][0-9]$"},
        description="Church-local wall time, 24-hour HH:MM.",
        examples=["09:30"],
    ),
    AfterValidator(_hhmm),
]
DayOfWeek = Annotated[int, Field(ge=0, le=6, description="Weekly only: 0 = Monday … 6 = Sunday.")]
DayOfMonth = Annotated[
    int,
    Field(ge=1, le=31, description="Monthly only: 1–31; a day the month lacks means its last day."),
]
_CONTENT_DOC = (
    "Up to 1,600 characters. Merge fields: {first_name}, {last_name}, {church_name}, "
    "with defaults like {first_name|friend}. Filled in for everyone in the target as it is "
    "when saved, the text must fit the church's provider (Twilio: 1,600 characters; Telnyx: "
    "10 parts), else 422 on `content`. Someone with a longer name later is failed with "
    "error_code text_too_long when it fires; the others still get it."
)


class RecurringIn(In):
    name: Title
    content: Content = Field(description=_CONTENT_DOC)
    target: Target
    frequency: Frequency
    day_of_week: DayOfWeek | None = None
    day_of_month: DayOfMonth | None = None
    time_of_day: TimeOfDay
    is_active: bool = True


class RecurringPatch(In):
    """Any field; omitted fields stay. Changing `frequency` clears the day field the new
    frequency doesn't use unless the body sets it."""

    name: Title | None = None
    content: Content | None = Field(None, description=_CONTENT_DOC)
    target: Target | None = None
    frequency: Frequency | None = None
    day_of_week: DayOfWeek | None = None
    day_of_month: DayOfMonth | None = None
    time_of_day: TimeOfDay | None = None
    is_active: bool | None = Field(None, description="false pauses the schedule, true resumes it.")

    _not_null = not_null("name", "content", "target", "frequency", "time_of_day", "is_active")


class RecurringOut(Out):
    id: int
    name: str
    content: str
    target: Target
    frequency: Frequency
    day_of_week: int | None
    day_of_month: int | None
    time_of_day: str = Field(
        description="Church-local HH:MM.", json_schema_extra={"pattern": CLOCK_OUT_PATTERN}
    )
    timezone: str = Field(description="The church's timezone the schedule runs in.")
    is_active: bool
    next_send_at: datetime | None = Field(
        description="Next firing, UTC; null while the schedule is paused."
    )
    next_send_local: str | None = Field(
        description="The same instant in church-local time, ISO 8601 with offset."
    )
    last_sent_at: datetime | None
    created_by: int | None
    created_at: datetime
