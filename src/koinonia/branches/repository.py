from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Row, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Branch, BranchMemberCount, Group


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

    async def delete(self, branch_id: int) -> bool:
        stmt = (
            delete(Branch)
            .where(Branch.church_id == self.church_id, Branch.id == branch_id)
            .returning(Branch.id)
        )
        return (await self.session.execute(stmt)).first() is not None
