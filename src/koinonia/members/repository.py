from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    case,
    delete,
    exists,
    func,
    literal,
    literal_column,
    not_,
    select,
    tuple_,
    type_coerce,
    union_all,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Group, GroupMember, Member

_Select = TypeVar("_Select", bound=Select[*tuple[Any, ...]])
PHONE_DIGITS_MIN = 4
TRIGRAM_MIN = 3

# Search ranks in tiers, best first; within a tier by a sort key in byte order, then id. Each
# tier's key leads a btree (ix_members_search_prefix, ix_members_last_first_prefix, the phone's
# unique index), so a page reads O(page) index entries instead of ranking every match.
TIER_PHONE, TIER_NAME_PREFIX, TIER_LAST_FIRST_PREFIX, TIER_SUBSTRING = 4, 3, 2, 1
NAME_KEY = Member.search_name.collate("C")
LAST_FIRST_KEY = func.koinonia_fold(
    Member.last_name.op("||")(literal_column("' '")).op("||")(Member.first_name)
).collate("C")


def _like_escape(value: str) -> str:
    """Make `value` match literally inside a LIKE pattern (backslash is PostgreSQL's escape)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass(frozen=True)
class SearchTier:
    rank: int
    match: ColumnElement[bool]
    key: ColumnElement[str]


def search_tiers(q: str) -> list[SearchTier]:
    """The tiers of a search for `q`, best first, each ordered by its key then id:
    - phone: the number holds q's digits (only when q has 4+ digits), by number;
    - name: the full name, case- and accent-folded, starts with q ("jos", "jose gar"), by name;
    - last name first: "last first" starts with q ("garc", "garcia jo"), by last name;
    - substring: q anywhere in the full name (3+ characters: trigram index), by name.
    A member appears once, in the best tier it matches."""
    # `||` (immutable) rather than concat() (stable), so that in a plan made for this q the
    # pattern is a constant and the btree scans just the prefix's range.
    folded = func.koinonia_fold(_like_escape(q))
    prefix = folded.op("||")(literal("%"))
    tiers: list[SearchTier] = []
    digits = re.sub(r"\D", "", q)
    if len(digits) >= PHONE_DIGITS_MIN:
        phone = Member.phone.expression
        tiers.append(SearchTier(TIER_PHONE, phone.like(f"%{digits}%"), phone))
    tiers.append(SearchTier(TIER_NAME_PREFIX, NAME_KEY.like(prefix), NAME_KEY))
    tiers.append(SearchTier(TIER_LAST_FIRST_PREFIX, LAST_FIRST_KEY.like(prefix), LAST_FIRST_KEY))
    if len(q) >= TRIGRAM_MIN:
        anywhere = literal("%").op("||")(prefix)
        tiers.append(SearchTier(TIER_SUBSTRING, Member.search_name.like(anywhere), NAME_KEY))
    return tiers


@dataclass(frozen=True)
class MemberFilter:
    """Filters of a member list; they combine with AND."""

    group_id: int | None = None
    branch_id: int | None = None
    consent: str | None = None


@functools.cache
def _plain_page(columns: tuple[str, ...], *, after: bool) -> Select[Any]:
    """The unfiltered page by id: the statement `MemberRepository.list` builds for no filter,
    with `church_id`, `after_id` and `limit` as bound parameters."""
    table = Member.__table__
    stmt = select(*(table.c[c] for c in columns)).where(table.c.church_id == bindparam("church_id"))
    if after:
        stmt = stmt.where(table.c.id > bindparam("after_id"))
    return stmt.order_by(table.c.id).limit(bindparam("limit"))


@dataclass(frozen=True)
class SearchAfter:
    """Where the previous page of a search ended."""

    tier: int
    key: str
    id: int


class MemberRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    def _filtered(self, stmt: _Select, where: MemberFilter) -> _Select:
        stmt = stmt.where(Member.church_id == self.church_id)
        group_id, branch_id, consent = where.group_id, where.branch_id, where.consent
        if group_id is not None:
            stmt = stmt.where(
                exists().where(GroupMember.member_id == Member.id, GroupMember.group_id == group_id)
            )
        if branch_id is not None:
            stmt = stmt.where(
                exists()
                .where(GroupMember.member_id == Member.id)
                .where(Group.id == GroupMember.group_id, Group.branch_id == branch_id)
            )
        if consent is not None:
            stmt = stmt.where(Member.consent == consent)
        return stmt

    async def list(
        self,
        columns: Sequence[str],
        *,
        after_id: int | None,
        limit: int,
        where: MemberFilter,
    ) -> Sequence[Row[Any]]:
        """A page of members by id: rows of `columns` (names of members' columns; plain rows,
        no ORM objects: the page is serialised as read)."""
        # On the session's connection, not through `session.execute`: a Core statement of
        # plain columns needs none of the ORM's execution path (a sixth of the request).
        connection = await self.session.connection()
        if where == MemberFilter():
            # The unfiltered list, the busiest: its statement is built once (building it and
            # its cache key anew was a tenth of the request), with the values as parameters.
            plain = _plain_page(tuple(columns), after=after_id is not None)
            values = {"church_id": self.church_id, "after_id": after_id, "limit": limit + 1}
            rows: Sequence[Row[Any]] = (await connection.execute(plain, values)).all()
            return rows
        stmt = self._filtered(select(*(Member.__table__.c[c] for c in columns)), where)
        if after_id is not None:
            stmt = stmt.where(Member.id > after_id)
        stmt = stmt.order_by(Member.id).limit(limit + 1)
        return (await connection.execute(stmt)).all()

    async def search(
        self,
        q: str,
        columns: Sequence[str],
        *,
        after: SearchAfter | None,
        limit: int,
        where: MemberFilter,
    ) -> Sequence[Row[Any]]:
        """A page of members matching `q`: rows of `columns` plus `tier` and `key`, best tier
        first, then by key and id (the keyset). One page is the tiers' own index-ordered pages,
        concatenated (UNION ALL) and cut at `limit + 1`: once the best tiers fill the page,
        PostgreSQL never runs the others."""
        selected = [Member.__table__.c[c] for c in columns]
        pages = []
        excluded: list[ColumnElement[bool]] = []
        for tier in search_tiers(q):
            if after is None or tier.rank <= after.tier:
                stmt = self._filtered(
                    select(*selected, literal(tier.rank).label("tier"), tier.key.label("key")),
                    where,
                ).where(tier.match, *(not_(m) for m in excluded))
                if after is not None and tier.rank == after.tier:
                    stmt = stmt.where(
                        tuple_(tier.key, Member.id) > tuple_(literal(after.key), literal(after.id))
                    )
                pages.append(stmt.order_by(tier.key, Member.id).limit(limit + 1).subquery())
            excluded.append(tier.match)
        page = union_all(*(select(p) for p in pages)).subquery()
        # Plan for this q (a generic plan cannot turn the LIKE prefix into an index range and
        # re-folds q per row: measured 2-5x slower), and without parallel workers. There is no
        # outer ORDER BY on purpose (it would run every tier in full): the order of the page is
        # the order of a non-parallel Append, which runs its children one after the other as
        # written. A parallel Append may interleave them, hence no workers. The cross-page
        # ranking tests hold this to account.
        await self.session.execute(
            select(
                func.set_config("plan_cache_mode", "force_custom_plan", True),
                func.set_config("max_parallel_workers_per_gather", "0", True),
            )
        )
        return (await self.session.execute(select(page).limit(limit + 1))).all()

    async def get(self, member_id: int) -> Member | None:
        stmt = select(Member).where(Member.church_id == self.church_id, Member.id == member_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def get_with_groups(self, member_id: int) -> Row[Member, Any] | None:
        """The member and, in the same statement, [{id, name, branch_id}] of their groups."""
        group = func.jsonb_build_object(
            "id", Group.id, "name", Group.name, "branch_id", Group.branch_id
        )
        groups = (
            select(
                func.coalesce(
                    func.jsonb_agg(aggregate_order_by(group, Group.id)),
                    literal_column("'[]'::jsonb"),
                )
            )
            .select_from(GroupMember)
            .join(Group, Group.id == GroupMember.group_id)
            .where(GroupMember.member_id == Member.id)
            .correlate(Member)
            .scalar_subquery()
        )
        stmt = select(Member, type_coerce(groups, JSONB).label("groups")).where(
            Member.church_id == self.church_id, Member.id == member_id
        )
        return (await self.session.execute(stmt)).one_or_none()

    async def get_by_phone(self, phone: str) -> Member | None:
        stmt = select(Member).where(Member.church_id == self.church_id, Member.phone == phone)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def count(self) -> int:
        stmt = select(func.count()).select_from(Member).where(Member.church_id == self.church_id)
        return int((await self.session.execute(stmt)).scalar_one())

    async def create(self, values: dict[str, Any]) -> Member | None:
        """Insert a member whose consent was set by an admin; None when the phone is taken."""
        stmt = (
            pg_insert(Member)
            .values(
                church_id=self.church_id,
                consent_changed_at=func.now(),
                consent_source="admin",
                **values,
            )
            .on_conflict_do_nothing(constraint="uq_members_church_id_phone")
            .returning(Member)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def update(self, member_id: int, values: dict[str, Any]) -> bool:
        """Apply `values`; a consent that actually changes is stamped now, source `admin`."""
        values = dict(values)
        if "consent" in values:
            changed = Member.consent.is_distinct_from(values["consent"])
            values["consent_changed_at"] = case(
                (changed, func.now()), else_=Member.consent_changed_at
            )
            values["consent_source"] = case((changed, "admin"), else_=Member.consent_source)
        stmt = (
            update(Member)
            .where(Member.church_id == self.church_id, Member.id == member_id)
            .values(**values)
            .returning(Member.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def delete(self, member_id: int) -> bool:
        stmt = (
            delete(Member)
            .where(Member.church_id == self.church_id, Member.id == member_id)
            .returning(Member.id)
        )
        return (await self.session.execute(stmt)).first() is not None
