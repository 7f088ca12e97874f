"""Hand-built stats data: rows inserted straight through SQL with chosen statuses (the triggers
fill message_status_counts and branch_member_counts as in production)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members


@dataclass
class Seed:
    """Writes one church's rows; `await seed.message(...)` returns the message id."""

    session: AsyncSession
    church_id: int

    async def branch(self, name: str | None = None) -> int:
        return await make_branch(self.session, self.church_id, name)

    async def group(self, branch_id: int, name: str | None = None) -> int:
        return await make_group(self.session, self.church_id, branch_id, name)

    async def members(self, count: int, *, consent: str = "opted_in") -> list[int]:
        return await make_members(self.session, self.church_id, count, consent=consent)

    async def join(self, group_id: int, member_ids: list[int]) -> None:
        await self.session.execute(
            text(
                "INSERT INTO group_members (group_id, member_id, church_id)"
                " SELECT :g, unnest(CAST(:m AS bigint[])), :c"
            ),
            {"g": group_id, "m": member_ids, "c": self.church_id},
        )
        await self.session.commit()

    async def message(
        self,
        target_type: str,
        target_ids: list[int],
        recipients: dict[int, str],
        *,
        created_at: datetime | None = None,
        kind: str = "broadcast",
    ) -> int:
        """A message with `recipients` {member id: status}, created at `created_at` (now)."""
        message_id = (
            await self.session.execute(
                text(
                    "INSERT INTO messages (church_id, content, kind, target_type, target_ids,"
                    " encoding, segments, status, recipient_count, created_at)"
                    " VALUES (:c, 'Hello', :kind, :tt, CAST(:ids AS bigint[]), 'GSM-7', 1,"
                    " 'sending', :n, COALESCE(CAST(:at AS timestamptz), now()))"
                    " RETURNING id"
                ),
                {
                    "c": self.church_id,
                    "kind": kind,
                    "tt": target_type,
                    "ids": target_ids,
                    "n": len(recipients),
                    "at": created_at,
                },
            )
        ).scalar_one()
        if recipients:
            await self.session.execute(
                text(
                    "INSERT INTO message_recipients (message_id, member_id, church_id, phone,"
                    " status) SELECT :msg, r.member_id, :c, '+12025550100', r.status"
                    " FROM unnest(CAST(:members AS bigint[]), CAST(:statuses AS text[]))"
                    " AS r(member_id, status)"
                ),
                {
                    "msg": message_id,
                    "c": self.church_id,
                    "members": list(recipients),
                    "statuses": list(recipients.values()),
                },
            )
        await self.session.commit()
        return int(message_id)

    async def usage(self, month: date, texts: int, segments: int) -> None:
        await self.session.execute(
            text(
                "INSERT INTO usage (church_id, month, texts, segments) VALUES (:c, :m, :t, :s)"
                " ON CONFLICT (church_id, month) DO UPDATE SET texts = :t, segments = :s"
            ),
            {"c": self.church_id, "m": month, "t": texts, "s": segments},
        )
        await self.session.commit()


@pytest.fixture
def seed(session: AsyncSession) -> Any:
    """`seed(tenant)` → a Seed writing that tenant's rows."""

    def make(tenant: Tenant) -> Seed:
        return Seed(session, tenant.church_id)

    return make


def this_month() -> date:
    now = datetime.now(UTC)
    return date(now.year, now.month, 1)


@dataclass
class Dataset:
    """The reference church of the stats tests (numbers in test_stats_api.py)."""

    branches: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def dataset(seed: Any, tenant: Tenant) -> Dataset:
    """Branches A (groups A1, A2), B (B1), C (none); members m1..m7:
    A1 = m1 m2 m3, A2 = m3 m4 (A: 4 distinct), B1 = m4 m5 m6 (B: 3); m6 and m7 opted out.
    Messages this month (now) and one 40 days ago; recipients by status as below."""
    s: Seed = seed(tenant)
    d = Dataset()
    for name in ("A", "B", "C"):
        d.branches[name] = await s.branch(name)
    d.groups["A1"] = await s.group(d.branches["A"], "A1")
    d.groups["A2"] = await s.group(d.branches["A"], "A2")
    d.groups["B1"] = await s.group(d.branches["B"], "B1")
    m = await s.members(5) + await s.members(2, consent="opted_out")
    d.members = m
    m1, m2, m3, m4, m5, m6, _m7 = m
    await s.join(d.groups["A1"], [m1, m2, m3])
    await s.join(d.groups["A2"], [m3, m4])
    await s.join(d.groups["B1"], [m4, m5, m6])
    a, b = d.branches["A"], d.branches["B"]
    d.messages["to_A"] = await s.message(
        "branches", [a], {m1: "delivered", m2: "delivered", m3: "failed", m4: "sent"}
    )
    # Two groups of A and one of B: once for A, once for B.
    d.messages["to_groups"] = await s.message(
        "groups",
        [d.groups["A1"], d.groups["A2"], d.groups["B1"]],
        {m1: "delivered", m2: "undelivered", m3: "delivered", m4: "delivered", m5: "skipped"},
    )
    d.messages["to_all"] = await s.message(
        "all",
        [],
        {m1: "delivered", m2: "delivered", m3: "delivered", m4: "delivered", m5: "delivered"},
    )
    d.messages["to_A_and_B"] = await s.message(
        "branches", [a, b], {m1: "sending", m5: "queued", m4: "delivered"}
    )
    d.messages["to_member"] = await s.message("members", [m1], {m1: "delivered"}, kind="reply")
    d.messages["old_to_B"] = await s.message(
        "branches", [b], {m4: "delivered"}, created_at=datetime.now(UTC) - timedelta(days=40)
    )
    await s.usage(this_month(), 123, 130)
    return d
