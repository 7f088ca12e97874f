from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.churches.repository import ChurchRepository
from koinonia.db.effects import church_changed
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import Conflict, NotFound
from koinonia.kit.pagination import ID, CursorSpec
from koinonia.messages import limits
from koinonia.templates.repository import TemplateRepository
from koinonia.templates.schemas import TemplateIn, TemplateOut, TemplatePatch

TEMPLATES_CURSOR = CursorSpec("templates", (ID,))


def _name_taken(exc: IntegrityError) -> Conflict | None:
    if constraint_of(exc) == "uq_templates_church_id_name":
        return Conflict("a template with this name exists", fields={"name": "taken"})
    return None


async def _check_length(session: AsyncSession, church_id: int, content: str) -> None:
    """422 on `content` when even the shortest text the template can give (church name filled,
    names left empty) is longer than the church's provider accepts: every send from it would
    be refused. A template has no audience; the full check runs when it is sent."""
    church = await ChurchRepository(session, church_id=church_id).get()
    if church is None:
        raise NotFound("church", church_id)
    limits.check_content_alone(church.sms_provider, church.name, content, field="content")


async def list_templates(
    session: AsyncSession,
    auth: AuthContext,
    *,
    category: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[TemplateOut], str | None]:
    key = TEMPLATES_CURSOR.decode(cursor)
    rows = await TemplateRepository(session, church_id=auth.church_id).list(
        category=category, after_id=key[0] if key else None, limit=limit
    )
    items, next_cursor = TEMPLATES_CURSOR.page(rows, limit, lambda t: (t.id,))
    return [TemplateOut.model_validate(t) for t in items], next_cursor


async def get_template(session: AsyncSession, auth: AuthContext, template_id: int) -> TemplateOut:
    template = await TemplateRepository(session, church_id=auth.church_id).get(template_id)
    if template is None:
        raise NotFound("template", template_id)
    return TemplateOut.model_validate(template)


async def create_template(
    session: AsyncSession, auth: AuthContext, data: TemplateIn
) -> TemplateOut:
    await _check_length(session, auth.church_id, data.content)
    repo = TemplateRepository(session, church_id=auth.church_id)
    try:
        template = await repo.create(data.model_dump())
    except IntegrityError as exc:
        raise _name_taken(exc) or exc from None
    church_changed(session, auth.church_id)
    return TemplateOut.model_validate(template)


async def update_template(
    session: AsyncSession, auth: AuthContext, template_id: int, data: TemplatePatch
) -> TemplateOut:
    values = data.model_dump(exclude_unset=True)
    if not values:
        return await get_template(session, auth, template_id)
    if "content" in values:
        await _check_length(session, auth.church_id, values["content"])
    repo = TemplateRepository(session, church_id=auth.church_id)
    try:
        template = await repo.update(template_id, values)
    except IntegrityError as exc:
        raise _name_taken(exc) or exc from None
    if template is None:
        raise NotFound("template", template_id)
    church_changed(session, auth.church_id)
    return TemplateOut.model_validate(template)


async def delete_template(session: AsyncSession, auth: AuthContext, template_id: int) -> None:
    if not await TemplateRepository(session, church_id=auth.church_id).delete(template_id):
        raise NotFound("template", template_id)
    church_changed(session, auth.church_id)
