from __future__ import annotations

import re

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.churches.repository import ChurchRepository
from koinonia.db.effects import church_changed
from koinonia.groups.repository import GroupRepository, GroupRow
from koinonia.groups.schemas import (
    GroupIn,
    GroupMemberOut,
    GroupMembersAdd,
    GroupMembersAdded,
    GroupOut,
    GroupPatch,
)
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import (
    Conflict,
    KoinoniaError,
    NotFound,
    PlanLimitReached,
    ValidationFailed,
)
from koinonia.kit.pagination import ID, CursorSpec
from koinonia.members import service as members
from koinonia.members.schemas import MemberOut
from koinonia.messages import limits
from koinonia.messages.service import check_provider_limit

GROUPS_CURSOR = CursorSpec("groups", (ID,))
GROUP_MEMBERS_CURSOR = CursorSpec("group_members", (ID,))


DEFAULT_WELCOME = "Welcome to {group_name}!"
_GROUP_NAME = re.compile(r"\{ *group_name *(?:\|([^{}]*))?\}")


def welcome_content(welcome_text: str | None, group_name: str) -> str:
    """The group's welcome text (or the default) with `{group_name}` filled in; the other merge
    fields stay for the per-recipient render."""
    template = welcome_text if welcome_text and welcome_text.strip() else DEFAULT_WELCOME
    return _GROUP_NAME.sub(lambda _: group_name, template)


def _out(row: GroupRow) -> GroupOut:
    out = GroupOut.model_validate(row[0])
    out.member_count = row[1]
    return out


def _unknown_branch() -> ValidationFailed:
    return ValidationFailed.field("branch_id", "unknown branch")


def _integrity(exc: IntegrityError) -> KoinoniaError | None:
    name = constraint_of(exc)
    if name == "uq_groups_branch_id_name":
        return Conflict("this branch already has a group with this name", fields={"name": "taken"})
    if name == "fk_groups_branch_id_branches":  # the branch was deleted meanwhile
        return _unknown_branch()
    return None


async def _check_branch_room(repo: GroupRepository, auth: AuthContext, branch_id: int) -> None:
    """422 unless the branch is this church's; 402 when it already has the most groups a branch
    may have. Call under the church lock so two creators cannot both take the last place."""
    found, used = await repo.branch_usage(branch_id)
    if not found:
        raise _unknown_branch()
    limit = auth.plan.groups_per_branch
    if used >= limit:
        raise PlanLimitReached("groups in this branch", limit=limit, usage=used)


async def _check_welcome_length(
    session: AsyncSession,
    church_id: int,
    welcome_text: str | None,
    group_name: str,
    group_id: int | None,
) -> None:
    """422 on `welcome_text` when the welcome (or the default), {group_name} filled in, would be
    longer than the church's provider accepts for one of the group's current members (one
    aggregate statement; a new group has none, so only the text with empty names is checked).
    A newcomer with a longer name is failed with a reason at sending (delivery.dispatcher)."""
    church = await ChurchRepository(session, church_id=church_id).get()
    if church is None:
        raise NotFound("church", church_id)
    content = welcome_content(welcome_text, group_name)
    if group_id is None:
        limits.check_content_alone(church.sms_provider, church.name, content, field="welcome_text")
        return
    await check_provider_limit(
        session, church, content, "groups", [group_id], field="welcome_text", audience="group"
    )


async def list_groups(
    session: AsyncSession,
    auth: AuthContext,
    *,
    branch_id: int | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[GroupOut], str | None]:
    key = GROUPS_CURSOR.decode(cursor)
    rows = await GroupRepository(session, church_id=auth.church_id).list(
        branch_id=branch_id, after_id=key[0] if key else None, limit=limit
    )
    items, next_cursor = GROUPS_CURSOR.page(rows, limit, lambda r: (r[0].id,))
    return [_out(r) for r in items], next_cursor


async def get_group(session: AsyncSession, auth: AuthContext, group_id: int) -> GroupOut:
    row = await GroupRepository(session, church_id=auth.church_id).get_with_count(group_id)
    if row is None:
        raise NotFound("group", group_id)
    return _out(row)


