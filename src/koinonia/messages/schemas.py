from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import Field, StringConstraints, field_validator, model_validator

from koinonia.kit.schemas import AwareDatetime, In, Out

Content = Annotated[str, StringConstraints(min_length=1, max_length=1600)]
# How far in the past `scheduled_at` may be: the time it took to fill in the form and send it.
# Anything older is a mistake (a wrong date or offset) that would otherwise go out at once.
SCHEDULE_PAST_TOLERANCE = timedelta(minutes=1)
TargetType = Literal["all", "branches", "groups", "members"]


class Target(In):
    type: TargetType = Field(
        description="Who receives it: everyone, or the members of some "
        "branches, some groups, or some members by id."
    )
    ids: list[Annotated[int, Field(ge=1, le=2**63 - 1)]] = Field(
        default_factory=list, max_length=1000, description="Required unless type is `all`."
    )

    @model_validator(mode="after")
    def _ids_match_type(self) -> Target:
        if self.type == "all" and self.ids:
            raise ValueError("ids must be empty when type is 'all'")
        if self.type != "all" and not self.ids:
            raise ValueError(f"ids are required when type is '{self.type}'")
        self.ids = sorted(set(self.ids))
        return self


class MessageIn(In):
    content: Content | None = Field(
        None,
        description="Up to 1,600 characters. Merge fields: {first_name}, {last_name}, "
        "{church_name}, with defaults like {first_name|friend}. Filled in for every recipient, "
        "the text must also fit the church's provider (Twilio: 1,600 characters; Telnyx: 10 "
        "parts), else 422 on `content` (dry runs too). Omit to use `template_id`.",
    )
    template_id: int | None = Field(None, ge=1, le=2**63 - 1)
    target: Target
    scheduled_at: AwareDatetime | None = Field(
        None,
        description="Send later (ISO 8601 with an offset; a time without one is refused, not "
        "read in the church's timezone). At most a minute in the past (sends at once); earlier "
        "is a 422. Quiet hours move it to their end.",
    )
    dry_run: bool = Field(False, description="Resolve and price the send without writing.")

    @field_validator("scheduled_at")
    @classmethod
    def _not_in_the_past(cls, value: datetime | None) -> datetime | None:
        if value is not None and value < datetime.now(UTC) - SCHEDULE_PAST_TOLERANCE:
            raise ValueError("is more than a minute in the past: omit it to send now")
        return value

    @model_validator(mode="after")
    def _content_or_template(self) -> MessageIn:
        if self.content is None and self.template_id is None:
            raise ValueError("give content or template_id")
        return self


class QuotaOut(Out):
    limit: int | None = Field(description="Texts per month; null = unlimited.")
    used: int
    remaining: int | None


class DryRunOut(Out):
    recipients: int = Field(description="Distinct opted-in members who would get a text.")
    skipped_opted_out: int
    encoding: str
    segments_per_text: int = Field(
        description="Segments of one text with merge fields filled with typical values; the "
        "exact count per recipient is recorded when it is sent."
    )
    total_texts: int
    estimated_segments: int
    estimated_cost_usd: float
    quota: QuotaOut
    would_exceed_quota: bool


class MessageCreated(Out):
    id: int
    status: str
    recipient_count: int
    skipped_opted_out: int
    encoding: str
    segments: int
    scheduled_at: datetime | None


class StatusCounts(Out):
    queued: int = 0
    sending: int = 0
    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    failed: int = 0
    skipped: int = 0


MESSAGE_STATUS_DESCRIPTION = (
    "`scheduled` (waits for `scheduled_at`) or `queued` → `sending` (texts are being handed to "
    "the provider) → `sent` (every text handed over; some still await the carrier's delivery "
    "report) → `completed` (every text has its final status, or no report came for "
    "KOINONIA_REPORT_WAIT_S, default 1 hour, after the message became `sent`; such texts stay "
    "`sent` in `counts`). `cancelled`: stopped by an admin before everything was sent. "
    "A message moves from `sent` to `completed` within one worker sweep (KOINONIA_LEASE_SWEEP_S, "
    "default 10 s) of its last report."
)


class MessageOut(Out):
    id: int
    content: str
    kind: str
    target_type: str
    target_ids: list[int]
    encoding: str
    segments: int
    status: Literal["scheduled", "queued", "sending", "sent", "completed", "cancelled"] = Field(
        description=MESSAGE_STATUS_DESCRIPTION
    )
    recipient_count: int
    skipped_opted_out: int
    created_by: int | None
    created_at: datetime
    scheduled_at: datetime | None
    sent_at: datetime | None = Field(
        description="When the last text was handed to the provider (the message became `sent`, "
        "or `completed` at once when no report was awaited); null before."
    )
    completed_at: datetime | None = Field(
        description="When the message became `completed` or `cancelled`; null before."
    )
    counts: StatusCounts
    delivery_rate: float | None = Field(
        description="delivered / (sent + delivered + undelivered + failed): the share of texts "
        "handed to the carrier that were confirmed delivered; null before any was sent."
    )


class RecipientOut(Out):
    member_id: int
    first_name: str | None
    last_name: str | None
    phone: str
    status: str
    segments: int
    attempts: int
    provider_message_id: str | None
    error_code: str | None
    error_text: str | None
    sent_at: datetime | None
    delivered_at: datetime | None
