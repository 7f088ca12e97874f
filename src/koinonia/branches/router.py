from __future__ import annotations

from fastapi import APIRouter, Query, status

from koinonia.auth.deps import Auth, DbSession
from koinonia.branches import service
from koinonia.branches.schemas import BranchIn, BranchOut, BranchPatch
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit

router = APIRouter(prefix="/branches", tags=["branches"], responses=AUTHENTICATED)

NOT_FOUND = not_found("branch")
NAME_TAKEN = errors({409: "The church has a branch with this name (`conflict`)."})


@router.get("", response_model=Page[BranchOut])
async def list_branches(
    auth: Auth, session: DbSession, limit: Limit = DEFAULT_LIMIT, cursor: Cursor = None
) -> Page[BranchOut]:
    """Branches (campuses) by id, each with its group count and distinct member count."""
    items, next_cursor = await service.list_branches(session, auth, limit=limit, cursor=cursor)
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BranchOut,
    responses={
        **errors({402: "The plan's branch limit is reached (`plan_limit_reached`)."}),
        **NAME_TAKEN,
    },
)
async def create_branch(data: BranchIn, auth: Auth, session: DbSession) -> BranchOut:
    """402 when the plan's branch limit is reached; 409 when the name is taken."""
    return await service.create_branch(session, auth, data)


@router.get("/{branch_id}", response_model=BranchOut, responses=NOT_FOUND)
async def get_branch(branch_id: Id, auth: Auth, session: DbSession) -> BranchOut:
    return await service.get_branch(session, auth, branch_id)


@router.patch("/{branch_id}", response_model=BranchOut, responses={**NOT_FOUND, **NAME_TAKEN})
async def update_branch(
    branch_id: Id, data: BranchPatch, auth: Auth, session: DbSession
) -> BranchOut:
    return await service.update_branch(session, auth, branch_id, data)


@router.delete(
    "/{branch_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={
        **NOT_FOUND,
        **errors(
            {
                409: "The branch has groups and `cascade` was not confirmed"
                " (`branch_not_empty`): `would_delete` counts the groups, memberships and"
                " pending welcome texts that would go with it."
            }
        ),
    },
)
async def delete_branch(
    branch_id: Id,
    auth: Auth,
    session: DbSession,
    cascade: bool = Query(
        False,
        description="Confirm deleting the branch's groups, their memberships and pending "
        "welcome texts with it (members stay).",
    ),
) -> None:
    """Deletes a branch without groups. A branch with groups is a 409 `branch_not_empty` whose
    `would_delete` counts the groups, memberships and pending welcome texts that would go with
    it, unless `cascade=true`."""
    await service.delete_branch(session, auth, branch_id, cascade=cascade)
