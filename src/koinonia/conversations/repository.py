"""All SQL of conversations: the inbound path (church by number, keyword consent, once-a-day
auto-replies, storing a text once) and the admin API (list, thread, reply, status).

Every method is one statement. The inbound writes are single upserts or conditional updates,
so concurrent webhooks (the same text twice, or two texts from one member) need no locks of
their own: unique keys and row locks taken by the statements decide.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Row, and_, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.models import Church, Conversation, Member

# One conversation with its member and a preview of its newest message (index probe per row on
# ix_conversation_messages_thread, so a page costs the same whatever the threads' lengths).
_CONVERSATION_COLUMNS = """
    c.id, c.member_id, c.status, c.unread_count, c.last_message_at, c.created_at,
    m.first_name, m.last_name, m.phone, m.consent,
    lm.direction AS last_direction, left(lm.body, :preview) AS last_body,
    lm.created_at AS last_created_at
"""
_CONVERSATION_JOINS = """
    JOIN members m ON m.id = c.member_id AND m.church_id = c.church_id
    LEFT JOIN LATERAL (
        SELECT cm.direction, cm.body, cm.created_at FROM conversation_messages cm
        WHERE cm.conversation_id = c.id ORDER BY cm.id DESC LIMIT 1
    ) lm ON TRUE
