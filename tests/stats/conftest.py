"""Hand-built stats data: rows inserted straight through SQL with chosen statuses by the suite's
seeder (the triggers fill message_status_counts and branch_member_counts as in production)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from fixtures.factories import SeedFor, Tenant


@dataclass
class Dataset:
    """The reference church of the stats tests (numbers in test_stats_api.py)."""

    branches: dict[str, int] = field(default_factory=dict)
    groups: dict[str, int] = field(default_factory=dict)
    members: list[int] = field(default_factory=list)
    messages: dict[str, int] = field(default_factory=dict)


@pytest.fixture
async def dataset(seed: SeedFor, tenant: Tenant) -> Dataset:
    """Branches A (groups A1, A2), B (B1), C (none); members m1..m7:
    A1 = m1 m2 m3, A2 = m3 m4 (A: 4 distinct), B1 = m4 m5 m6 (B: 3); m6 and m7 opted out.
    Messages this month (now) and one 40 days ago; recipients by status as below."""
    s = seed(tenant)
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
    await s.usage(123, 130)
    return d
