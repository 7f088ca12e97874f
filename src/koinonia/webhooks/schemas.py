"""What the provider webhooks carry once verified and parsed: delivery reports and inbound texts.

Plain frozen dataclasses, not Pydantic models: the bodies are parsed by hand (the signature is
over the exact bytes, and the status webhook is the hottest endpoint of the API), and these are
only handed from the router to the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal

Provider = Literal["twilio", "telnyx"]
# Our recipient statuses a provider report can move a recipient to (models.message).
ReportedStatus = Literal["sent", "delivered", "undelivered", "failed"]

# Column widths of message_recipients / pending_status_reports.
PROVIDER_ID_MAX = 64
ERROR_CODE_MAX = 32
ERROR_TEXT_MAX = 1000


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One provider status callback, mapped to our status vocabulary."""

    provider: Provider
    provider_message_id: str
    status: ReportedStatus
    error_code: str | None = None  # only for undelivered / failed
    error_text: str | None = None
    # From the provider's error code (undelivered / failed only): a temporary failure worth
    # another attempt (the adapters' TRANSIENT_CODES), or the member unsubscribed (opt-out).
    retry: bool = False
    opt_out: bool = False


@dataclass(frozen=True, slots=True)
class InboundText:
    """A text a member sent to a church's number, as either provider posts it."""

    provider: Provider
    provider_message_id: str  # dedupe key (conversation_messages.provider id)
    from_: str  # the member's phone, as the provider gives it (E.164)
    to: str  # the church's number: finds the church
    body: str
    raw: Mapping[str, Any]  # the whole form / event payload, for anything not lifted out above


class ReportOutcome(StrEnum):
    """What storing one delivery report did (the `outcome` label of WEBHOOKS)."""

    APPLIED = "applied"  # the recipient moved forward
    STALE = "stale"  # the recipient exists but is already at this status or further (dup/late)
    PENDING = "pending"  # no recipient has this provider id yet: kept in pending_status_reports
