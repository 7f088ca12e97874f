from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Admin, Church


async def create_church(session: AsyncSession, values: dict[str, Any]) -> Church:
    """The one unscoped write: a new tenant."""
    stmt = insert(Church).values(**values).returning(Church)
    return (await session.execute(stmt)).scalar_one()


class ChurchRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def get(self) -> Church | None:
        return await self.session.get(Church, self.church_id)

    async def lock(self) -> None:
        """Hold the church's row lock until the transaction ends: concurrent creators of
        branches, members, admins or sends for the same church queue here, so plan limits
        (count, then insert) hold exactly."""
        await self.session.execute(
            text("SELECT 1 FROM churches WHERE id = :cid FOR UPDATE"), {"cid": self.church_id}
        )

    async def update(self, values: dict[str, Any]) -> Church | None:
        stmt = update(Church).where(Church.id == self.church_id).values(**values).returning(Church)
        return (await self.session.execute(stmt)).scalar_one_or_none()


class AdminRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def list(self, *, after_id: int | None, limit: int) -> list[Admin]:
        stmt = select(Admin).where(Admin.church_id == self.church_id)
        if after_id is not None:
            stmt = stmt.where(Admin.id > after_id)
        stmt = stmt.order_by(Admin.id).limit(limit + 1)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, admin_id: int) -> Admin | None:
        stmt = select(Admin).where(Admin.church_id == self.church_id, Admin.id == admin_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def count_co_admins(self) -> int:
        stmt = select(func.count()).where(
            Admin.church_id == self.church_id, Admin.role == "CO_ADMIN"
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def create(self, values: dict[str, Any]) -> Admin:
        stmt = insert(Admin).values(church_id=self.church_id, **values).returning(Admin)
        return (await self.session.execute(stmt)).scalar_one()

    async def delete(self, admin_id: int) -> tuple[str, ...]:
        """Delete the admin (their sessions cascade); the ids of those sessions, read from the
        statement's snapshot, so cached contexts of them can be forgotten."""
        stmt = text(
            "WITH gone AS (DELETE FROM admins WHERE church_id = :c AND id = :a RETURNING id)"
            " SELECT s.id FROM auth_sessions s JOIN gone ON s.admin_id = gone.id"
        )
        rows = await self.session.execute(stmt, {"c": self.church_id, "a": admin_id})
        return tuple(str(r[0]) for r in rows)
