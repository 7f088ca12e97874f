"""The billing month: one definition (billing.repository), on the database's clock, in UTC."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

import koinonia
from koinonia.billing.repository import BILLING_MONTH, BILLING_MONTH_START, billing_month_of


@pytest.mark.parametrize(
    ("instant", "month"),
    [
        (datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC), date(2026, 11, 1)),
        (datetime(2026, 12, 1, 0, 0, tzinfo=UTC), date(2026, 12, 1)),
        (datetime(2026, 12, 1, 3, 0, tzinfo=UTC), date(2026, 12, 1)),  # Nov 30 in New York
        (datetime(2026, 12, 31, 23, 30, tzinfo=UTC), date(2026, 12, 1)),  # Jan 1 in Berlin
    ],
)
async def test_the_month_of_an_instant_is_its_utc_month_whatever_the_session_zone(
    session: AsyncSession, instant: datetime, month: date
) -> None:
    for zone in ("UTC", "America/New_York", "Europe/Berlin"):
        await session.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
        got = await session.scalar(text(f"SELECT {billing_month_of(':t')}"), {"t": instant})
        assert got == month, zone


async def test_this_month_is_the_transaction_clock(session: AsyncSession) -> None:
    row = (
        await session.execute(
            text(f"SELECT {BILLING_MONTH}, {BILLING_MONTH_START}, now() AT TIME ZONE 'UTC'")
        )
    ).one()
    month, start, now = row
    assert start == datetime(month.year, month.month, 1, tzinfo=UTC)
    assert (now.year, now.month) == (month.year, month.month)


def test_no_other_module_spells_the_billing_month() -> None:
    """Reservations, refunds, charges and every reader take the month from billing.repository
    (a second spelling is how the host's clock and the database's came to disagree)."""
    package = Path(koinonia.__file__).parent
    spelled = re.compile(r"date_trunc\(\s*'month'|billing_month\(|date\(\w+\.year, \w+\.month, 1\)")
    offenders = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path != package / "billing" / "repository.py" and spelled.search(path.read_text())
    ]
    assert offenders == []
