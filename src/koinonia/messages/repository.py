"""All SQL of messages: audience resolution and recipient creation (one statement), history,
detail, recipients and cancel."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ARRAY, BigInteger, bindparam, text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.billing.repository import BILLING_MONTH, billing_month_of
from koinonia.kit.segments import GSM7_BASIC, GSM7_EXTENSION
from koinonia.messages.limits import FieldShape, Longest

# Who a target reaches, as a condition on `members m` (church already filtered).
AUDIENCE: dict[str, str] = {
    "all": "TRUE",
    "members": "m.id = ANY(:ids)",
    "groups": (
        "EXISTS (SELECT 1 FROM group_members gm WHERE gm.member_id = m.id"
        " AND gm.church_id = :church_id AND gm.group_id = ANY(:ids))"
    ),
    "branches": (
        "EXISTS (SELECT 1 FROM group_members gm JOIN groups g ON g.id = gm.group_id"
        " WHERE gm.member_id = m.id AND g.church_id = :church_id AND g.branch_id = ANY(:ids))"
    ),
}
TARGET_TABLE = {"members": "members", "groups": "groups", "branches": "branches"}

_IDS = bindparam("ids", type_=ARRAY(BigInteger))


def _bracketed(chars: frozenset[str]) -> str:
    # Inside a PostgreSQL (ARE) bracket expression these four need a backslash.
    return "".join("\\" + c if c in "\\[]^-" else c for c in sorted(chars))


# Patterns for the per-recipient text measures (bound as parameters, not inlined):
_MEASURES = {
    "blank_re": "^[[:space:]]*$",  # a blank value takes its placeholders' defaults
    # 1 septet and 1 UTF-16 unit per character: nearly every name; the others are measured
    # character class by character class.
    "plain_re": f"^[{_bracketed(frozenset(c for c in GSM7_BASIC if c.isascii()))}]*$",
    "non_gsm_re": f"[^{_bracketed(GSM7_BASIC | GSM7_EXTENSION)}]",  # forces UCS-2
    "gsm_ext": "".join(sorted(GSM7_EXTENSION)),  # 2 septets each
    "astral_re": "[\U00010000-\U0010ffff]",  # 2 UTF-16 units each
}
_FIELD_COLUMNS = {"first_name": "m.first_name", "last_name": "m.last_name"}

# Counts by status, summed over the counter shards (see models.MessageStatusCount).
_COUNTS = """
    LEFT JOIN LATERAL (
        SELECT COALESCE(jsonb_object_agg(status, total), '{}'::jsonb) AS counts
        FROM (SELECT status, sum(n) AS total FROM message_status_counts
              WHERE message_id = m.id GROUP BY status) s
    ) c ON TRUE
"""
_MESSAGE_COLUMNS = """
    m.id, m.content, m.kind, m.target_type, m.target_ids, m.encoding, m.segments, m.status,
    m.recipient_count, m.skipped_opted_out, m.created_by, m.created_at, m.scheduled_at,
    m.sent_at, m.completed_at, c.counts
