"""branch_member_counts (maintained by triggers) always equals the distinct members of each
branch's groups, through every way memberships change, in bulk and concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members
from fixtures.locks import backend_pid, wait_until_blocked

COUNTED = text(
    "SELECT c.branch_id, sum(c.n)::int FROM branch_member_counts c"
    " JOIN branches b ON b.id = c.branch_id WHERE b.church_id = :c"
    " GROUP BY c.branch_id HAVING sum(c.n) <> 0"
)
ACTUAL = text(
    "SELECT g.branch_id, count(DISTINCT gm.member_id)::int FROM group_members gm"
    " JOIN groups g ON g.id = gm.group_id WHERE g.church_id = :c GROUP BY g.branch_id"
)


async def counts(session: AsyncSession, church_id: int) -> dict[int, int]:
    counted = dict((await session.execute(COUNTED, {"c": church_id})).all())
    actual = dict((await session.execute(ACTUAL, {"c": church_id})).all())
    assert counted == actual
    return counted


async def run(session: AsyncSession, sql: str, **params: Any) -> None:
    await session.execute(text(sql), params)


async def test_counts_follow_every_membership_change(session: AsyncSession, tenant: Tenant) -> None:
    c = tenant.church_id
    b1, b2 = await make_branch(session, c), await make_branch(session, c)
    g1, g2 = await make_group(session, c, b1), await make_group(session, c, b1)
    g3 = await make_group(session, c, b2)
    m = await make_members(session, c, 6)
    join = "INSERT INTO group_members (group_id, member_id, church_id) VALUES (:g, :m, :c)"

    for g, member in [(g1, m[0]), (g1, m[1]), (g2, m[1]), (g2, m[2]), (g3, m[2])]:
        await run(session, join, g=g, m=member, c=c)
    assert await counts(session, c) == {b1: 3, b2: 1}

    # One statement adding a member to two groups of one branch counts them once.
    await run(
        session,
        "INSERT INTO group_members (group_id, member_id, church_id)"
        " VALUES (:g1, :m, :c), (:g2, :m, :c), (:g3, :m, :c)",
        g1=g1,
        g2=g2,
        g3=g3,
        m=m[3],
        c=c,
    )
    assert await counts(session, c) == {b1: 4, b2: 2}

    # Leaving one of two groups of a branch: still a member; leaving the last: not.
    leave = "DELETE FROM group_members WHERE group_id = :g AND member_id = :m"
    await run(session, leave, g=g1, m=m[1])
    assert await counts(session, c) == {b1: 4, b2: 2}
    await run(session, leave, g=g2, m=m[1])
    assert await counts(session, c) == {b1: 3, b2: 2}

    # Other updates change nothing; re-pointing a membership moves it.
    await run(session, "UPDATE group_members SET welcome_sent_at = now() WHERE church_id = :c", c=c)
    assert await counts(session, c) == {b1: 3, b2: 2}
    await run(
        session,
        "UPDATE group_members SET group_id = :g3 WHERE group_id = :g1 AND member_id = :m",
        g1=g1,
        g3=g3,
        m=m[0],
    )
    assert await counts(session, c) == {b1: 2, b2: 3}

    # A group moving to another branch takes its members along.
    await run(session, "UPDATE groups SET branch_id = :b2 WHERE id = :g2", b2=b2, g2=g2)
    assert await counts(session, c) == {b1: 1, b2: 3}

    # A member deleted (memberships cascade), a group deleted (cascade), a branch deleted.
    await run(session, "DELETE FROM members WHERE id = :m", m=m[2])
    assert await counts(session, c) == {b1: 1, b2: 2}
    await run(session, "DELETE FROM groups WHERE id = :g", g=g3)
    assert await counts(session, c) == {b1: 1, b2: 1}
    await run(session, "DELETE FROM branches WHERE id = :b", b=b2)
    assert await counts(session, c) == {b1: 1}
    left = await session.execute(
        text("SELECT count(*) FROM branch_member_counts WHERE branch_id = :b"), {"b": b2}
    )
    assert left.scalar_one() == 0


async def test_bulk_changes(session: AsyncSession, tenant: Tenant) -> None:
    """Over a thousand memberships in one statement: into one group (an import), the members
    not in the branch's other groups; into several, one pass over the branch."""
    c = tenant.church_id
    b = await make_branch(session, c)
    g1, g2 = await make_group(session, c, b), await make_group(session, c, b)
    members = await make_members(session, c, 1500)
    bulk = (
        "INSERT INTO group_members (group_id, member_id, church_id)"
        " SELECT :g, unnest(CAST(:m AS bigint[])), :c"
    )
    await run(session, bulk, g=g1, m=members[:1200], c=c)
    assert await counts(session, c) == {b: 1200}
    await run(session, bulk, g=g2, m=members[600:], c=c)  # 600 already in g1
    assert await counts(session, c) == {b: 1500}
    await run(session, "DELETE FROM group_members WHERE group_id = :g", g=g1)
    assert await counts(session, c) == {b: 900}
    await run(session, "DELETE FROM group_members WHERE group_id = :g", g=g2)
    assert await counts(session, c) == {}

    # Several groups and branches in one statement, both ways.
    b2 = await make_branch(session, c)
    g3 = await make_group(session, c, b2)
    await run(session, bulk, g=g1, m=members[:700], c=c)
    await run(
        session,
        "INSERT INTO group_members (group_id, member_id, church_id)"
        " SELECT g, m, :c FROM unnest(CAST(:g AS bigint[])) g, unnest(CAST(:m AS bigint[])) m"
        " ON CONFLICT DO NOTHING",
        g=[g1, g2, g3],
        m=members[500:1000],
        c=c,
    )
    assert await counts(session, c) == {b: 1000, b2: 500}
    await run(
        session,
        "DELETE FROM group_members WHERE group_id = ANY(CAST(:g AS bigint[]))"
        " AND member_id = ANY(CAST(:m AS bigint[]))",
        g=[g1, g3],
        m=members[:900],
    )
    assert await counts(session, c) == {b: 500, b2: 100}  # g2 keeps members 500-999


