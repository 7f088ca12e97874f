"""members has no foreign key to churches (its per-row check was ~270 ms of a 100,000-member
import); statement triggers keep its guarantees: a member's church exists (checked and locked
per statement, and on any change of church_id) and a deleted church's members are deleted."""

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

BULK = (
    "INSERT INTO members (church_id, first_name, phone)"
    " SELECT c, 'M', '+1303555' || lpad(n::text, 4, '0')"
    " FROM unnest(CAST(:churches AS bigint[])) WITH ORDINALITY AS t(c, n)"
)


async def _fails_as_fk_violation(session: AsyncSession, sql: str, **params: Any) -> None:
    savepoint = await session.begin_nested()
    with pytest.raises(IntegrityError) as caught:
        await session.execute(text(sql), params)
    await savepoint.rollback()
    assert caught.value.orig.sqlstate == "23503"  # type: ignore[union-attr]


async def _members(session: AsyncSession, church_id: int) -> int:
    n = await session.execute(
        text("SELECT count(*) FROM members WHERE church_id = :c"), {"c": church_id}
    )
    return int(n.scalar_one())


async def test_members_need_an_existing_church(session: AsyncSession, tenant: Tenant) -> None:
    c = tenant.church_id
    await _fails_as_fk_violation(session, BULK, churches=[10**12])
    await _fails_as_fk_violation(session, BULK, churches=[c, c, 10**12])  # one bad row of many
    assert await _members(session, c) == 0
    await session.execute(text(BULK), {"churches": [c] * 3})
    assert await _members(session, c) == 3
    # Moving a member to a church that does not exist fails; to one that does, works; other
    # updates are not checked.
    await _fails_as_fk_violation(
        session, "UPDATE members SET church_id = :x WHERE church_id = :c", x=10**12, c=c
    )
    other = await make_tenant(session)
    await session.execute(
        text("UPDATE members SET first_name = 'N' WHERE church_id = :c"), {"c": c}
    )
    await session.execute(
        text(
            "UPDATE members SET church_id = :o"
            " WHERE id = (SELECT min(id) FROM members WHERE church_id = :c)"
        ),
        {"o": other.church_id, "c": c},
    )
    assert (await _members(session, c), await _members(session, other.church_id)) == (2, 1)


async def test_deleting_a_church_deletes_its_members_and_theirs(
    session: AsyncSession, tenant: Tenant
) -> None:
    c = tenant.church_id
    other = await make_tenant(session)
    g = await make_group(session, c, await make_branch(session, c))
    members = await make_members(session, c, 3)
    await make_members(session, other.church_id, 2)
    await session.execute(
        text(
            "INSERT INTO group_members (group_id, member_id, church_id)"
            " SELECT :g, unnest(CAST(:m AS bigint[])), :c"
        ),
        {"g": g, "m": members, "c": c},
    )
    await session.execute(text("DELETE FROM churches WHERE id = :c"), {"c": c})
    assert await _members(session, c) == 0
    left = await session.execute(
        text("SELECT count(*) FROM group_members WHERE member_id = ANY(:m)"), {"m": members}
    )
    assert left.scalar_one() == 0
    assert await _members(session, other.church_id) == 2


async def test_church_deleted_during_an_import(
    engine: AsyncEngine,
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    """The insert locks the church FOR KEY SHARE: a delete of it waits, then its cascade
    removes the new members; a delete that went first makes the insert fail."""
    first, second = await committed_tenants(), await committed_tenants()
    delete = text("DELETE FROM churches WHERE id = :c")
    async with engine.connect() as importer, engine.connect() as deleter:
        await importer.begin()
        await deleter.begin()
        importer_pid, deleter_pid = await backend_pid(importer), await backend_pid(deleter)
        await importer.execute(text(BULK), {"churches": [first.church_id] * 2})
        racing = asyncio.create_task(deleter.execute(delete, {"c": first.church_id}))
        # Waiting for the import's lock on the church.
        await wait_until_blocked(racing, deleter_pid, importer_pid, committed_session)
        await importer.commit()
        await racing
        await deleter.commit()
    assert await _members(committed_session, first.church_id) == 0

    async with engine.connect() as importer, engine.connect() as deleter:
        await importer.begin()
        await deleter.begin()
        importer_pid, deleter_pid = await backend_pid(importer), await backend_pid(deleter)
        await deleter.execute(delete, {"c": second.church_id})
        racing = asyncio.create_task(importer.execute(text(BULK), {"churches": [second.church_id]}))
        # Waiting for the delete.
        await wait_until_blocked(racing, importer_pid, deleter_pid, committed_session)
        await deleter.commit()
        with pytest.raises(IntegrityError):
            await racing
        await importer.rollback()
    assert await _members(committed_session, second.church_id) == 0
    await committed_session.commit()
