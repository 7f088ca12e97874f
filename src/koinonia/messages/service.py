from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.billing.plans import effective_plan
from koinonia.churches.repository import ChurchRepository
from koinonia.config import get_settings
from koinonia.db.effects import church_changed
from koinonia.kit.errors import Conflict, NotFound, PlanLimitReached, ValidationFailed
from koinonia.kit.logging import log
from koinonia.kit.pagination import ID, TIMESTAMP, CursorSpec
from koinonia.kit.segments import count_segments, render, validate_template
from koinonia.messages import limits, quiet_hours
from koinonia.messages.repository import Direct, MessageRepository, NewMessage
from koinonia.messages.schemas import (
    DryRunOut,
    MessageCreated,
    MessageIn,
    MessageOut,
    QuotaOut,
    RecipientOut,
    StatusCounts,
)
from koinonia.models import Church
from koinonia.templates.repository import TemplateRepository

MESSAGES_CURSOR = CursorSpec("messages", (TIMESTAMP, ID))
RECIPIENTS_CURSOR = CursorSpec("recipients", (ID,))

# Typical values for merge fields when estimating segments before the per-recipient render.
_TYPICAL = {"first_name": "Elizabeth", "last_name": "Johnson", "group_name": "Youth Ministry"}

# Conversation texts are people's words (a relayed member text, an admin's reply) or fixed
# carrier texts (system): their content is final when written and is sent exactly as stored,
# never through merge-field rendering, so a member typing "{first_name}" is relayed as typed.
VERBATIM_KINDS = frozenset({"relay", "reply", "system"})


def _estimate(content: str, church_name: str) -> tuple[str, int]:
    info = count_segments(render(content, {**_TYPICAL, "church_name": church_name}))
    return info.encoding, info.segments


async def _resolve_content(session: AsyncSession, church_id: int, data: MessageIn) -> str:
    if data.content is not None:
        content = data.content
    else:
        assert data.template_id is not None
        templates = TemplateRepository(session, church_id=church_id)
        # A dry run changes nothing, not even the template's usage count.
        if data.dry_run:
            found = await templates.get(data.template_id)
            template = found.content if found is not None else None
        else:
            template = await templates.use(data.template_id)
        if template is None:
            raise ValidationFailed.field("template_id", "unknown template")
        content = template
    unknown = validate_template(content)
    if unknown:
        raise ValidationFailed.field(
            "content", f"unknown merge fields: {', '.join('{' + u + '}' for u in unknown)}"
        )
    return content


async def _check_targets(repo: MessageRepository, target_type: str, ids: list[int]) -> None:
    if target_type == "all":
        return
    missing = await repo.missing_target_ids(target_type, ids)
    if missing:
        raise ValidationFailed(
            f"unknown {target_type}: {', '.join(map(str, missing[:20]))}",
            fields={"target.ids": f"unknown {target_type} ids: {missing[:20]}"},
        )


async def check_provider_limit(
    session: AsyncSession,
    church: Church,
    content: str,
    target_type: str,
    target_ids: list[int],
    *,
    field: str = "content",
    audience: str = "audience",
) -> None:
    """422 on `field` when the text filled in for some recipient would be longer than the
    church's provider accepts (it would be accepted here and fail at the carrier). With
    {first_name} / {last_name}, one aggregate statement over the audience finds the longest;
    none without. Also used for recurring messages and welcome texts."""
    render = limits.plan(content, church.name)
    limit = limits.provider_limit(church.sms_provider)
    longest = None
    if render.fields:
        repo = MessageRepository(session, church_id=church.id)
        longest = await repo.longest_rendering(
            target_type, target_ids, render.fields, parts=limit.max_parts is not None
        )
        if longest.chars is None:
            # Nobody opted in yet: the text is still refused if no one could ever get it.
            limits.check_shortest(limit, render, field=field)
            return
    limits.check(limit, render, longest, field=field, audience=audience)


