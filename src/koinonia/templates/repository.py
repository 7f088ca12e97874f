from __future__ import annotations

from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Template


class TemplateRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def list(
        self, *, category: str | None, after_id: int | None, limit: int
    ) -> list[Template]:
        stmt = select(Template).where(Template.church_id == self.church_id)
        if category is not None:
            stmt = stmt.where(Template.category == category)
        if after_id is not None:
            stmt = stmt.where(Template.id > after_id)
        stmt = stmt.order_by(Template.id).limit(limit + 1)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, template_id: int) -> Template | None:
        stmt = select(Template).where(
            Template.church_id == self.church_id, Template.id == template_id
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def create(self, values: dict[str, Any]) -> Template:
        stmt = insert(Template).values(church_id=self.church_id, **values).returning(Template)
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, template_id: int, values: dict[str, Any]) -> Template | None:
        stmt = (
            update(Template)
            .where(Template.church_id == self.church_id, Template.id == template_id)
            .values(**values)
            .returning(Template)
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def delete(self, template_id: int) -> bool:
        stmt = (
            delete(Template)
            .where(Template.church_id == self.church_id, Template.id == template_id)
            .returning(Template.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def use(self, template_id: int) -> str | None:
        """The template's content for a send, counting the use (one statement)."""
        stmt = (
            update(Template)
            .where(Template.church_id == self.church_id, Template.id == template_id)
            .values(usage_count=Template.usage_count + 1)
            .returning(Template.content)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()
