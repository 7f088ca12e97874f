"""SQL of CSV member import: COPY into a temporary staging table, then set-based upserts.
A constant number of statements whatever the file size, all in the caller's transaction."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.db import observe
from koinonia.members.csv_import import ImportRow


class ImportRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id
        # A staging table per import: dropped at commit, never shared with another import.
        self.table = f"member_import_{uuid.uuid4().hex}"

    async def group_welcome(self, group_id: int) -> bool | None:
        """The group's welcome flag, or None if the group is not this church's."""
        row = await self.session.execute(
            text("SELECT welcome_enabled FROM groups WHERE church_id = :c AND id = :g"),
            {"c": self.church_id, "g": group_id},
        )
        return row.scalar_one_or_none()

    async def create_staging(self) -> None:
        """The staging table, dropped at commit, never shared with another import."""
        await self.session.execute(
            text(
                f"CREATE TEMP TABLE {self.table} (row_number int, first_name text,"
                " last_name text, phone text, email text) ON COMMIT DROP"
            )
        )

    async def stage(self, rows: Sequence[ImportRow]) -> None:
        """COPY rows into the staging table (appended to what earlier calls staged)."""
        conn = await self.session.connection()
        raw = await conn.get_raw_connection()
        with observe.timed(f"COPY {self.table}", conn):
            # ImportRows are tuples in the table's column order: COPY records as they are.
            await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
                self.table,
                records=rows,
                columns=["row_number", "first_name", "last_name", "phone", "email"],
            )

    async def count_new_and_existing(self) -> tuple[int, int]:
        """(phones not yet members of this church, members in the church now)."""
        row = await self.session.execute(
            text(
                f"SELECT (SELECT count(*) FROM {self.table} s WHERE NOT EXISTS"
                " (SELECT 1 FROM members m WHERE m.church_id = :c AND m.phone = s.phone)),"
                " (SELECT count(*) FROM members WHERE church_id = :c)"
            ),
            {"c": self.church_id},
        )
        new, total = row.one()
        return int(new), int(total)

    async def upsert(
        self, group_id: int, *, welcome: bool, after_row: int, rows: int
    ) -> tuple[int, int, int]:
        """Create missing members, reuse existing ones (names, email and consent untouched:
        an opted-out member stays opted out), add everyone to the group: the `rows` staged
        rows after `after_row` (those up to it were upserted by an earlier call). When every
        row created a member there is no existing one to look up (a new list: no join).
        Returns (created, already members, added to the group)."""
        row = await self.session.execute(
            text(
                f"""
                WITH created AS (
                    INSERT INTO members (church_id, first_name, last_name, phone, email,
                                         consent_changed_at, consent_source)
                    SELECT :c, first_name, last_name, phone, email, now(), 'import'
                    FROM {self.table} WHERE row_number > :after
                    ON CONFLICT (church_id, phone) DO NOTHING
                    RETURNING id
                ),
                existing AS (
                    SELECT m.id FROM members m JOIN {self.table} s ON s.phone = m.phone
                    WHERE m.church_id = :c AND s.row_number > :after
                      AND (SELECT count(*) FROM created) < :rows
                ),
                everyone AS (SELECT id FROM created UNION ALL SELECT id FROM existing),
                joined AS (
                    INSERT INTO group_members (group_id, member_id, church_id, welcome_due_at)
                    SELECT :g, id, :c,
                           CASE WHEN :welcome THEN now() + interval '60 seconds' END
                    FROM everyone
                    ON CONFLICT (group_id, member_id) DO NOTHING
                    RETURNING 1
                )
                SELECT (SELECT count(*) FROM created), (SELECT count(*) FROM existing),
                       (SELECT count(*) FROM joined)
                """
            ),
            {
                "c": self.church_id,
                "g": group_id,
                "welcome": welcome,
                "after": after_row,
                "rows": rows,
            },
        )
        created, existing, joined = row.one()
        return int(created), int(existing), int(joined)
