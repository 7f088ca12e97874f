from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth import context_cache
from koinonia.auth.context import AuthContext
from koinonia.auth.security import hash_password
from koinonia.churches.repository import AdminRepository, ChurchRepository
from koinonia.churches.schemas import AdminInvite, AdminInvited, AdminOut, ChurchOut, ChurchPatch
from koinonia.db.effects import church_changed
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import Conflict, NotFound, PlanLimitReached, ValidationFailed
from koinonia.kit.pagination import ID, CursorSpec
from koinonia.recurring.service import reschedule_church

ADMINS_CURSOR = CursorSpec("admins", (ID,))


async def get_church(session: AsyncSession, auth: AuthContext) -> ChurchOut:
    church = await ChurchRepository(session, church_id=auth.church_id).get()
    if church is None:
        raise NotFound("church", auth.church_id)
    return ChurchOut.model_validate(church)


async def update_church(session: AsyncSession, auth: AuthContext, data: ChurchPatch) -> ChurchOut:
    values = data.model_dump(exclude_unset=True)
    repo = ChurchRepository(session, church_id=auth.church_id)
    if not values:
        return await get_church(session, auth)
    try:
        church = await repo.update(values)
    except IntegrityError as exc:
        if constraint_of(exc) == "uq_churches_sms_number":
            raise Conflict(
                "this SMS number belongs to another church", fields={"sms_number": "taken"}
            ) from None
        raise
    if church is None:
        raise NotFound("church", auth.church_id)
    church_changed(session, auth.church_id)
    if "timezone" in values:
        # Schedules fire at a time of day in the church's timezone: recompute them in this
        # transaction, or each would fire once more at the old zone's time.
        await reschedule_church(session, auth.church_id, church.timezone)
    return ChurchOut.model_validate(church)


async def list_admins(
    session: AsyncSession, auth: AuthContext, *, limit: int, cursor: str | None
) -> tuple[list[AdminOut], str | None]:
    key = ADMINS_CURSOR.decode(cursor)
    rows = await AdminRepository(session, church_id=auth.church_id).list(
        after_id=key[0] if key else None, limit=limit
    )
    items, next_cursor = ADMINS_CURSOR.page(rows, limit, lambda a: (a.id,))
    return [AdminOut.model_validate(a) for a in items], next_cursor


async def invite_admin(session: AsyncSession, auth: AuthContext, data: AdminInvite) -> AdminInvited:
    repo = AdminRepository(session, church_id=auth.church_id)
    limit = auth.plan.co_admins
    if limit is not None:
        await ChurchRepository(session, church_id=auth.church_id).lock()
        used = await repo.count_co_admins()
        if used >= limit:
            raise PlanLimitReached("co-admins", limit=limit, usage=used)
    temporary = secrets.token_urlsafe(12)
    try:
        admin = await repo.create(
            {
                "email": str(data.email),
                "password_hash": await hash_password(temporary),
                "first_name": data.first_name,
                "last_name": data.last_name,
                "role": "CO_ADMIN",
                "must_change_password": True,
            }
        )
    except IntegrityError as exc:
        if constraint_of(exc) == "uq_admins_email_lower":
            raise Conflict("an account with this email exists", fields={"email": "taken"}) from None
        raise
    church_changed(session, auth.church_id)
    return AdminInvited(**AdminOut.model_validate(admin).model_dump(), temporary_password=temporary)


async def remove_admin(session: AsyncSession, auth: AuthContext, admin_id: int) -> None:
    repo = AdminRepository(session, church_id=auth.church_id)
    admin = await repo.get(admin_id)
    if admin is None:
        raise NotFound("admin", admin_id)
    if admin.role == "PRIMARY":
        raise ValidationFailed.field("admin_id", "the primary admin cannot be removed")
    context_cache.end_after_commit(session, await repo.delete(admin_id))
    church_changed(session, auth.church_id)
