from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Literal

from fastapi import APIRouter, File, Query, Response, UploadFile, status

from koinonia.auth.deps import Auth, DbSession, SettingsDep
from koinonia.groups import service
from koinonia.groups.schemas import (
    GroupIn,
    GroupMemberOut,
    GroupMembersAdd,
    GroupMembersAdded,
    GroupOut,
    GroupPatch,
)
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page
from koinonia.kit.params import Cursor, Id, Limit
from koinonia.members import importer
from koinonia.members.schemas import ImportResult, ImportRowError

router = APIRouter(prefix="/groups", tags=["groups"], responses=AUTHENTICATED)

NOT_FOUND = not_found("group")
FULL_BRANCH = errors(
    {402: "The branch has as many groups as the plan allows (`plan_limit_reached`)."}
)
NAME_TAKEN = errors({409: "The branch has a group with this name (`conflict`)."})


@router.get("", response_model=Page[GroupOut])
async def list_groups(
    auth: Auth,
    session: DbSession,
    branch_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="Only this branch's groups.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[GroupOut]:
    """Groups by id, each with its member count; another church's `branch_id` matches nothing."""
    items, next_cursor = await service.list_groups(
        session, auth, branch_id=branch_id, limit=limit, cursor=cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=GroupOut,
    responses={**FULL_BRANCH, **NAME_TAKEN},
)
async def create_group(data: GroupIn, auth: Auth, session: DbSession) -> GroupOut:
    """Creates a group in a branch. 422 on `branch_id` when the branch is not this church's;
    402 when the branch already has 30 groups; 409 when the branch has a group with this name."""
    return await service.create_group(session, auth, data)


@router.get("/{group_id}", response_model=GroupOut, responses=NOT_FOUND)
async def get_group(group_id: Id, auth: Auth, session: DbSession) -> GroupOut:
    """One group with its member count."""
    return await service.get_group(session, auth, group_id)


@router.patch(
    "/{group_id}", response_model=GroupOut, responses={**NOT_FOUND, **FULL_BRANCH, **NAME_TAKEN}
)
async def update_group(group_id: Id, data: GroupPatch, auth: Auth, session: DbSession) -> GroupOut:
    """Changes the given fields (an empty body changes nothing). A new `branch_id` moves the
    group: 422 when that branch is not this church's, 402 when it has 30 groups already;
    409 when the (new) branch has a group with this name."""
    return await service.update_group(session, auth, group_id, data)


@router.delete("/{group_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_group(group_id: Id, auth: Auth, session: DbSession) -> None:
    """Deletes the group and its memberships; the members stay in the church."""
    await service.delete_group(session, auth, group_id)


@router.get("/{group_id}/members", response_model=Page[GroupMemberOut], responses=NOT_FOUND)
async def list_group_members(
    group_id: Id,
    auth: Auth,
    session: DbSession,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[GroupMemberOut]:
    """The group's members by member id, each with when they joined."""
    items, next_cursor = await service.list_group_members(
        session, auth, group_id, limit=limit, cursor=cursor
    )
    return Page(items=items, next_cursor=next_cursor)


@router.post(
    "/{group_id}/members",
    response_model=GroupMembersAdded,
    responses={
        **NOT_FOUND,
        **errors({402: "`member` would exceed the plan's member limit (`plan_limit_reached`)."}),
    },
)
async def add_group_members(
    group_id: Id, data: GroupMembersAdd, auth: Auth, session: DbSession
) -> GroupMembersAdded:
    """Adds members, in one of two forms (exactly one; 422 otherwise):

    - `member_ids`: up to 1,000 existing members of this church. Ids already in the group are
      counted in `already_in_group`; ids that are not this church's members are listed in
      `unknown_ids` and ignored.
    - `member`: the church's member with this phone is reused as is, otherwise created (422 on
      an invalid phone; 402 when the plan's member limit is reached).

    When the group has welcome texts on, each new membership gets one about 60 s later.
    """
    return await service.add_group_members(session, auth, group_id, data)


@router.delete(
    "/{group_id}/members/{member_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=errors({404: "No such group in this church, or the member is not in it."}),
)
async def remove_group_member(group_id: Id, member_id: Id, auth: Auth, session: DbSession) -> None:
    """Removes the member from the group (404 when they are not in it); the member stays."""
    await service.remove_group_member(session, auth, group_id, member_id)


@router.post(
    "/{group_id}/members/import",
    response_model=ImportResult,
    responses={
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "The JSON report, or with `report=csv` the rejected rows as CSV.",
        },
        **NOT_FOUND,
        **errors(
            {402: "The new members would exceed the plan (`plan_limit_reached`); nothing imported."}
        ),
    },
)
async def import_group_members(
    group_id: Id,
    auth: Auth,
    session: DbSession,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="CSV with a header row.")],
    report: Annotated[
        Literal["json", "csv"],
        Query(description="`csv` answers with the rejected rows as a downloadable CSV."),
    ] = "json",
) -> ImportResult | Response:
    """Import members from a CSV file into this group.

    Header row required; columns first name, last name, phone, email in any order and case,
    with common aliases (`First Name`, `first_name`, `Phone Number`, `Mobile`...); extra
    columns are ignored. UTF-8 (with or without BOM), Windows-1252 and Latin-1 are detected.
    Every row is validated: valid rows are imported, each rejected row is reported with its row
    number, column and reason. Members with a phone already in the church are reused (never
    duplicated; opted-out members stay opted out). All or nothing: a failure imports nothing.
    402 when the new members would exceed the plan (with how many fit); 413 over the size
    limit; 422 for a file that is not a usable CSV (no header, no phone column...)."""
    data = await file.read()
    result = await importer.import_members(
        session,
        church_id=auth.church_id,
        plan=auth.plan,
        group_id=group_id,
        data=data,
        region=settings.default_region,
    )
    if report == "csv":
        return Response(
            result.errors_csv(),
            media_type="text/csv",
            headers={
                "Content-Disposition": f'attachment; filename="import-errors-group-{group_id}.csv"',
                "X-Import-Created": str(result.created),
                "X-Import-Rejected": str(result.rejected),
            },
        )
    return ImportResult(
        **{k: v for k, v in asdict(result).items() if k != "errors"},
        errors=[
            ImportRowError(
                row=e.row_number,
                column=e.column,
                value=e.value,
                reason=e.reason,
                severity=e.severity,
            )
            for e in result.errors
        ],
    )
