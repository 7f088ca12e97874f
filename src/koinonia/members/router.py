from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response, status

from koinonia.auth.deps import Auth, DbSession, read_only
from koinonia.kit.openapi import AUTHENTICATED, errors, not_found
from koinonia.kit.pagination import DEFAULT_LIMIT, Page, page_response
from koinonia.kit.params import Cursor, Id, Limit
from koinonia.members import service
from koinonia.members.schemas import Consent, MemberCreate, MemberDetail, MemberOut, MemberPatch

router = APIRouter(prefix="/members", tags=["members"], responses=AUTHENTICATED)

NOT_FOUND = not_found("member")
PHONE_TAKEN = errors({409: "The church has a member with this phone number (`conflict`)."})

Search = Annotated[
    str | None,
    Query(
        max_length=100,
        pattern=r"^[^\x00]*$",
        description=(
            "Case- and accent-insensitive name search, or 4+ phone digits. Ranked in tiers:"
            " phone numbers holding the digits; full names starting with q (`jose gar`);"
            " names written last name first starting with q (`garcia jo`); then, for 3+"
            " characters, names containing q. Within a tier by that name (or number), then id."
        ),
    ),
]


@router.get("", response_model=Page[MemberOut])
async def list_members(
    request: Request,
    auth: Auth,
    session: DbSession,
    q: Search = None,
    group_id: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="In this group.")] = None,
    branch_id: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="In a group of this branch.")
    ] = None,
    consent: Consent | None = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """The church's members by id, or with `q` in search order (see `q`), filtered by
    `group_id`, `branch_id` and `consent` (filters combine with AND; an id of another church's
    group or branch matches nothing)."""
    if service.search_text(q) is None:
        # A plain list is one read: no BEGIN / COMMIT (a search needs its transaction).
        session = read_only(request, session)
    items, next_cursor = await service.list_members(
        session,
        auth,
        group_id=group_id,
        branch_id=branch_id,
        consent=consent,
        q=q,
        limit=limit,
        cursor=cursor,
    )
    return page_response(items, next_cursor)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MemberOut,
    responses={
        **errors({402: "The plan's member limit is reached (`plan_limit_reached`)."}),
        **PHONE_TAKEN,
    },
)
async def create_member(data: MemberCreate, auth: Auth, session: DbSession) -> MemberOut:
    """Adds one member. 422 when the phone number is invalid (with the reason); 409 when the
    church already has a member with this number; 402 when the plan's member limit is reached."""
    return await service.create_member(session, auth, data)


@router.get("/{member_id}", response_model=MemberDetail, responses=NOT_FOUND)
async def get_member(member_id: Id, auth: Auth, session: DbSession) -> MemberDetail:
    """One member with the groups they belong to."""
    return await service.get_member(session, auth, member_id)


@router.patch("/{member_id}", response_model=MemberDetail, responses={**NOT_FOUND, **PHONE_TAKEN})
async def update_member(
    member_id: Id, data: MemberPatch, auth: Auth, session: DbSession
) -> MemberDetail:
    """Changes the given fields (an empty body changes nothing). A new phone is normalised to
    E.164 (409 when another member has it); changing `consent` records now and source `admin`."""
    return await service.update_member(session, auth, member_id, data)


@router.delete("/{member_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_member(member_id: Id, auth: Auth, session: DbSession) -> None:
    """Deletes the member with their group memberships and conversation; delivery history of
    past messages stays."""
    await service.delete_member(session, auth, member_id)
