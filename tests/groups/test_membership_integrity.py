"""group_members has no foreign keys (their per-row checks dominated bulk imports); statement
triggers give the same guarantees. Every guarantee of the old ON DELETE CASCADE foreign keys is
proven here: rows must reference a group and member of their own church, deletes cascade, and a
delete racing an insert can never leave an orphan membership."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from fixtures.factories import Tenant, make_branch, make_group, make_members, make_tenant
from fixtures.locks import backend_pid, wait_until_blocked

JOIN = "INSERT INTO group_members (group_id, member_id, church_id) VALUES (:g, :m, :c)"
BULK = (
    "INSERT INTO group_members (group_id, member_id, church_id)"
    " SELECT :g, unnest(CAST(:m AS bigint[])), :c"
)


async def _memberships(session: AsyncSession, column: str, value: int) -> int:
    n = await session.execute(
        text(f"SELECT count(*) FROM group_members WHERE {column} = :v"), {"v": value}
    )
    return int(n.scalar_one())


async def _fails_as_fk_violation(session: AsyncSession, sql: str, **params: Any) -> None:
    savepoint = await session.begin_nested()
    with pytest.raises(IntegrityError) as caught:
        await session.execute(text(sql), params)
    await savepoint.rollback()
    assert caught.value.orig.sqlstate == "23503"  # type: ignore[union-attr]


async def test_rows_must_reference_a_group_and_member_of_their_church(
    session: AsyncSession, tenant: Tenant
) -> None:
    c = tenant.church_id
    g = await make_group(session, c, await make_branch(session, c))
    [m] = await make_members(session, c, 1)
    other = await make_tenant(session)
    og = await make_group(session, other.church_id, await make_branch(session, other.church_id))
    [om] = await make_members(session, other.church_id, 1)

    await _fails_as_fk_violation(session, JOIN, g=g, m=10**12, c=c)  # no such member
    await _fails_as_fk_violation(session, JOIN, g=10**12, m=m, c=c)  # no such group
    await _fails_as_fk_violation(session, JOIN, g=og, m=m, c=c)  # another church's group
    await _fails_as_fk_violation(session, JOIN, g=g, m=om, c=c)  # another church's member
    await _fails_as_fk_violation(session, JOIN, g=g, m=m, c=other.church_id)  # wrong church
    # One bad row among many fails the whole statement.
    many = await make_members(session, c, 1500)
    await _fails_as_fk_violation(session, BULK, g=g, m=[*many, om], c=c)
    assert await _memberships(session, "group_id", g) == 0

    await session.execute(text(BULK), {"g": g, "m": many, "c": c})
    assert await _memberships(session, "group_id", g) == 1500
    # Updating other columns checks nothing; re-pointing a row is checked like an insert.
    await session.execute(
        text("UPDATE group_members SET welcome_sent_at = now() WHERE group_id = :g"), {"g": g}
    )
    await _fails_as_fk_violation(
        session,
        "UPDATE group_members SET group_id = :og WHERE group_id = :g AND member_id = :m",
        og=og,
        g=g,
        m=many[0],
    )
    g2 = await make_group(session, c, await make_branch(session, c))
    await session.execute(
        text("UPDATE group_members SET group_id = :g2 WHERE group_id = :g AND member_id = :m"),
        {"g2": g2, "g": g, "m": many[0]},
    )
    assert await _memberships(session, "group_id", g2) == 1


async def test_deletes_cascade(session: AsyncSession, tenant: Tenant) -> None:
    c = tenant.church_id
    b = await make_branch(session, c)
    g1, g2 = await make_group(session, c, b), await make_group(session, c, b)
    members = await make_members(session, c, 4)
    for g in (g1, g2):
        await session.execute(text(BULK), {"g": g, "m": members, "c": c})

    await session.execute(text("DELETE FROM members WHERE id = :m"), {"m": members[0]})
    assert await _memberships(session, "member_id", members[0]) == 0
    assert await _memberships(session, "group_id", g1) == 3

    await session.execute(text("DELETE FROM groups WHERE id = :g"), {"g": g1})
    assert await _memberships(session, "group_id", g1) == 0
    assert await _memberships(session, "group_id", g2) == 3
    counted = await session.execute(
        text("SELECT sum(n) FROM branch_member_counts WHERE branch_id = :b"), {"b": b}
    )
    assert counted.scalar_one() == 3

    await session.execute(text("DELETE FROM churches WHERE id = :c"), {"c": c})
    assert await _memberships(session, "church_id", c) == 0


async def test_member_deleted_during_an_import_leaves_no_orphan(
    engine: AsyncEngine,
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    """The insert locks the members it references (FOR KEY SHARE, as a foreign key does): a
    delete of one waits for the insert's transaction, then its cascade removes the membership.
    A delete that went first makes the insert fail instead of referencing a deleted member."""
    tenant = await committed_tenants()
    c = tenant.church_id
    g = await make_group(committed_session, c, await make_branch(committed_session, c))
    m1, m2 = await make_members(committed_session, c, 2)
    delete = text("DELETE FROM members WHERE id = :m")

    async with engine.connect() as importer, engine.connect() as deleter:
        await importer.begin()
        await deleter.begin()
        importer_pid, deleter_pid = await backend_pid(importer), await backend_pid(deleter)
        await importer.execute(text(BULK), {"g": g, "m": [m1], "c": c})
        racing = asyncio.create_task(deleter.execute(delete, {"m": m1}))
        # Waiting for the import's lock on the member.
        await wait_until_blocked(racing, deleter_pid, importer_pid, committed_session)
        await importer.commit()
        await racing
        await deleter.commit()
    assert await _memberships(committed_session, "member_id", m1) == 0

    async with engine.connect() as importer, engine.connect() as deleter:
        await importer.begin()
        await deleter.begin()
        importer_pid, deleter_pid = await backend_pid(importer), await backend_pid(deleter)
        await deleter.execute(delete, {"m": m2})
        racing = asyncio.create_task(importer.execute(text(BULK), {"g": g, "m": [m2], "c": c}))
        # Waiting for the delete.
        await wait_until_blocked(racing, importer_pid, deleter_pid, committed_session)
        await deleter.commit()
        with pytest.raises(IntegrityError):
            await racing
        await importer.rollback()
    assert await _memberships(committed_session, "member_id", m2) == 0
    await committed_session.commit()
