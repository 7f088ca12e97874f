from __future__ import annotations

import re
import unicodedata
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Numeric,
    Row,
    and_,
    case,
    cast,
    delete,
    exists,
    func,
    literal_column,
    or_,
    select,
    text,
    type_coerce,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Group, GroupMember, Member

# The stored, folded full name the trigram index ix_members_name_trgm covers.
FOLDED_NAME = Member.search_name
PHONE_DIGITS_MIN = 4
TRIGRAM_MIN = 3


def _like_escape(value: str) -> str:
    """Make `value` match literally inside a LIKE pattern (backslash is PostgreSQL's escape)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _fold(value: str) -> str:
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def search_clause(q: str) -> ColumnElement[bool]:
    """Name substring, case- and accent-insensitive; or, when `q` holds 4+ digits, phone digits.
    Spelled so the trigram indexes (church_id + folded name / phone) serve it."""
    folded = func.koinonia_fold(_like_escape(q))
    if len(q) < TRIGRAM_MIN:
        # Trigrams need 3 characters; a 1–2 character query matches names that start with it,
        # through the btree prefix index, which needs the pattern as a plain value (folded here
        # the way unaccent folds letters) rather than an expression.
        name = FOLDED_NAME.like(_like_escape(_fold(q)) + "%")
    else:
        name = FOLDED_NAME.like(func.concat("%", folded, "%"))
    digits = re.sub(r"\D", "", q)
    if len(digits) >= PHONE_DIGITS_MIN:
        return or_(name, Member.phone.like(f"%{digits}%"))
    return name


def search_rank(q: str) -> ColumnElement[float]:
    """Best first: the full name starts with q, then a later word does, then any substring;
    phone-digit matches rank by how much of the number they cover. Ties go by id. (Trigram
    similarity as a tie-breaker cost 4x the whole query at 8,000 matches: measured.)"""
    folded = func.koinonia_fold(_like_escape(q))
    name_rank = case(
        (FOLDED_NAME.like(func.concat(folded, "%")), 3.0),
        (FOLDED_NAME.like(func.concat("% ", folded, "%")), 2.0),
        (FOLDED_NAME.like(func.concat("%", folded, "%")), 1.0),
        else_=0.0,
    )
    digits = re.sub(r"\D", "", q)
    rank: ColumnElement[Any] = name_rank
    if len(digits) >= PHONE_DIGITS_MIN:
        phone_rank = case(
            (Member.phone.like(f"%{digits}%"), 1.0 + len(digits) / func.length(Member.phone)),
            else_=0.0,
        )
        rank = func.greatest(name_rank, phone_rank)
    return func.round(cast(rank, Numeric), 6).cast(Float)


class MemberRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def list(
        self,
        *,
        after_id: int | None,
        limit: int,
        group_id: int | None = None,
        branch_id: int | None = None,
        consent: str | None = None,
        q: str | None = None,
        after_rank: float | None = None,
    ) -> list[Row[Member, float]]:
        """A page of members: by id, or with `q` by search rank (best first) then id; the
        keyset is (id) or (rank, id) accordingly."""
        rank = search_rank(q) if q else literal_column("0.0").cast(Float)
        stmt = select(Member, rank.label("rank")).where(Member.church_id == self.church_id)
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
        if q:
            stmt = stmt.where(search_clause(q))
            if after_id is not None and after_rank is not None:
                stmt = stmt.where(
                    or_(rank < after_rank, and_(rank == after_rank, Member.id > after_id))
                )
            stmt = stmt.order_by(rank.desc(), Member.id)
        else:
            if after_id is not None:
                stmt = stmt.where(Member.id > after_id)
            stmt = stmt.order_by(Member.id)
        if q:
            # Plan the search for this q: a generic plan (PostgreSQL's choice after five runs
            # of a prepared statement) re-folds q for every candidate row (measured 2-5x slower).
            await self.session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        return list((await self.session.execute(stmt.limit(limit + 1))).all())

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