"""
PREVIEW_CHARS = 160

# The church-local calendar day: "once a day" means the church's day, not UTC's.
_LOCAL_DAY = "CAST(now() AT TIME ZONE :tz AS date)"


async def find_church_by_number(
    session: AsyncSession, number: str, *, sender_phone: str
) -> Row[Church, Member] | None:
    """The church whose SMS number is `number`, with its member whose phone is `sender_phone`
    (None when the sender is not a member). Cross-church by nature: an inbound text names no
    tenant, only the number it was sent to (churches.sms_number is unique)."""
    stmt = (
        select(Church, Member)
        .outerjoin(Member, and_(Member.church_id == Church.id, Member.phone == sender_phone))
        .where(Church.sms_number == number)
    )
    return (await session.execute(stmt)).one_or_none()


class ConversationRepository:
    def __init__(self, session: AsyncSession, *, church_id: int) -> None:
        self.session = session
        self.church_id = church_id

    # --- inbound ------------------------------------------------------------------------------

    async def apply_keyword(
        self, *, member_id: int, phone: str, consent: str | None, reason: str, tz: str
    ) -> tuple[bool, bool]:
        """Set the member's consent (when `consent` is given and differs) and claim today's
        auto-reply for `reason`. Returns (consent changed, first such reply today).

        The conditional UPDATE is the race arbiter: of two identical STOPs at once, the second
        waits on the member's row lock, re-checks `consent <> 'opted_out'` and changes nothing."""
        stmt = text(
            f"""
            WITH changed AS (
                UPDATE members
                SET consent = CAST(:consent AS varchar), consent_changed_at = now(),
                    consent_source = 'keyword'
                WHERE church_id = :church_id AND id = :member_id
                  AND CAST(:consent AS varchar) IS NOT NULL
                  AND consent <> CAST(:consent AS varchar)
                RETURNING id
            ),
            claimed AS (
                INSERT INTO inbound_auto_replies (church_id, phone, day, reason, recipient_id)
                VALUES (:church_id, :phone, {_LOCAL_DAY}, :reason, :member_id)
                ON CONFLICT DO NOTHING
                RETURNING 1
            )
            SELECT EXISTS (SELECT 1 FROM changed), EXISTS (SELECT 1 FROM claimed)
            """
        )
        row = (
            await self.session.execute(
                stmt,
                {
                    "church_id": self.church_id,
                    "member_id": member_id,
                    "phone": phone,
                    "consent": consent,
                    "reason": reason,
                    "tz": tz,
                },
            )
        ).one()
        return bool(row[0]), bool(row[1])

    async def claim_unknown_sender_reply(self, *, phone: str, tz: str) -> int | None:
        """Today's one auto-reply to a number that is no member: the recipient id to send it
        under (drawn from the members' id sequence, so no member ever has it), or None when
        this number already got today's reply."""
        stmt = text(
            f"""
            INSERT INTO inbound_auto_replies (church_id, phone, day, reason, recipient_id)
            VALUES (:church_id, :phone, {_LOCAL_DAY}, 'unknown_sender',
                    nextval(pg_get_serial_sequence('members', 'id')))
            ON CONFLICT DO NOTHING
            RETURNING recipient_id
            """
        )
        params = {"church_id": self.church_id, "phone": phone, "tz": tz}
        found = (await self.session.execute(stmt, params)).scalar_one_or_none()
        return int(found) if found is not None else None

    async def ensure_conversation(self, member_id: int) -> None:
        """The member's conversation exists after this (created by this call or a concurrent
        one: ON CONFLICT waits for the other to commit). No write when it already exists."""
        stmt = text(
            """
            INSERT INTO conversations (church_id, member_id)
            SELECT :church_id, :member_id
            WHERE NOT EXISTS (SELECT 1 FROM conversations
                              WHERE church_id = :church_id AND member_id = :member_id)
            ON CONFLICT (church_id, member_id) DO NOTHING
            """
        )
        await self.session.execute(stmt, {"church_id": self.church_id, "member_id": member_id})

    async def store_inbound(
        self, *, member_id: int, body: str, provider_message_id: str
    ) -> tuple[int, int] | None:
        """Store the text once and count it on the conversation, atomically: (conversation
        message id, conversation id), or None when this provider id was stored before.

        The unique provider id decides: a duplicate (even one arriving at the same moment)
        inserts nothing, so it neither counts as unread nor gets relayed. The counter update
        is `unread_count + 1` under the row lock, so concurrent texts all count. A closed
        conversation reopens; an archived one stays archived (the admin filed it away on
        purpose) but still counts the text as unread and moves up by its time.

        Times are clock_timestamp(), the moment the text is stored, and last_message_at only
        moves forward, even when two texts commit out of order."""
        stmt = text(
            """
            WITH conv AS (
                SELECT id FROM conversations
                WHERE church_id = :church_id AND member_id = :member_id
            ),
            ins AS (
                INSERT INTO conversation_messages (church_id, conversation_id, direction, body,
                    provider_message_id, status, created_at)
                SELECT :church_id, conv.id, 'inbound', :body, :provider_message_id, 'received',
                    clock_timestamp()
                FROM conv
                ON CONFLICT (provider_message_id) WHERE provider_message_id IS NOT NULL
                DO NOTHING
                RETURNING id, conversation_id
            ),
            counted AS (
                UPDATE conversations c
                SET unread_count = c.unread_count + 1,
                    last_message_at = GREATEST(c.last_message_at, clock_timestamp()),
                    status = CASE WHEN c.status = 'closed' THEN 'open' ELSE c.status END
                FROM ins
                WHERE c.id = ins.conversation_id
                RETURNING c.id
            )
            SELECT ins.id, ins.conversation_id FROM ins
            """
        )
        row = (
            await self.session.execute(
                stmt,
                {
                    "church_id": self.church_id,
                    "member_id": member_id,
                    "body": body,
                    "provider_message_id": provider_message_id,
                },
            )
        ).one_or_none()
        return (int(row[0]), int(row[1])) if row else None

    # --- admin API ----------------------------------------------------------------------------

    async def page(
        self,
        *,
        after: tuple[datetime, int] | None,
        limit: int,
        status: str | None,
        unread_only: bool,
    ) -> list[Any]:
        """Newest activity first: (last_message_at DESC, id ASC), the order of
        ix_conversations_church_last, with a keyset cursor on both."""
        where = ["c.church_id = :church_id"]
        params: dict[str, Any] = {
            "church_id": self.church_id,
            "limit": limit + 1,
            "preview": PREVIEW_CHARS,
        }
        if after is not None:
            # The first term bounds the index range; the second breaks ties on the time.
            where.append(
                "c.last_message_at <= CAST(:after_at AS timestamptz)"
                " AND (c.last_message_at < CAST(:after_at AS timestamptz) OR c.id > :after_id)"
            )
            params["after_at"], params["after_id"] = after
        if status is not None:
            where.append("c.status = :status")
            params["status"] = status
        if unread_only:
            where.append("c.unread_count > 0")
        stmt = text(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c {_CONVERSATION_JOINS}"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY c.last_message_at DESC, c.id LIMIT :limit"
        )
        return list((await self.session.execute(stmt, params)).all())

    async def get(self, conversation_id: int) -> Any | None:
        stmt = text(
            f"SELECT {_CONVERSATION_COLUMNS} FROM conversations c {_CONVERSATION_JOINS}"
            " WHERE c.church_id = :church_id AND c.id = :id"
        )
        params = {"church_id": self.church_id, "id": conversation_id, "preview": PREVIEW_CHARS}
        return (await self.session.execute(stmt, params)).one_or_none()

    async def update(
        self, conversation_id: int, *, status: str | None, read: bool | None
    ) -> Any | None:
        """Change status and/or read state; the updated conversation as `get` returns it, or
        None when it is not this church's. read=True clears the unread count; read=False marks
        it unread (at least 1) without inventing texts."""
        stmt = text(
            f"""
            WITH c AS (
                UPDATE conversations
                SET status = COALESCE(CAST(:status AS varchar), status),
                    unread_count = CASE CAST(:read AS boolean)
                        WHEN TRUE THEN 0
                        WHEN FALSE THEN GREATEST(unread_count, 1)
                        ELSE unread_count END
                WHERE church_id = :church_id AND id = :id
                RETURNING *
            )
            SELECT {_CONVERSATION_COLUMNS} FROM c {_CONVERSATION_JOINS}
            """
        )
        params = {
            "church_id": self.church_id,
            "id": conversation_id,
            "status": status,
            "read": read,
            "preview": PREVIEW_CHARS,
        }
        return (await self.session.execute(stmt, params)).one_or_none()

    async def exists(self, conversation_id: int) -> bool:
        stmt = text("SELECT 1 FROM conversations WHERE church_id = :church_id AND id = :id")
        params = {"church_id": self.church_id, "id": conversation_id}
        return (await self.session.execute(stmt, params)).first() is not None

    async def thread(self, conversation_id: int, *, before_id: int | None, limit: int) -> list[Any]:
        """Newest first, keyset on the id. An outbound text shows its delivery to this
        conversation's member (their recipient row) when there is one."""
        where = ["cm.church_id = :church_id", "cm.conversation_id = :id"]
        params: dict[str, Any] = {
            "church_id": self.church_id,
            "id": conversation_id,
            "limit": limit + 1,
        }
        if before_id is not None:
            where.append("cm.id < :before_id")
            params["before_id"] = before_id
        stmt = text(
            "SELECT cm.id, cm.direction, cm.body, cm.created_at, cm.message_id,"
            " COALESCE(r.status, cm.status) AS status"
            " FROM conversation_messages cm"
            " JOIN conversations c ON c.id = cm.conversation_id"
            " LEFT JOIN message_recipients r"
            "   ON r.message_id = cm.message_id AND r.member_id = c.member_id"
            f" WHERE {' AND '.join(where)} ORDER BY cm.id DESC LIMIT :limit"
        )
        return list((await self.session.execute(stmt, params)).all())

    async def for_reply(self, conversation_id: int) -> Row[Church, int, str] | None:
        """(church, member id, member consent) of this church's conversation, for a reply."""
        stmt = (
            select(Church, Conversation.member_id, Member.consent)
            .join(Conversation, Conversation.church_id == Church.id)
            .join(Member, and_(Member.id == Conversation.member_id, Member.church_id == Church.id))
            .where(Church.id == self.church_id, Conversation.id == conversation_id)
        )
        return (await self.session.execute(stmt)).one_or_none()

    async def add_outbound(
        self, conversation_id: int, *, body: str, message_id: int, status: str
    ) -> Any:
        """Put our reply in the thread and move the conversation: it is the latest activity,
        and an admin who replied has read it."""
        stmt = text(
            """
            WITH conv AS (
                UPDATE conversations
                SET last_message_at = GREATEST(last_message_at, clock_timestamp()),
                    unread_count = 0
                WHERE church_id = :church_id AND id = :id
                RETURNING id
            )
            INSERT INTO conversation_messages
                (church_id, conversation_id, direction, body, message_id, status, created_at)
            SELECT :church_id, conv.id, 'outbound', :body, :message_id, :status,
                clock_timestamp()
            FROM conv
            RETURNING id, direction, body, created_at, message_id, status
            """
        )
        params = {
            "church_id": self.church_id,
            "id": conversation_id,
            "body": body,
            "message_id": message_id,
            "status": status,
        }
        return (await self.session.execute(stmt, params)).one()
