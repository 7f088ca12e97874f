from __future__ import annotations

from datetime import date, datetime

from pydantic import Field

from koinonia.kit.schemas import Out

RATE = (
    "delivered / (sent + delivered + undelivered + failed): the share of texts that reached a "
    "phone among those handed to the carrier and not still in flight to it; null when none."
)


class MemberCounts(Out):
    total: int = Field(description="Members of the church, whatever their consent.")
    opted_in: int
    opted_out: int


class SummaryOut(Out):
    members: MemberCounts
    branches: int
    groups: int
    month: str = Field(
        description="The billing month (UTC calendar month), YYYY-MM.",
        pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$",
    )
    texts: int = Field(description="Texts used this billing month (usage: one per recipient).")
    segments: int = Field(description="SMS segments sent for this month's texts (usage).")
    messages: int = Field(description="Messages created this billing month (any kind).")
    sent: int = Field(description="Recipients of this month's messages still `sent`.")
    delivered: int
    undelivered: int
    failed: int
    delivery_rate: float | None = Field(description=f"Over this month's messages: {RATE}")


class BranchStatsOut(Out):
    branch_id: int
    name: str
    is_active: bool
    groups: int = Field(description="Groups in the branch now.")
    members: int = Field(
        description="Distinct members in at least one group of the branch now (any consent)."
    )
    messages: int = Field(description="Messages of the window that targeted the branch.")
    texts: int = Field(description="Recipients of those messages, except `skipped`.")
    sent: int
    delivered: int
    undelivered: int
    failed: int
    delivery_rate: float | None = Field(description=RATE)


class BranchStatsPage(Out):
    days: int
    since: datetime = Field(description="Start of the window: church-local midnight.")
    items: list[BranchStatsOut]


class StatusTotals(Out):
    queued: int
    sending: int
    sent: int
    delivered: int
    undelivered: int
    failed: int
    skipped: int


class DayStats(Out):
    day: date = Field(description="A church-local calendar day.")
    messages: int = Field(description="Messages created that day.")
    texts: int = Field(description="Their recipients, except `skipped`.")
    delivered: int = Field(description="Their recipients delivered (whenever it happened).")


class MessageStatsOut(Out):
    days: int
    timezone: str = Field(description="The church's timezone: days are its calendar days.")
    since: datetime = Field(description="Start of the window: church-local midnight.")
    messages: int
    texts: int = Field(description="Recipients of the window's messages, except `skipped`.")
    by_status: StatusTotals = Field(description="Recipients of the window's messages by status.")
    delivery_rate: float | None = Field(description=RATE)
    series: list[DayStats] = Field(description="Every day of the window, oldest first.")
