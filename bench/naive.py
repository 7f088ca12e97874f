"""The seed's "current" patterns (week2-plan.md), written the way the old code ran them: a query
per branch / per group / per message / per row. Run on the same data as ours, in the same run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def branch_stats(session: AsyncSession, church_id: int) -> list[dict[str, Any]]:
    """getBranchStats(): branches, then per branch its groups and members, then per message
    that targeted the branch its recipients."""
    out = []
    branches = (
        await session.execute(
            text("SELECT id, name FROM branches WHERE church_id = :c"), {"c": church_id}
        )
    ).all()
    for branch_id, name in branches:
        groups = (
            await session.execute(
                text("SELECT id FROM groups WHERE branch_id = :b"), {"b": branch_id}
            )
        ).all()
        members: set[int] = set()
        for (group_id,) in groups:
            rows = await session.execute(
                text("SELECT member_id FROM group_members WHERE group_id = :g"), {"g": group_id}
            )
            members.update(r[0] for r in rows)
        messages = (
            await session.execute(
                text(
                    "SELECT id FROM messages WHERE church_id = :c AND :b = ANY(target_ids)"
                    " AND target_type = 'branches'"
                ),
                {"c": church_id, "b": branch_id},
            )
        ).all()
        texts = delivered = failed = 0
        for (message_id,) in messages:
            statuses = await session.execute(
                text("SELECT status FROM message_recipients WHERE message_id = :m"),
                {"m": message_id},
            )
            for (status,) in statuses:
                texts += 1
                delivered += status == "delivered"
                failed += status in ("failed", "undelivered")
        out.append(
            {
                "id": branch_id,
                "name": name,
                "groups": len(groups),
                "members": len(members),
                "texts": texts,
                "delivered": delivered,
                "failed": failed,
            }
        )
    return out


async def import_members(
    session: AsyncSession, church_id: int, group_id: int, rows: list[tuple[str, str, str]]
) -> int:
    """importMembers(): per row, look the member up, create it, add the membership."""
    created = 0
    for first, last, phone in rows:
        found = (
            await session.execute(
                text("SELECT id FROM members WHERE church_id = :c AND phone = :p"),
                {"c": church_id, "p": phone},
            )
        ).scalar_one_or_none()
        if found is None:
            found = (
                await session.execute(
                    text(
                        "INSERT INTO members (church_id, first_name, last_name, phone)"
                        " VALUES (:c, :f, :l, :p) RETURNING id"
                    ),
                    {"c": church_id, "f": first, "l": last, "p": phone},
                )
            ).scalar_one()
            created += 1
        await session.execute(
            text(
                "INSERT INTO group_members (group_id, member_id, church_id) VALUES (:g, :m, :c)"
                " ON CONFLICT DO NOTHING"
            ),
            {"g": group_id, "m": found, "c": church_id},
        )
    return created


async def create_recipients(
    session: AsyncSession, church_id: int, message_id: int, limit: int
) -> int:
    """createMessage(): load the audience, then one INSERT per recipient."""
    members = (
        await session.execute(
            text(
                "SELECT id, phone FROM members WHERE church_id = :c AND consent = 'opted_in'"
                " ORDER BY id LIMIT :n"
            ),
            {"c": church_id, "n": limit},
        )
    ).all()
    for member_id, phone in members:
        await session.execute(
            text(
                "INSERT INTO message_recipients (message_id, member_id, church_id, phone)"
                " VALUES (:m, :mem, :c, :p)"
            ),
            {"m": message_id, "mem": member_id, "c": church_id, "p": phone},
        )
    return len(members)


async def search(session: AsyncSession, church_id: int, q: str) -> list[int]:
    """The seed's search: every member of the church loaded, filtered in the application."""
    rows = await session.execute(
        text("SELECT id, first_name, last_name, phone FROM members WHERE church_id = :c"),
        {"c": church_id},
    )
    needle = q.lower()
    return [r[0] for r in rows if needle in f"{r[1]} {r[2]}".lower() or needle in r[3]][:50]


async def message_stats(session: AsyncSession, church_id: int, days: int) -> dict[str, int]:
    """getMessageStats(): messages of the window, then each message's recipients."""
    totals: dict[str, int] = {}
    messages = (
        await session.execute(
            text(
                "SELECT id FROM messages WHERE church_id = :c"
                " AND created_at > now() - make_interval(days => :d)"
            ),
            {"c": church_id, "d": days},
        )
    ).all()
    for (message_id,) in messages:
        rows = await session.execute(
            text("SELECT status FROM message_recipients WHERE message_id = :m"), {"m": message_id}
        )
        for (status,) in rows:
            totals[status] = totals.get(status, 0) + 1
    return totals
