from __future__ import annotations

from sqlalchemy import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.branches.repository import BranchRepository
from koinonia.branches.schemas import BranchIn, BranchOut, BranchPatch
from koinonia.churches.repository import ChurchRepository
from koinonia.db.effects import church_changed
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import Conflict, NotFound, PlanLimitReached
from koinonia.kit.pagination import ID, CursorSpec
from koinonia.models import Branch

BRANCHES_CURSOR = CursorSpec("branches", (ID,))


def _out(row: Row[Branch, int, int]) -> BranchOut:
    out = BranchOut.model_validate(row[0])
    out.group_count, out.member_count = row[1], row[2]
    return out


def _name_taken(exc: IntegrityError) -> Conflict | None:
    if constraint_of(exc) == "uq_branches_church_id_name":
        return Conflict("a branch with this name exists", fields={"name": "taken"})
    return None


async def list_branches(
    session: AsyncSession, auth: AuthContext, *, limit: int, cursor: str | None
) -> tuple[list[BranchOut], str | None]:
    key = BRANCHES_CURSOR.decode(cursor)
    rows = await BranchRepository(session, church_id=auth.church_id).list(
        after_id=key[0] if key else None, limit=limit
    )
    items, next_cursor = BRANCHES_CURSOR.page(rows, limit, lambda r: (r[0].id,))
    return [_out(r) for r in items], next_cursor


async def get_branch(session: AsyncSession, auth: AuthContext, branch_id: int) -> BranchOut:
    row = await BranchRepository(session, church_id=auth.church_id).get_with_counts(branch_id)
    if row is None:
        raise NotFound("branch", branch_id)
    return _out(row)


async def create_branch(session: AsyncSession, auth: AuthContext, data: BranchIn) -> BranchOut:
    repo = BranchRepository(session, church_id=auth.church_id)
    limit = auth.plan.branches
    if limit is not None:
        await ChurchRepository(session, church_id=auth.church_id).lock()
        used = await repo.count()
        if used >= limit:
            raise PlanLimitReached("branches", limit=limit, usage=used)
    try:
        branch = await repo.create(data.model_dump())
    except IntegrityError as exc:
        raise _name_taken(exc) or exc from None
    church_changed(session, auth.church_id)
    return BranchOut.model_validate(branch)


async def update_branch(
    session: AsyncSession, auth: AuthContext, branch_id: int, data: BranchPatch
) -> BranchOut:
    repo = BranchRepository(session, church_id=auth.church_id)
    values = data.model_dump(exclude_unset=True)
    if values:
        try:
            found = await repo.update(branch_id, values)
        except IntegrityError as exc:
            raise _name_taken(exc) or exc from None
        if not found:
            raise NotFound("branch", branch_id)
        church_changed(session, auth.church_id)
    return await get_branch(session, auth, branch_id)


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n:,} {one if n == 1 else (many or one + 's')}"


async def delete_branch(
    session: AsyncSession, auth: AuthContext, branch_id: int, *, cascade: bool = False
) -> None:
    """Delete an empty branch; one with groups only with `cascade` (409 saying what would go
    with it otherwise: deleting groups silently lost memberships and welcome texts)."""
    contents = await BranchRepository(session, church_id=auth.church_id).delete(
        branch_id, cascade=cascade
    )
    if contents is None:
        raise NotFound("branch", branch_id)
    if not contents.deleted:
        raise Conflict(
            f"branch {branch_id} has {_plural(contents.groups, 'group')} with"
            f" {_plural(contents.memberships, 'membership')} and"
            f" {_plural(contents.pending_welcome_texts, 'pending welcome text')}; deleting it"
            " deletes them too (members stay): repeat with ?cascade=true to confirm",
            code="branch_not_empty",
            extra={
                "would_delete": {
                    "groups": contents.groups,
                    "memberships": contents.memberships,
                    "pending_welcome_texts": contents.pending_welcome_texts,
                }
            },
        )
    church_changed(session, auth.church_id)