async def send(
    session: AsyncSession, auth: AuthContext, data: MessageIn
) -> MessageCreated | DryRunOut:
    church = await ChurchRepository(session, church_id=auth.church_id).get()
    if church is None:
        raise NotFound("church", auth.church_id)
    repo = MessageRepository(session, church_id=auth.church_id)
    content = await _resolve_content(session, auth.church_id, data)
    await _check_targets(repo, data.target.type, data.target.ids)
    await check_provider_limit(session, church, content, data.target.type, data.target.ids)
    limit = auth.plan.texts_per_month

    if data.dry_run:
        encoding, segments = _estimate(content, church.name)
        recipients, skipped = await repo.audience_counts(data.target.type, data.target.ids)
        used = await repo.texts_used()
        price = get_settings().segment_price_usd
        return DryRunOut(
            recipients=recipients,
            skipped_opted_out=skipped,
            encoding=encoding,
            segments_per_text=segments,
            total_texts=recipients,
            estimated_segments=recipients * segments,
            estimated_cost_usd=round(recipients * segments * price, 4),
            quota=QuotaOut(
                limit=limit,
                used=used,
                remaining=None if limit is None else max(limit - used, 0),
            ),
            would_exceed_quota=limit is not None and used + recipients > limit,
        )

    created = await enqueue(
        session,
        Outgoing(
            church=church,
            plan_texts=limit,
            content=content,
            kind="broadcast",
            target_type=data.target.type,
            target_ids=data.target.ids,
            created_by=auth.admin_id,
            scheduled_at=data.scheduled_at,
        ),
    )
    return MessageCreated(
        id=created.id,
        status=created.status,
        recipient_count=created.recipients,
        skipped_opted_out=created.skipped_opted_out,
        encoding=created.encoding,
        segments=created.segments,
        scheduled_at=created.due_at if created.status == "scheduled" else None,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """One message to send, of any kind (broadcast, reply, relay, recurring, welcome, system):
    everything `enqueue` needs.

    - `church` sends it (its number, name, timezone, quiet hours and provider);
      `plan_texts` is the month's texts it must fit in (402 beyond), None for never refused
      (system texts: a carrier-mandated answer must not fail).
    - `content` is sent to the opted-in members of `target_type` / `target_ids`, but for
      `exclude_member_id` (a relay's sender); `direct` (kind 'system' only) sends to exactly
      that one number whatever its consent, the target then only recorded on the message.
    - `scheduled_at` (None: now) is when it goes out, moved past the church's quiet hours
      when `hold_for_quiet_hours`.
    - `created_by` (the admin; None for the system), `conversation_id` and `recurring_id`
      (what it belongs to) are recorded on the message.
    """

    church: Church
    plan_texts: int | None
    content: str
    kind: str
    target_type: str
    target_ids: Sequence[int] = ()
    created_by: int | None = None
    scheduled_at: datetime | None = None
    hold_for_quiet_hours: bool = True
    conversation_id: int | None = None
    recurring_id: int | None = None
    exclude_member_id: int | None = None
    direct: Direct | None = None

    def __post_init__(self) -> None:
        if self.direct is not None and self.kind != "system":
            raise ValueError("a direct recipient is for system texts only")


@dataclass(frozen=True, slots=True)
class Enqueued:
    id: int
    status: str
    recipients: int
    skipped_opted_out: int
    due_at: datetime
    encoding: str
    segments: int


def plan_texts_of(church: Church) -> int | None:
    """The month's texts of the church's plan as it stands now, for the work no admin asked
    for (schedules, welcome texts, relays); a request takes its own from its `AuthContext`."""
    return effective_plan(church.plan, church.subscription_status).texts_per_month


async def enqueue(session: AsyncSession, outgoing: Outgoing) -> Enqueued:
    """The one way a text gets sent, for every kind: message + recipients + quota reservation
    in one statement; workers deliver. Kinds in VERBATIM_KINDS are sent as written. Once the
    caller's unit of work commits, the church's cached documents miss (`church_changed`).

    Raises Conflict without an SMS number and PlanLimitReached (402) when the month's texts
    would exceed `plan_texts`; the caller's transaction then rolls back, writing nothing."""
    church, content, kind = outgoing.church, outgoing.content, outgoing.kind
    if church.sms_number is None:
        raise Conflict(
            "set the church's SMS number (PATCH /church) before sending", code="no_sms_number"
        )
    now = datetime.now(UTC)
    due = max(outgoing.scheduled_at or now, now)
    if outgoing.hold_for_quiet_hours:
        due = quiet_hours.release_time(
            due, church.timezone, church.quiet_hours_start, church.quiet_hours_end
        )
    encoding: str
    if kind in VERBATIM_KINDS:
        info = count_segments(content)
        encoding, segments = info.encoding, info.segments
    else:
        encoding, segments = _estimate(content, church.name)
    repo = MessageRepository(session, church_id=church.id)
    created = await repo.create(
        NewMessage(
            content=content,
            kind=kind,
            target_type=outgoing.target_type,
            target_ids=list(outgoing.target_ids),
            encoding=encoding,
            segments=segments,
            due_at=due,
            scheduled_at=due if due > now else None,
            created_by=outgoing.created_by,
            conversation_id=outgoing.conversation_id,
            recurring_id=outgoing.recurring_id,
            exclude_member_id=outgoing.exclude_member_id,
            direct=outgoing.direct,
        ),
        text_limit=outgoing.plan_texts,
    )
    church_changed(session, church.id)
    if not created.quota_ok:
        assert outgoing.plan_texts is not None
        used = await repo.texts_used()  # the month reserved for: the same transaction
        raise PlanLimitReached(
            "texts this month", limit=outgoing.plan_texts, usage=used, requested=created.recipients
        )
    return Enqueued(
        created.id,
        created.status,
        created.recipients,
        created.skipped_opted_out,
        due,
        encoding,
        segments,
    )


async def enqueue_within_quota(
    session: AsyncSession, outgoing: Outgoing, *, event: Mapping[str, Any]
) -> Enqueued | None:
    """`enqueue` in a SAVEPOINT, for work that goes on without its text when the month's texts
    are used up (a schedule still advances, a welcome is still marked, a member's text is
    still stored): over the quota only the message rolls back, `{kind}_skipped_quota` is
    logged with `event` and the quota's numbers, and None returned. Any other error rolls
    back the savepoint too and propagates: the caller decides (the scheduler skips the text,
    an inbound webhook fails and the provider retries)."""
    try:
        async with session.begin_nested():
            return await enqueue(session, outgoing)
    except PlanLimitReached as exc:
        log.warning(f"{outgoing.kind}_skipped_quota", **event, **exc.extra)
        return None


def delivery_rate(*, sent: int, delivered: int, undelivered: int, failed: int) -> float | None:
    """Delivered share of the texts handed to the carrier; None before any was."""
    attempted = sent + delivered + undelivered + failed
    return round(delivered / attempted, 4) if attempted else None


def _message_out(row: Any) -> MessageOut:
    counts = StatusCounts(**{k: int(v) for k, v in (row.counts or {}).items()})
    return MessageOut(
        id=row.id,
        content=row.content,
        kind=row.kind,
        target_type=row.target_type,
        target_ids=list(row.target_ids or []),
        encoding=row.encoding,
        segments=row.segments,
        status=row.status,
        recipient_count=row.recipient_count,
        skipped_opted_out=row.skipped_opted_out,
        created_by=row.created_by,
        created_at=row.created_at,
        scheduled_at=row.scheduled_at,
        sent_at=row.sent_at,
        completed_at=row.completed_at,
        counts=counts,
        delivery_rate=delivery_rate(
            sent=counts.sent,
            delivered=counts.delivered,
            undelivered=counts.undelivered,
            failed=counts.failed,
        ),
    )


async def list_messages(
    session: AsyncSession,
    auth: AuthContext,
    *,
    limit: int,
    cursor: str | None,
    kind: str | None,
    status: str | None,
) -> tuple[list[MessageOut], str | None]:
    key = MESSAGES_CURSOR.decode(cursor)
    rows = await MessageRepository(session, church_id=auth.church_id).history(
        before=(key[0], key[1]) if key else None, limit=limit, kind=kind, status=status
    )
    items, next_cursor = MESSAGES_CURSOR.page(rows, limit, lambda r: (r.created_at, r.id))
    return [_message_out(r) for r in items], next_cursor


async def get_message(session: AsyncSession, auth: AuthContext, message_id: int) -> MessageOut:
    row = await MessageRepository(session, church_id=auth.church_id).get(message_id)
    if row is None:
        raise NotFound("message", message_id)
    return _message_out(row)


async def list_recipients(
    session: AsyncSession,
    auth: AuthContext,
    message_id: int,
    *,
    limit: int,
    cursor: str | None,
    status: str | None,
) -> tuple[list[RecipientOut], str | None]:
    repo = MessageRepository(session, church_id=auth.church_id)
    if not await repo.exists(message_id):
        raise NotFound("message", message_id)
    key = RECIPIENTS_CURSOR.decode(cursor, query=str(message_id))
    rows = await repo.recipients(
        message_id, after_member=key[0] if key else None, limit=limit, status=status
    )
    items, next_cursor = RECIPIENTS_CURSOR.page(
        rows, limit, lambda r: (r.member_id,), query=str(message_id)
    )
    return [RecipientOut.model_validate(r._mapping) for r in items], next_cursor


async def cancel(session: AsyncSession, auth: AuthContext, message_id: int) -> MessageOut:
    repo = MessageRepository(session, church_id=auth.church_id)
    result = await repo.cancel(message_id)
    if result is None:
        raise NotFound("message", message_id)
    previous, _ = result
    if previous in ("sent", "completed", "cancelled"):  # nothing left to hold back
        raise Conflict(f"message is already {previous}", code="not_cancellable")
    church_changed(session, auth.church_id)
    return await get_message(session, auth, message_id)
