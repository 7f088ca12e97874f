from __future__ import annotations

from fastapi import APIRouter, status

from koinonia.auth.deps import Auth, DbSession
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit
from koinonia.templates import service
from koinonia.templates.schemas import Category, TemplateIn, TemplateOut, TemplatePatch

router = APIRouter(prefix="/templates", tags=["templates"], responses=AUTHENTICATED)

NOT_FOUND = not_found("template")
NAME_TAKEN = errors({409: "The church has a template with this name (`conflict`)."})


@router.get("", response_model=Page[TemplateOut])
async def list_templates(
    auth: Auth,
    session: DbSession,
    category: Category | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[TemplateOut]:
    """The church's message templates by id, optionally of one `category`."""
    items, next_cursor = await service.list_templates(
        session, auth, category=category, limit=limit, cursor=cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=TemplateOut, responses=NAME_TAKEN
)
async def create_template(data: TemplateIn, auth: Auth, session: DbSession) -> TemplateOut:
    """Saves a reusable message. 409 when the church already has a template with this name."""
    return await service.create_template(session, auth, data)


@router.get("/{template_id}", response_model=TemplateOut, responses=NOT_FOUND)
async def get_template(template_id: Id, auth: Auth, session: DbSession) -> TemplateOut:
    """One template, with how many messages used it."""
    return await service.get_template(session, auth, template_id)


@router.patch("/{template_id}", response_model=TemplateOut, responses={**NOT_FOUND, **NAME_TAKEN})
async def update_template(
    template_id: Id, data: TemplatePatch, auth: Auth, session: DbSession
) -> TemplateOut:
    """Changes the given fields (an empty body changes nothing); 409 when the new name is taken."""
    return await service.update_template(session, auth, template_id, data)


@router.delete("/{template_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_template(template_id: Id, auth: Auth, session: DbSession) -> None:
    """Deletes the template; messages already sent from it are not affected."""
    await service.delete_template(session, auth, template_id)