async def create_group(session: AsyncSession, auth: AuthContext, data: GroupIn) -> GroupOut:
    repo = GroupRepository(session, church_id=auth.church_id)
    await ChurchRepository(session, church_id=auth.church_id).lock()
    await _check_branch_room(repo, auth, data.branch_id)
    await _check_welcome_length(session, auth.church_id, data.welcome_text, data.name, None)
    try:
        group = await repo.create(data.model_dump())
    except IntegrityError as exc:
        raise _integrity(exc) or exc from None
    church_changed(session, auth.church_id)
    return GroupOut.model_validate(group)


async def update_group(
    session: AsyncSession, auth: AuthContext, group_id: int, data: GroupPatch
) -> GroupOut:
    repo = GroupRepository(session, church_id=auth.church_id)
    values = data.model_dump(exclude_unset=True)
    group = None
    if "branch_id" in values:
        await ChurchRepository(session, church_id=auth.church_id).lock()
        group = await repo.get(group_id)
        if group is None:
            raise NotFound("group", group_id)
        if values["branch_id"] != group.branch_id:
            await _check_branch_room(repo, auth, values["branch_id"])
    if values.keys() & {"welcome_text", "name", "welcome_enabled"}:
        group = group or await repo.get(group_id)
        if group is None:
            raise NotFound("group", group_id)
        welcome_text = values.get("welcome_text", group.welcome_text)
        # A text given now is checked even while welcomes are off (switching them on later
        # must not start failing at the carrier); a rename or switch-on checks the stored one.
        if "welcome_text" in values or values.get("welcome_enabled", group.welcome_enabled):
            await _check_welcome_length(
                session, auth.church_id, welcome_text, values.get("name", group.name), group_id
            )
    if values:
        try:
            found = await repo.update(group_id, values)
        except IntegrityError as exc:
            raise _integrity(exc) or exc from None
        if not found:
            raise NotFound("group", group_id)
        church_changed(session, auth.church_id)
    return await get_group(session, auth, group_id)


async def delete_group(session: AsyncSession, auth: AuthContext, group_id: int) -> None:
    if not await GroupRepository(session, church_id=auth.church_id).delete(group_id):
        raise NotFound("group", group_id)
    church_changed(session, auth.church_id)


async def list_group_members(
    session: AsyncSession, auth: AuthContext, group_id: int, *, limit: int, cursor: str | None
) -> tuple[list[GroupMemberOut], str | None]:
    key = GROUP_MEMBERS_CURSOR.decode(cursor, query=str(group_id))
    rows = await GroupRepository(session, church_id=auth.church_id).list_members(
        group_id, after_member_id=key[0] if key else None, limit=limit
    )
    if rows is None:
        raise NotFound("group", group_id)
    items, next_cursor = GROUP_MEMBERS_CURSOR.page(
        rows, limit, lambda r: (r[0].id,), query=str(group_id)
    )
    return [
        GroupMemberOut(**MemberOut.model_validate(m).model_dump(), joined_at=joined_at)
        for m, joined_at in items
    ], next_cursor


async def add_group_members(
    session: AsyncSession, auth: AuthContext, group_id: int, data: GroupMembersAdd
) -> GroupMembersAdded:
    if (data.member_ids is None) == (data.member is None):
        reason = "give either member_ids or member"
        raise ValidationFailed(reason, fields={"member_ids": reason, "member": reason})
    repo = GroupRepository(session, church_id=auth.church_id)
    if data.member_ids is not None:
        result = await repo.add_members(group_id, data.member_ids)
        if not result.group_found:
            raise NotFound("group", group_id)
        church_changed(session, auth.church_id)
        return GroupMembersAdded(
            added=result.added,
            already_in_group=result.known - result.added,
            unknown_ids=result.unknown_ids,
        )
    assert data.member is not None
    # Group first: a missing group is a 404, never a 402 or 409 about the member.
    if not await repo.exists(group_id):
        raise NotFound("group", group_id)
    member, created = await members.find_or_create_member(session, auth, data.member)
    result = await repo.add_members(group_id, [member.id])
    church_changed(session, auth.church_id)
    return GroupMembersAdded(
        added=result.added,
        already_in_group=result.known - result.added,
        unknown_ids=[],
        member=member,
        member_created=created,
    )


async def remove_group_member(
    session: AsyncSession, auth: AuthContext, group_id: int, member_id: int
) -> None:
    repo = GroupRepository(session, church_id=auth.church_id)
    if not await repo.remove_member(group_id, member_id):
        if not await repo.exists(group_id):
            raise NotFound("group", group_id)
        raise NotFound(f"member {member_id} in group", group_id)
    church_changed(session, auth.church_id)
