from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Row,
    bindparam,
    delete,
    exists,
    func,
    insert,
    select,
    text,
    true,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from koinonia.models import Branch, Church, Group, GroupMember, Member

GroupRow = Row[Group, int]  # (group, member_count)
GroupRows = list[GroupRow]
MemberPage = list[tuple[Member, datetime]]  # (member, joined_at)


@dataclass(frozen=True, slots=True)
class AddResult:
    group_found: bool
    added: int
    known: int  # distinct requested ids that are members of this church
    unknown_ids: list[int]


# One statement: resolve the ids to this church's members, insert the missing memberships
# (a welcome falls due in 60 s when the group has welcome texts on), and count what happened.
# The group comes from `grp`, so another church's group inserts nothing and reports not found.
_ADD_MEMBERS = text(
    """
    WITH grp AS (
        SELECT id, church_id, welcome_enabled FROM groups
        WHERE id = :group_id AND church_id = :church_id
    ), wanted AS (
        SELECT DISTINCT unnest(CAST(:member_ids AS bigint[])) AS id
    ), known AS (
        SELECT m.id FROM members m JOIN wanted w ON w.id = m.id
        WHERE m.church_id = :church_id
    ), added AS (
        INSERT INTO group_members (group_id, member_id, church_id, welcome_due_at)
        SELECT grp.id, known.id, grp.church_id,
               CASE WHEN grp.welcome_enabled THEN now() + interval '60 seconds' END
        FROM grp CROSS JOIN known
        ON CONFLICT DO NOTHING
        RETURNING member_id
    )
    SELECT EXISTS (SELECT FROM grp) AS group_found,
           (SELECT count(*) FROM added) AS added,
           (SELECT count(*) FROM known) AS known,
           ARRAY(SELECT w.id FROM wanted w
                 WHERE NOT EXISTS (SELECT FROM known k WHERE k.id = w.id)
                 ORDER BY w.id) AS unknown_ids
    """
).bindparams(bindparam("member_ids", type_=ARRAY(BigInteger)))


class GroupRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    def _with_count(self) -> Any:
        members = (
            select(func.count())
            .select_from(GroupMember)
            .where(GroupMember.group_id == Group.id)
            .correlate(Group)
            .scalar_subquery()
        )
        return select(Group, members.label("member_count")).where(Group.church_id == self.church_id)

    async def list(
        self, *, branch_id: int | None, after_id: int | None, limit: int
    ) -> list[GroupRow]:
        stmt = self._with_count()
        if branch_id is not None:
            stmt = stmt.where(Group.branch_id == branch_id)
        if after_id is not None:
            stmt = stmt.where(Group.id > after_id)
        stmt = stmt.order_by(Group.id).limit(limit + 1)
        return list((await self.session.execute(stmt)).all())

    async def get_with_count(self, group_id: int) -> GroupRow | None:
        stmt = self._with_count().where(Group.id == group_id)
        return (await self.session.execute(stmt)).one_or_none()

    async def get(self, group_id: int) -> Group | None:
        stmt = select(Group).where(Group.church_id == self.church_id, Group.id == group_id)
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def exists(self, group_id: int) -> bool:
        stmt = select(Group.id).where(Group.church_id == self.church_id, Group.id == group_id)
        return (await self.session.execute(stmt)).first() is not None

    async def branch_usage(self, branch_id: int) -> tuple[bool, int]:
        """(the branch is this church's, how many groups it has) in one statement."""
        found = exists().where(Branch.id == branch_id, Branch.church_id == self.church_id)
        used = (
            select(func.count())
            .select_from(Group)
            .where(Group.branch_id == branch_id, Group.church_id == self.church_id)
            .scalar_subquery()
        )
        row = (await self.session.execute(select(found, used))).one()
        return bool(row[0]), int(row[1])

    async def create(self, values: dict[str, Any]) -> Group:
        stmt = insert(Group).values(church_id=self.church_id, **values).returning(Group)
        return (await self.session.execute(stmt)).scalar_one()

    async def update(self, group_id: int, values: dict[str, Any]) -> bool:
        stmt = (
            update(Group)
            .where(Group.church_id == self.church_id, Group.id == group_id)
            .values(**values)
            .returning(Group.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def delete(self, group_id: int) -> bool:
        stmt = (
            delete(Group)
            .where(Group.church_id == self.church_id, Group.id == group_id)
            .returning(Group.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def list_members(
        self, group_id: int, *, after_member_id: int | None, limit: int
    ) -> MemberPage | None:
        """A page of the group's members by member id, or None when the group is not this
        church's. One statement: the page is a LATERAL join on the group's row, so a missing
        group (no row) and an empty page (one row without a member) are told apart."""
        page = (
            select(Member, GroupMember.joined_at)
            .join(GroupMember, GroupMember.member_id == Member.id)
            .where(GroupMember.group_id == Group.id, Member.church_id == self.church_id)
        )
        if after_member_id is not None:
            page = page.where(GroupMember.member_id > after_member_id)
        sub = page.order_by(GroupMember.member_id).limit(limit + 1).lateral("page")
        member = aliased(Member, sub)
        stmt = (
            select(Group.id, member, sub.c.joined_at)
            .outerjoin(sub, true())
            .where(Group.church_id == self.church_id, Group.id == group_id)
            .order_by(sub.c.id)
        )
        rows = (await self.session.execute(stmt)).all()
        if not rows:
            return None
        return [(m, joined_at) for _, m, joined_at in rows if m is not None]

    async def add_members(self, group_id: int, member_ids: Sequence[int]) -> AddResult:
        params = {"group_id": group_id, "church_id": self.church_id, "member_ids": [*member_ids]}
        row = (await self.session.execute(_ADD_MEMBERS, params)).one()
        return AddResult(
            bool(row.group_found), int(row.added), int(row.known), list(row.unknown_ids)
        )

    async def remove_member(self, group_id: int, member_id: int) -> bool:
        stmt = (
            delete(GroupMember)
            .where(
                GroupMember.church_id == self.church_id,
                GroupMember.group_id == group_id,
                GroupMember.member_id == member_id,
            )
            .returning(GroupMember.member_id)
        )
        return (await self.session.execute(stmt)).first() is not None


# --- welcome texts: the worker's queue (delivery.scheduler) -------------------------------------


@dataclass(frozen=True, slots=True)
class DueWelcome:
    group_id: int
    member_id: int
    church_id: int
    group_name: str
    welcome_enabled: bool
    welcome_text: str | None
    opted_in: bool


class WelcomeQueue:
    """Memberships whose welcome text is due, for ALL churches (a worker serves every tenant)."""

    _CLAIM = """
        SELECT gm.group_id, gm.member_id, gm.church_id, g.name, g.welcome_enabled,
               g.welcome_text, m.consent = 'opted_in'
        FROM group_members gm
        JOIN groups g ON g.id = gm.group_id
        JOIN members m ON m.id = gm.member_id
        WHERE gm.welcome_due_at <= now() AND gm.welcome_sent_at IS NULL {church_filter}
        ORDER BY gm.welcome_due_at
        LIMIT :limit
        FOR UPDATE OF gm SKIP LOCKED
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def claim_due(self, *, limit: int, church_id: int | None = None) -> list[DueWelcome]:
        """Lock up to `limit` due memberships no other worker holds (until the commit).
        `church_id` narrows the queue to one church (tests share a database)."""
        sql = self._CLAIM.format(
            church_filter="AND gm.church_id = :church_id" if church_id is not None else ""
        )
        params: dict[str, Any] = {"limit": limit, "church_id": church_id}
        rows = await self.session.execute(text(sql), params)
        return [DueWelcome(*row) for row in rows]

    async def churches(self, church_ids: Iterable[int]) -> dict[int, Church]:
        stmt = select(Church).where(Church.id.in_(sorted(set(church_ids))))
        return {c.id: c for c in (await self.session.execute(stmt)).scalars()}

    async def mark_sent(self, due: list[DueWelcome]) -> None:
        stmt = text(
            "UPDATE group_members gm SET welcome_sent_at = now()"
            " FROM unnest(:groups, :members) AS d(group_id, member_id)"
            " WHERE gm.group_id = d.group_id AND gm.member_id = d.member_id"
        ).bindparams(
            bindparam("groups", type_=ARRAY(BigInteger)),
            bindparam("members", type_=ARRAY(BigInteger)),
        )
        await self.session.execute(
            stmt, {"groups": [d.group_id for d in due], "members": [d.member_id for d in due]}
        )