"""


@dataclass(frozen=True, slots=True)
class NewMessage:
    content: str
    kind: str
    target_type: str
    target_ids: list[int]
    encoding: str
    segments: int
    due_at: datetime
    scheduled_at: datetime | None
    created_by: int | None
    conversation_id: int | None = None
    recurring_id: int | None = None
    exclude_member_id: int | None = None  # e.g. a group-chat relay skips its sender
    direct: Direct | None = None  # replaces the target's audience (system texts only)


@dataclass(frozen=True, slots=True)
class Direct:
    """Exactly one recipient, whatever its consent: the system texts answering a number that
    just texted us (keyword confirmations, HELP, the unknown-sender reply). `recipient_id` is
    the member's id, or for a number that is no member a value that can never be one (see
    models.InboundAutoReply)."""

    recipient_id: int
    phone: str


@dataclass(frozen=True, slots=True)
class Created:
    id: int
    status: str
    recipients: int
    skipped_opted_out: int
    quota_ok: bool


class MessageRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    async def missing_target_ids(self, target_type: str, ids: list[int]) -> list[int]:
        """Ids of the target that are not this church's (unknown or another church's)."""
        table = TARGET_TABLE[target_type]
        stmt = text(
            f"SELECT ARRAY(SELECT unnest(:ids) EXCEPT SELECT id FROM {table}"
            " WHERE church_id = :church_id AND id = ANY(:ids))"
        ).bindparams(_IDS)
        missing = (
            await self.session.execute(stmt, {"ids": ids, "church_id": self.church_id})
        ).scalar_one()
        return sorted(missing)

    async def audience_counts(self, target_type: str, ids: list[int]) -> tuple[int, int]:
        """(opted-in recipients, opted-out skipped) without writing anything (dry run)."""
        stmt = text(
            "SELECT count(*) FILTER (WHERE consent = 'opted_in'),"
            " count(*) FILTER (WHERE consent = 'opted_out')"
            f" FROM members m WHERE m.church_id = :church_id AND {AUDIENCE[target_type]}"
        )
        if target_type != "all":
            stmt = stmt.bindparams(_IDS)
        row = (await self.session.execute(stmt, {"church_id": self.church_id, "ids": ids})).one()
        return int(row[0]), int(row[1])

    async def longest_rendering(
        self, target_type: str, ids: list[int], fields: tuple[FieldShape, ...], *, parts: bool
    ) -> Longest:
        """Over the opted-in audience, the largest contribution of `fields` to a recipient's
        text, in one aggregate: characters, and with `parts` (a limit counted in parts) the
        septets of those whose text stays GSM-7 and the UTF-16 units of those whose names make
        it UCS-2. Per recipient, so two long names of different people are not added up.

        Cheap per row for ordinary names: a blank test only for names starting with a space or
        a non-ASCII character (names are trimmed on the way in), and for `parts` one regex per
        name (plain 1-septet ASCII?), the character-class counts only for the rest."""
        params: dict[str, Any] = {"church_id": self.church_id, "ids": ids}
        inner, chars, septets, units, gsm = [], [], [], [], []
        for i, shape in enumerate(fields):
            column, v, b, plain = _FIELD_COLUMNS[shape.name], f"v{i}", f"b{i}", f"p{i}"
            params |= {
                f"k{i}": shape.copies,
                f"bc{i}": shape.blank.chars,
                f"bs{i}": shape.blank.septets,
                f"bu{i}": shape.blank.units,
                f"bg{i}": shape.blank.gsm,
            }
            inner += [
                f"{column} AS {v}",
                f"({column} = '' OR ((ascii({column}) <= 32 OR ascii({column}) > 127)"
                f" AND {column} ~ :blank_re)) AS {b}",
            ]
            chars.append(f"CASE WHEN {b} THEN :bc{i} ELSE :k{i} * length({v}) END")
            if parts:
                inner.append(f"{column} ~ :plain_re AS {plain}")
                ext = f"length({v}) - length(translate({v}, :gsm_ext, ''))"
                astral = f"length({v}) - length(regexp_replace({v}, :astral_re, '', 'g'))"
                septets.append(
                    f"CASE WHEN {b} THEN :bs{i} WHEN {plain} THEN :k{i} * length({v})"
                    f" ELSE :k{i} * (length({v}) + {ext}) END"
                )
                units.append(
                    f"CASE WHEN {b} THEN :bu{i} WHEN {plain} THEN :k{i} * length({v})"
                    f" ELSE :k{i} * (length({v}) + {astral}) END"
                )
                gsm.append(
                    f"CASE WHEN {b} THEN CAST(:bg{i} AS boolean) WHEN {plain} THEN TRUE"
                    f" ELSE {v} !~ :non_gsm_re END"
                )
        params |= _MEASURES if parts else {"blank_re": _MEASURES["blank_re"]}
        if parts:
            measured = (
                f"{' + '.join(chars)} AS chars, {' + '.join(septets)} AS septets,"
                f" {' + '.join(units)} AS units, {' AND '.join(gsm)} AS gsm"
            )
            aggregate = (
                "max(chars), max(septets) FILTER (WHERE gsm),"
                " max(units) FILTER (WHERE NOT gsm), max(units)"
            )
        else:
            measured = f"{' + '.join(chars)} AS chars"
            aggregate = "max(chars), NULL, NULL, NULL"
        # OFFSET 0 keeps the inner query a subquery, so each regex runs once per name and
        # row, however often the measures refer to its result.
        stmt = text(
            f"SELECT {aggregate} FROM (SELECT {measured} FROM ("
            f"SELECT {', '.join(inner)} FROM members m"
            f" WHERE m.church_id = :church_id AND m.consent = 'opted_in'"
            f" AND {AUDIENCE[target_type]} OFFSET 0) n) r"
        )
        if target_type != "all":
            stmt = stmt.bindparams(_IDS)
        row = (await self.session.execute(stmt, params)).one()
        return Longest(*(None if v is None else int(v) for v in row))

    async def create(self, new: NewMessage, *, text_limit: int | None) -> Created:
        """Message, every recipient and the quota reservation in ONE statement.

        The usage row is the quota's lock: concurrent sends of one church serialise on it, and
        the reservation only happens if it fits (`quota_ok` False → the caller rolls back).
        Wakes the delivery workers (NOTIFY is delivered at commit)."""
        if new.direct is not None:
            audience = (
                "SELECT CAST(:direct_id AS bigint) AS id, CAST(:direct_phone AS varchar) AS phone,"
                " CAST('opted_in' AS varchar) AS consent"
            )
        else:
            audience = (
                "SELECT m.id, m.phone, m.consent FROM members m"
                f" WHERE m.church_id = :church_id AND {AUDIENCE[new.target_type]}"
            )
            if new.exclude_member_id is not None:
                audience += " AND m.id <> :exclude_member_id"
        stmt = text(
            f"""
            WITH audience AS MATERIALIZED ({audience}),
            tally AS (
                SELECT count(*) FILTER (WHERE consent = 'opted_in') AS recipients,
                       count(*) FILTER (WHERE consent = 'opted_out') AS skipped
                FROM audience
            ),
            msg AS (
                INSERT INTO messages (church_id, content, kind, target_type, target_ids,
                    encoding, segments, status, recipient_count, skipped_opted_out, created_by,
                    scheduled_at, conversation_id, recurring_id, completed_at)
                SELECT :church_id, :content, :kind, :target_type, CAST(:target_ids AS bigint[]),
                    :encoding, :segments,
                    CASE WHEN tally.recipients = 0 THEN 'completed' ELSE :status END,
                    tally.recipients, tally.skipped, CAST(:created_by AS bigint),
                    CAST(:scheduled_at AS timestamptz), CAST(:conversation_id AS bigint),
                    CAST(:recurring_id AS bigint),
                    CASE WHEN tally.recipients = 0 THEN now() END
                FROM tally
                RETURNING id, status
            ),
            ins AS (
                INSERT INTO message_recipients
                    (message_id, member_id, church_id, phone, segments, next_attempt_at)
                SELECT msg.id, a.id, :church_id, a.phone, :segments, CAST(:due_at AS timestamptz)
                FROM audience a CROSS JOIN msg
                WHERE a.consent = 'opted_in'
            ),
            quota AS (
                -- The month of the database clock, as created_at's: a refund goes to the month
                -- of the message's created_at, which must be the month reserved here.
                INSERT INTO usage AS u (church_id, month, texts)
                SELECT :church_id, {BILLING_MONTH}, tally.recipients
                FROM tally
                WHERE CAST(:text_limit AS bigint) IS NULL
                   OR tally.recipients <= CAST(:text_limit AS bigint)
                ON CONFLICT (church_id, month) DO UPDATE SET texts = u.texts + EXCLUDED.texts
                WHERE CAST(:text_limit AS bigint) IS NULL
                   OR u.texts + EXCLUDED.texts <= CAST(:text_limit AS bigint)
                RETURNING u.texts
            )
            SELECT msg.id, msg.status, tally.recipients, tally.skipped,
                   EXISTS (SELECT 1 FROM quota) AS quota_ok,
                   pg_notify('koinonia_work', msg.id::text)
            FROM msg, tally
            """
        )
        if new.target_type != "all" and new.direct is None:
            stmt = stmt.bindparams(_IDS)
        row = (
            await self.session.execute(
                stmt,
                {
                    "church_id": self.church_id,
                    "ids": new.target_ids,
                    "exclude_member_id": new.exclude_member_id,
                    "direct_id": new.direct.recipient_id if new.direct else None,
                    "direct_phone": new.direct.phone if new.direct else None,
                    "content": new.content,
                    "kind": new.kind,
                    "target_type": new.target_type,
                    "target_ids": new.target_ids,
                    "encoding": new.encoding,
                    "segments": new.segments,
                    "due_at": new.due_at,
                    "status": "scheduled" if new.scheduled_at is not None else "queued",
                    "scheduled_at": new.scheduled_at,
                    "created_by": new.created_by,
                    "conversation_id": new.conversation_id,
                    "recurring_id": new.recurring_id,
                    "text_limit": text_limit,
                },
            )
        ).one()
        return Created(int(row[0]), row[1], int(row[2]), int(row[3]), bool(row[4]))

    async def texts_used(self) -> int:
        """Texts of this month (the transaction's, `billing.repository.BILLING_MONTH`)."""
        stmt = text(
            "SELECT COALESCE((SELECT texts FROM usage WHERE church_id = :church_id"
            f" AND month = {BILLING_MONTH}), 0)"
        )
        used = await self.session.execute(stmt, {"church_id": self.church_id})
        return int(used.scalar_one())

    async def history(
        self,
        *,
        before: tuple[datetime, int] | None,
        limit: int,
        kind: str | None,
        status: str | None,
    ) -> list[Any]:
        where = ["m.church_id = :church_id"]
        params: dict[str, Any] = {"church_id": self.church_id, "limit": limit + 1}
        if before is not None:
            where.append("(m.created_at, m.id) < (CAST(:before_at AS timestamptz), :before_id)")
            params["before_at"], params["before_id"] = before
        if kind is not None:
            where.append("m.kind = :kind")
            params["kind"] = kind
        if status is not None:
            where.append("m.status = :status")
            params["status"] = status
        stmt = text(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m {_COUNTS}"
            f" WHERE {' AND '.join(where)} ORDER BY m.created_at DESC, m.id DESC LIMIT :limit"
        )
        return list((await self.session.execute(stmt, params)).all())

    async def get(self, message_id: int) -> Any | None:
        stmt = text(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m {_COUNTS}"
            " WHERE m.church_id = :church_id AND m.id = :id"
        )
        params = {"church_id": self.church_id, "id": message_id}
        return (await self.session.execute(stmt, params)).one_or_none()

    async def exists(self, message_id: int) -> bool:
        stmt = text("SELECT 1 FROM messages WHERE church_id = :church_id AND id = :id")
        params = {"church_id": self.church_id, "id": message_id}
        return (await self.session.execute(stmt, params)).first() is not None

    async def recipients(
        self, message_id: int, *, after_member: int | None, limit: int, status: str | None
    ) -> list[Any]:
        where = ["r.message_id = :id", "r.church_id = :church_id"]
        params: dict[str, Any] = {
            "id": message_id,
            "church_id": self.church_id,
            "limit": limit + 1,
        }
        if after_member is not None:
            where.append("r.member_id > :after")
            params["after"] = after_member
        if status is not None:
            where.append("r.status = :status")
            params["status"] = status
        stmt = text(
            "SELECT r.member_id, mem.first_name, mem.last_name, r.phone, r.status, r.segments,"
            " r.attempts, r.provider_message_id, r.error_code, r.error_text, r.sent_at,"
            " r.delivered_at FROM message_recipients r"
            " LEFT JOIN members mem ON mem.id = r.member_id"
            f" WHERE {' AND '.join(where)} ORDER BY r.member_id LIMIT :limit"
        )
        return list((await self.session.execute(stmt, params)).all())

    async def cancel(self, message_id: int) -> tuple[str, int] | None:
        """Queued recipients become skipped and their texts go back to the month's quota; the
        message is cancelled. (previous status, recipients cancelled), or None if not ours."""
        stmt = text(
            f"""
            WITH target AS (
                SELECT id, status, created_at FROM messages
                WHERE church_id = :church_id AND id = :id FOR NO KEY UPDATE
            ),
            skipped AS (
                UPDATE message_recipients r
                SET status = 'skipped', error_code = 'cancelled',
                    error_text = 'cancelled by an admin', next_attempt_at = NULL,
                    updated_at = now()
                FROM target
                WHERE r.message_id = target.id AND r.status = 'queued'
                  AND target.status IN ('scheduled', 'queued', 'sending')
                RETURNING 1
            ),
            n AS (SELECT count(*) AS n FROM skipped),
            refund AS (
                UPDATE usage u SET texts = GREATEST(u.texts - n.n, 0)
                FROM target, n
                WHERE u.church_id = :church_id
                  AND u.month = {billing_month_of("target.created_at")}
                  AND n.n > 0
            ),
            done AS (
                UPDATE messages m SET status = 'cancelled', completed_at = now()
                FROM target
                WHERE m.id = target.id AND target.status IN ('scheduled', 'queued', 'sending')
            )
            SELECT target.status, n.n FROM target, n
            """
        )
        row = (
            await self.session.execute(stmt, {"church_id": self.church_id, "id": message_id})
        ).one_or_none()
        return (row[0], int(row[1])) if row else None