async def test_concurrent_joins_to_one_branch_count_once(
    engine: AsyncEngine,
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    """Two transactions add one member to two groups of a branch at the same time: the second
    waits for the first (per-branch lock) and sees its membership, so the member counts once."""
    tenant = await committed_tenants()
    c = tenant.church_id
    b = await make_branch(committed_session, c)
    g1, g2 = await make_group(committed_session, c, b), await make_group(committed_session, c, b)
    [m] = await make_members(committed_session, c, 1)
    join = text("INSERT INTO group_members (group_id, member_id, church_id) VALUES (:g, :m, :c)")
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        first_pid, second_pid = await backend_pid(first), await backend_pid(second)
        await first.execute(join, {"g": g1, "m": m, "c": c})
        racing = asyncio.create_task(second.execute(join, {"g": g2, "m": m, "c": c}))
        await wait_until_blocked(racing, second_pid, first_pid, committed_session)  # the branch
        await first.commit()
        await racing
        await second.commit()
    assert await counts(committed_session, c) == {b: 1}
    # And two concurrent leaves of its two groups: it leaves the branch once.
    leave = text("DELETE FROM group_members WHERE group_id = :g AND member_id = :m")
    async with engine.connect() as first, engine.connect() as second:
        await first.begin()
        await second.begin()
        first_pid, second_pid = await backend_pid(first), await backend_pid(second)
        await first.execute(leave, {"g": g1, "m": m})
        racing = asyncio.create_task(second.execute(leave, {"g": g2, "m": m}))
        await wait_until_blocked(racing, second_pid, first_pid, committed_session)  # the branch
        await first.commit()
        await racing
        await second.commit()
    assert await counts(committed_session, c) == {}
    await committed_session.commit()
