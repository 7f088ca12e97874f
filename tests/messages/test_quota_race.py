"""Two sends that together exceed the month's quota, at the same moment: exactly one wins."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from fixtures.factories import Tenant, make_members


async def test_concurrent_sends_cannot_both_overrun_quota(
    committed_client: httpx.AsyncClient,
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Tenant]],
) -> None:
    church = await committed_tenants(plan="starter", status="active")  # 1,000 texts a month
    await make_members(committed_session, church.church_id, 600)
    body = {"content": "Service moved to 11am", "target": {"type": "all"}}
    for _ in range(3):  # a few rounds, so an interleaving that lets both through would show
        await committed_session.execute(
            text("DELETE FROM usage WHERE church_id = :c"), {"c": church.church_id}
        )
        await committed_session.commit()
        first, second = await asyncio.gather(
            committed_client.post("/api/v1/messages", json=body, headers=church.headers),
            committed_client.post("/api/v1/messages", json=body, headers=church.headers),
        )
        assert sorted([first.status_code, second.status_code]) == [202, 402]
        used = await committed_session.execute(
            text("SELECT texts FROM usage WHERE church_id = :c"), {"c": church.church_id}
        )
        assert used.scalar_one() == 600
        await committed_session.commit()
