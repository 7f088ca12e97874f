"""Deterministic bench data, generated inside PostgreSQL (set-based, seconds not minutes) and
kept in its own database between runs (the embedded cluster lives under .koinonia/, so the data
is cached on disk; a version stamp regenerates it when the generator changes).

Sizes (SPEC §5):
  S: one church of 500 members.
  L: one church of 200,000 members in 100 branches with 10,000 past messages and 1,000,000
     recipients, inside a platform of 1,000 churches.
  quick: L scaled down 10x (20,000 members, 10 branches, 1,000 messages, 100,000 recipients),
     still inside 1,000 churches, so `make bench` stays under 10 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

GENERATOR_VERSION = 4
SEED = 0.42  # setseed(): the same data every run


@dataclass(frozen=True)
class Size:
    name: str
    members: int
    branches: int
    groups_per_branch: int
    messages: int
    recipients_per_message: int
    other_churches: int
    other_members: int

    @property
    def database(self) -> str:
        return f"koinonia_bench_{self.name}"


SIZES = {
    "S": Size("S", 500, 1, 5, 50, 400, 0, 0),
    "quick": Size("quick", 20_000, 10, 10, 1_000, 100, 999, 20),
    "L": Size("L", 200_000, 100, 10, 10_000, 100, 999, 50),
}

# The church every scenario measures is church 1; its admin logs in with this password.
BENCH_EMAIL = "bench@church.one"


def _statements(size: Size, password_hash: str) -> list[str]:
    s = size
    groups = s.branches * s.groups_per_branch
    return [
        f"SELECT setseed({SEED})",
        # Churches: 1 is the measured one; the rest make the platform realistic.
        f"""INSERT INTO churches (name, contact_email, timezone, sms_number, sms_provider, plan,
                subscription_status)
            SELECT 'Church ' || i, 'office' || i || '@bench.org', 'America/New_York',
                   '+1720' || lpad((2000000 + i)::text, 7, '0'), 'sandbox', 'pro', 'active'
            FROM generate_series(1, {1 + s.other_churches}) i""",
        f"""INSERT INTO admins (church_id, email, password_hash, first_name, last_name, role)
            VALUES (1, '{BENCH_EMAIL}', '{password_hash}', 'Bench', 'Admin', 'PRIMARY')""",
        f"""INSERT INTO branches (church_id, name)
            SELECT 1, 'Branch ' || i FROM generate_series(1, {s.branches}) i""",
        f"""INSERT INTO groups (church_id, branch_id, name)
            SELECT 1, b.id, 'Group ' || g
            FROM branches b CROSS JOIN generate_series(1, {s.groups_per_branch}) g
            WHERE b.church_id = 1""",
        # Members of church 1: names from small pools (realistic collisions for search),
        # ~2% opted out; phone +1303 3xx xxxx, unique.
        f"""INSERT INTO members (church_id, first_name, last_name, phone, consent)
            SELECT 1,
                (ARRAY['John','Mary','José','Zoë','Grace','Peter','Ruth','David','Esther',
                       'Samuel','Naomi','Paul','Lydia','Timothy','Anna','Mark','Martha','Luke',
                       'Chloé','Andrés','Olu','Mei','Priya','Kwame'])[1 + (i % 24)],
                (ARRAY['Smith','Johnson','García','Brown','Okafor','Nguyen','Müller',
                       'Williams','Kim','Jones','Davis','Martínez','Lee','Wilson','Anderson',
                       'Thomas','Moore','Taylor','Adeyemi','Chen'])[1 + ((i / 24) % 20)]
                    || CASE WHEN i % 7 = 0 THEN '-' || (i % 1000) ELSE '' END,
                '+1303' || lpad((3000000 + i)::text, 7, '0'),
                CASE WHEN i % 50 = 0 THEN 'opted_out' ELSE 'opted_in' END
            FROM generate_series(1, {s.members}) i""",
        # Every member in one group of church 1, a third of them in a second one.
        f"""INSERT INTO group_members (group_id, member_id, church_id)
            WITH g AS (SELECT array_agg(id ORDER BY id) AS ids FROM groups WHERE church_id = 1)
            SELECT DISTINCT ON (gid, mid) gid, mid, 1 FROM (
                SELECT g.ids[1 + m.id % {groups}] AS gid, m.id AS mid
                FROM members m, g WHERE m.church_id = 1
                UNION ALL
                SELECT g.ids[1 + (m.id * 7 + 3) % {groups}], m.id
                FROM members m, g WHERE m.church_id = 1 AND m.id % 3 = 0
            ) pairs""",
        # The rest of the platform: small churches with members.
        f"""INSERT INTO members (church_id, first_name, last_name, phone)
            SELECT c, 'Member', 'C' || c || '-' || i,
                   '+1720' || lpad((3000000 + i)::text, 7, '0')
            FROM generate_series(2, {1 + s.other_churches}) c,
                 generate_series(1, {s.other_members}) i""",
        # Past messages of church 1 over the last 90 days, half to groups of some branch.
        f"""INSERT INTO messages (church_id, content, kind, target_type, target_ids, encoding,
                segments, status, recipient_count, created_at, completed_at)
            SELECT 1, 'Message ' || i, 'broadcast',
                CASE WHEN i % 2 = 0 THEN 'branches' ELSE 'all' END,
                CASE WHEN i % 2 = 0
                     THEN ARRAY[(SELECT min(id) FROM branches WHERE church_id = 1)
                                + (i % {s.branches})]::bigint[]
                     ELSE '{{}}'::bigint[] END,
                'GSM-7', 1, 'completed', {s.recipients_per_message},
                now() - (i * interval '90 days' / {s.messages}),
                now() - (i * interval '90 days' / {s.messages}) + interval '5 minutes'
            FROM generate_series(1, {s.messages}) i""",
        # Recipients: each message reaches a window of members; statuses mostly delivered.
        # (Triggers maintain message_status_counts, as in production.)
        f"""INSERT INTO message_recipients (message_id, member_id, church_id, phone, segments,
                status, provider_message_id, attempts, next_attempt_at, sent_at, delivered_at)
            SELECT msg.id, mem.id, 1, mem.phone, 1,
                CASE WHEN r % 20 = 0 THEN 'failed' WHEN r % 13 = 0 THEN 'undelivered'
                     WHEN r % 9 = 0 THEN 'sent' ELSE 'delivered' END,
                'SMb' || msg.id || 'x' || mem.id, 1, NULL, msg.created_at, msg.created_at
            FROM messages msg
            CROSS JOIN generate_series(0, {s.recipients_per_message - 1}) r
            JOIN members mem ON mem.church_id = 1
                AND mem.id = (SELECT min(id) FROM members WHERE church_id = 1)
                    + ((msg.id * 37 + r) % {s.members})
            WHERE msg.church_id = 1""",
        """INSERT INTO usage (church_id, month, texts, segments)
            SELECT church_id, date_trunc('month', created_at)::date, sum(recipient_count),
                   sum(recipient_count)
            FROM messages GROUP BY 1, 2""",
        "CREATE TABLE IF NOT EXISTS bench_meta (version int, size text)",
        f"INSERT INTO bench_meta VALUES ({GENERATOR_VERSION}, '{s.name}')",
        "ANALYZE",
    ]


async def current_version(engine: AsyncEngine) -> int | None:
    async with engine.connect() as conn:
        exists = await conn.execute(text("SELECT to_regclass('bench_meta') IS NOT NULL"))
        if not exists.scalar_one():
            return None
        version = (await conn.execute(text("SELECT max(version) FROM bench_meta"))).scalar_one()
        return int(version) if version is not None else None


async def generate(engine: AsyncEngine, size: Size, password_hash: str) -> None:
    """Fill an empty, migrated database with `size`'s data, in one transaction."""
    async with engine.begin() as conn:
        for stmt in _statements(size, password_hash):
            await conn.execute(text(stmt))
