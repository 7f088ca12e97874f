from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Row, func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Branch, BranchMemberCount, Group


@dataclass(frozen=True, slots=True)
class BranchContents:
    """What deleting a branch deletes with it (its members stay)."""

    groups: int
    memberships: int
    pending_welcome_texts: int
    deleted: bool


class BranchRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    def _with_counts(self) -> Any:
        groups = (
            select(func.count())
            .where(Group.branch_id == Branch.id)
            .correlate(Branch)
            .scalar_subquery()
        )
        # Kept by triggers (models.BranchMemberCount): a sum of a few shard rows instead of
        # counting distinct memberships of every group of the branch.
        members = (
            select(func.coalesce(func.sum(BranchMemberCount.n), 0).cast(BigInteger))
            .where(BranchMemberCount.branch_id == Branch.id)
            .correlate(Branch)
            .scalar_subquery()
        )
        return select(Branch, groups.label("group_count"), members.label("member_count")).where(
            Branch.church_id == self.church_id
        )

    async def list(self, *, after_id: int | None, limit: int) -> list[Row[Branch, int, int]]:
        stmt = self._with_counts()
        if after_id is not None:
            stmt = stmt.where(Branch.id > after_id)
        stmt = stmt.order_by(Branch.id).limit(limit + 1)
        return list((await self.session.execute(stmt)).all())

    async def get_with_counts(self, branch_id: int) -> Row[Branch, int, int] | None:
        stmt = self._with_counts().where(Branch.id == branch_id)
        return (await self.session.execute(stmt)).one_or_none()

    async def count(self) -> int:
        stmt = select(func.count()).where(Branch.church_id == self.church_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def exists(self, branch_id: int) -> bool:
        stmt = select(Branch.id).where(Branch.church_id == self.church_id, Branch.id == branch_id)
        return (await self.session.execute(stmt)).first() is not None

    async def create(self, values: dict[str, Any]) -> Branch:
        stmt = insert(Branch).values(church_id=self.church_id, **values).returning(Branch)
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, branch_id: int, values: dict[str, Any]) -> bool:
        stmt = (
            update(Branch)
            .where(Branch.church_id == self.church_id, Branch.id == branch_id)
            .values(**values)
            .returning(Branch.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def delete(self, branch_id: int, *, cascade: bool) -> BranchContents | None:
        """Count what the branch holds and delete it, with its groups, their memberships and
        pending welcome texts, only when it holds no group or `cascade`; None when it is not
        this church's. Two statements: the lock comes first so that the count, read in the
        second statement's newer snapshot, includes any group added until we held the lock
        (adding a group takes a key-share lock on its branch), and nothing is deleted unseen."""
        locked = select(Branch.id).where(Branch.church_id == self.church_id, Branch.id == branch_id)
        if (await self.session.execute(locked.with_for_update())).first() is None:
            return None
        stmt = text(
            """
            WITH contents AS (
                SELECT count(DISTINCT g.id) AS groups,
                       count(gm.group_id) AS memberships,
                       count(gm.group_id) FILTER (WHERE g.welcome_enabled
                           AND gm.welcome_due_at IS NOT NULL AND gm.welcome_sent_at IS NULL)
                           AS welcomes
                FROM groups g LEFT JOIN group_members gm ON gm.group_id = g.id
                WHERE g.church_id = :church_id AND g.branch_id = :branch_id
            ),
            gone AS (
                DELETE FROM branches b USING contents
                WHERE b.church_id = :church_id AND b.id = :branch_id
                  AND (CAST(:cascade AS boolean) OR contents.groups = 0)
                RETURNING b.id
            )
            SELECT groups, memberships, welcomes, EXISTS (SELECT 1 FROM gone) FROM contents
            """
        )
        row = (
            await self.session.execute(
                stmt, {"church_id": self.church_id, "branch_id": branch_id, "cascade": cascade}
            )
        ).one()
        return BranchContents(int(row[0]), int(row[1]), int(row[2]), bool(row[3]))
