from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.churches.repository import ChurchRepository
from koinonia.db.effects import church_changed
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import Conflict, NotFound, PlanLimitReached
from koinonia.kit.pagination import ID, CursorSpec, OneOf, TextField
from koinonia.members.repository import MemberFilter, MemberRepository, SearchAfter, search_tiers
from koinonia.members.schemas import (
    Consent,
    MemberCreate,
    MemberDetail,
    MemberGroup,
    MemberIn,
    MemberOut,
    MemberPatch,
)


def _phone_taken() -> Conflict:
    return Conflict("a member with this phone number exists", fields={"phone": "taken"})


async def _lock_for_limit(session: AsyncSession, auth: AuthContext) -> None:
    """With a member limit, serialise the church's member creators until the transaction ends,
    so two of them cannot both take the last slot."""
    if auth.plan.members is not None:
        await ChurchRepository(session, church_id=auth.church_id).lock()


async def _check_member_limit(auth: AuthContext, repo: MemberRepository) -> None:
    """402 when one more member would exceed the plan (call under `_lock_for_limit`)."""
    limit = auth.plan.members
    if limit is not None:
        used = await repo.count()
        if used >= limit:
            raise PlanLimitReached("members", limit=limit, usage=used)


# What a member looks like in a list: MemberOut's fields, read as plain rows in this order
# (zip(LISTED, row) is ~10x cheaper than Row._asdict(), which rebuilds its keys per row).
LISTED = tuple(MemberOut.model_fields)

MEMBERS_CURSOR = CursorSpec("members", (ID,))
# A search key is a folded "first last" (100 characters each; folding may expand some) or a
# phone number.
_SEARCH_KEY = TextField(max_length=1000)


def search_cursor(q: str) -> CursorSpec:
    """The cursor of a search for `q`: bound to q, and its tier one that q's search has."""
    tiers = frozenset(t.rank for t in search_tiers(q))
    return CursorSpec("members.search", (OneOf(tiers), _SEARCH_KEY, ID))


def search_text(q: str | None) -> str | None:
    """What a list searches for: `q` stripped, None when blank (a plain list by id)."""
    return q.strip() if q and q.strip() else None


async def list_members(
    session: AsyncSession,
    auth: AuthContext,
    *,
    group_id: int | None,
    branch_id: int | None,
    consent: Consent | None,
    q: str | None,
    limit: int,
    cursor: str | None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of members as MemberOut-shaped dicts, straight from the rows (database types
    need no validation, and building 50 models from ORM objects was a fifth of the request).

    A plain list (no `search_text`) is one read with no locks or transaction-local settings:
    callers may give it a read-only session (`Database.read_only`); a search sets
    transaction-local planner settings (`MemberRepository.search`) and needs its transaction."""
    repo = MemberRepository(session, church_id=auth.church_id)
    where = MemberFilter(group_id=group_id, branch_id=branch_id, consent=consent)
    q = search_text(q)
    if q is None:
        plain = MEMBERS_CURSOR.decode(cursor)
        rows = await repo.list(
            LISTED, after_id=plain[0] if plain else None, limit=limit, where=where
        )
        items, next_cursor = MEMBERS_CURSOR.page(rows, limit, lambda r: (r.id,))
        return [dict(zip(LISTED, r, strict=True)) for r in items], next_cursor
    # A search pages by (tier, key, id): the cursor holds where the last page ended, for this q
    # (a tier q's search does not have would leave the query without a branch to run).
    spec = search_cursor(q)
    ranked = spec.decode(cursor, query=q)
    rows = await repo.search(
        q, LISTED, after=SearchAfter(*ranked) if ranked else None, limit=limit, where=where
    )
    hits, next_cursor = spec.page(rows, limit, lambda r: (r.tier, r.key, r.id), query=q)
    # Rows are LISTED's columns, then tier and key (the keyset, not shown).
    return [dict(zip(LISTED, r, strict=False)) for r in hits], next_cursor


async def get_member(session: AsyncSession, auth: AuthContext, member_id: int) -> MemberDetail:
    row = await MemberRepository(session, church_id=auth.church_id).get_with_groups(member_id)
    if row is None:
        raise NotFound("member", member_id)
    return MemberDetail(
        **MemberOut.model_validate(row[0]).model_dump(),
        groups=[MemberGroup.model_validate(g) for g in row[1]],
    )


async def create_member(session: AsyncSession, auth: AuthContext, data: MemberCreate) -> MemberOut:
    repo = MemberRepository(session, church_id=auth.church_id)
    await _lock_for_limit(session, auth)
    await _check_member_limit(auth, repo)
    member = await repo.create(data.model_dump())
    if member is None:
        raise _phone_taken()
    church_changed(session, auth.church_id)
    return MemberOut.model_validate(member)


async def find_or_create_member(
    session: AsyncSession, auth: AuthContext, data: MemberIn
) -> tuple[MemberOut, bool]:
    """The church's member with this phone (left as is), or a new one; (member, created).

    Only creating counts against the plan's member limit."""
    repo = MemberRepository(session, church_id=auth.church_id)
    # Locked before looking, so the look-up, the count and the insert are one decision.
    await _lock_for_limit(session, auth)
    member = await repo.get_by_phone(data.phone)
    if member is not None:
        return MemberOut.model_validate(member), False
    await _check_member_limit(auth, repo)
    member = await repo.create(data.model_dump())
    if member is None:  # created concurrently (unlimited plans take no lock)
        member = await repo.get_by_phone(data.phone)
        if member is None:  # pragma: no cover - deleted in between
            raise _phone_taken()
        return MemberOut.model_validate(member), False
    church_changed(session, auth.church_id)
    return MemberOut.model_validate(member), True


async def update_member(
    session: AsyncSession, auth: AuthContext, member_id: int, data: MemberPatch
) -> MemberDetail:
    values = data.model_dump(exclude_unset=True)
    if values:
        try:
            found = await MemberRepository(session, church_id=auth.church_id).update(
                member_id, values
            )
        except IntegrityError as exc:
            if constraint_of(exc) == "uq_members_church_id_phone":
                raise _phone_taken() from None
            raise
        if not found:
            raise NotFound("member", member_id)
        church_changed(session, auth.church_id)
    return await get_member(session, auth, member_id)


async def delete_member(session: AsyncSession, auth: AuthContext, member_id: int) -> None:
    if not await MemberRepository(session, church_id=auth.church_id).delete(member_id):
        raise NotFound("member", member_id)
    church_changed(session, auth.church_id)
