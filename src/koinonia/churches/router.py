from __future__ import annotations

from fastapi import APIRouter, status

from koinonia.auth.deps import Auth, DbSession, PrimaryAuth
from koinonia.churches import service
from koinonia.churches.schemas import AdminInvite, AdminInvited, AdminOut, ChurchOut, ChurchPatch
from koinonia.kit.openapi import AUTHENTICATED, PRIMARY_ONLY, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit

router = APIRouter(tags=["church"], responses=AUTHENTICATED)


@router.get("/church", response_model=ChurchOut)
async def get_church(auth: Auth, session: DbSession) -> ChurchOut:
    return await service.get_church(session, auth)


@router.patch(
    "/church",
    response_model=ChurchOut,
    responses={
        **PRIMARY_ONLY,
        **errors({409: "The SMS number belongs to another church (`conflict`)."}),
    },
)
async def update_church(data: ChurchPatch, auth: PrimaryAuth, session: DbSession) -> ChurchOut:
    """Church settings (PRIMARY admin only): profile, number, conversation mode, quiet hours."""
    return await service.update_church(session, auth, data)


@router.get("/admins", response_model=Page[AdminOut])
async def list_admins(
    auth: Auth, session: DbSession, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[AdminOut]:
    items, next_cursor = await service.list_admins(session, auth, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/admins",
    status_code=status.HTTP_201_CREATED,
    response_model=AdminInvited,
    responses={
        **PRIMARY_ONLY,
        **errors(
            {
                402: "The plan's co-admin limit is reached (`plan_limit_reached`).",
                409: "An account with this email exists (`conflict`).",
            }
        ),
    },
)
async def invite_admin(data: AdminInvite, auth: PrimaryAuth, session: DbSession) -> AdminInvited:
    """Invite a CO_ADMIN (PRIMARY only). The response carries a one-time temporary password;
    402 when the plan's co-admin limit is reached."""
    return await service.invite_admin(session, auth, data)


@router.delete(
    "/admins/{admin_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**PRIMARY_ONLY, **not_found("admin")},
)
async def remove_admin(admin_id: Id, auth: PrimaryAuth, session: DbSession) -> None:
    """Remove a co-admin (PRIMARY only); their sessions end with the account."""
    await service.remove_admin(session, auth, admin_id)
