"""Due schedules and welcome texts: rows with a due time, claimed with SKIP LOCKED (DESIGN §5).

The worker loop calls both functions every few seconds; any number of workers may run them.

- `fire_due_schedules`: one transaction per schedule claims it, creates its message through the
  normal send path and advances it, so a schedule fires once per occurrence whatever the number
  of workers, and a crash before the commit leaves it due for the next worker. After downtime a
  schedule fires once and jumps to its first occurrence in the future (no burst of missed ones).
- `send_due_welcomes`: one transaction per batch claims due memberships, creates one welcome
  message per group for its opted-in newcomers and marks every claimed membership sent.
  Memberships of opted-out members (or of groups whose welcome was switched off since they
  joined) are marked too and never texted: a member who opts back in later gets no belated
  welcome. Due times live in `group_members.welcome_due_at`, so nothing is lost on a restart.

A message refused (over the plan's monthly texts: `*_skipped_quota`; no SMS number; a text
longer than the provider accepts even with empty names, e.g. after the church was renamed) or
failing is skipped, logged, not retried: the schedule still advances and the welcome is still
marked, otherwise every poll would retry it forever and, first in the queue, hold up everyone
else.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ARRAY, BigInteger, bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.billing.plans import effective_plan
from koinonia.db import observe
from koinonia.db.database import Database
from koinonia.kit.errors import KoinoniaError, PlanLimitReached
from koinonia.kit.logging import log
from koinonia.kit.schedule import ScheduleError
from koinonia.messages import limits
from koinonia.messages.service import Enqueued, enqueue
from koinonia.models import Church
from koinonia.recurring.repository import ScheduleQueue
from koinonia.recurring.service import next_send_at

DEFAULT_WELCOME = "Welcome to {group_name}!"
_GROUP_NAME = re.compile(r"\{ *group_name *(?:\|([^{}]*))?\}")

__all__ = ["fire_due_schedules", "send_due_welcomes"]


# --- recurring messages ------------------------------------------------------------------------


async def fire_due_schedules(
    database: Database, limit: int = 100, *, church_id: int | None = None
) -> int:
    """Fire up to `limit` due schedules, each in its own transaction and tracked unit of work.
    Returns how many created a message. `church_id` (tests only) restricts the queue."""
    fired = 0
    for _ in range(limit):
        with observe.track("schedule"):
            async with database.session() as session:
                outcome = await _fire_one(session, church_id)
        if outcome is None:
            break
        fired += outcome
    return fired


async def _fire_one(session: AsyncSession, church_id: int | None) -> bool | None:
    """Claim, send and advance one due schedule. None when nothing is due."""
    queue = ScheduleQueue(session)
    due = await queue.claim_due(church_id=church_id)
    if due is None:
        return None
    schedule, church = due.schedule, due.church
    schedule_id = schedule.id
    event = {"schedule_id": schedule_id, "church_id": church.id}
    try:
        # Strictly after the claim's clock, which is past the due time: missed occurrences
        # collapse into this one firing.
        upcoming = next_send_at(schedule, church.timezone, due.now)
    except ScheduleError as exc:  # a stored schedule that can't be computed: stop it, loudly
        await queue.deactivate(schedule_id)
        log.error("recurring_deactivated_invalid", reason=str(exc), **event)
        return False

    created = await _enqueue_or_skip(
        session,
        event=event,
        church=church,
        content=schedule.content,
        kind="recurring",
        target_type=schedule.target_type,
        target_ids=list(schedule.target_ids or []),
        created_by=schedule.created_by,
        recurring_id=schedule_id,
    )
    await queue.advance(schedule_id, upcoming, sent=created is not None)
    if created is not None:
        log.info(
            "recurring_fired",
            message_id=created.id,
            recipients=created.recipients,
            held_for_quiet_hours=created.status == "scheduled",
            next_send_at=upcoming.isoformat(),
            **event,
        )
    return created is not None


# --- welcome texts ------------------------------------------------------------------------------


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


def welcome_content(welcome_text: str | None, group_name: str) -> str:
    """The group's welcome text (or the default) with `{group_name}` filled in; the other merge
    fields stay for the per-recipient render."""
    template = welcome_text if welcome_text and welcome_text.strip() else DEFAULT_WELCOME
    return _GROUP_NAME.sub(lambda _: group_name, template)


async def send_due_welcomes(
    database: Database, limit: int = 1000, *, church_id: int | None = None
) -> int:
    """Send the welcome texts due now: one message per group, all in one transaction with the
    claim, so each membership is welcomed once. Returns how many memberships were handled
    (welcomed or skipped); call again at once when it equals `limit`. `church_id`: tests only."""
    with observe.track("welcome"):
        async with database.session() as session:
            queue = WelcomeQueue(session)
            due = await queue.claim_due(limit=limit, church_id=church_id)
            if not due:
                return 0
            churches = await queue.churches(d.church_id for d in due)
            by_group: dict[int, list[DueWelcome]] = defaultdict(list)
            for d in due:
                by_group[d.group_id].append(d)
            for group_id, members in by_group.items():
                first = members[0]
                newcomers = [d.member_id for d in members if d.opted_in]
                if not first.welcome_enabled or not newcomers:
                    continue
                # One unit of work per message: a batch spanning many groups sends one message
                # per group (a constant number of statements each), which is not an N+1.
                event = {"group_id": group_id, "church_id": first.church_id}
                with observe.track("welcome_group"):
                    created = await _enqueue_or_skip(
                        session,
                        event=event,
                        church=churches[first.church_id],
                        content=welcome_content(first.welcome_text, first.group_name),
                        kind="welcome",
                        target_type="members",
                        target_ids=newcomers,
                    )
                if created is not None:
                    log.info(
                        "welcome_sent",
                        message_id=created.id,
                        recipients=created.recipients,
                        held_for_quiet_hours=created.status == "scheduled",
                        **event,
                    )
            await queue.mark_sent(due)
    return len(due)


# --- shared -------------------------------------------------------------------------------------


async def _enqueue_or_skip(
    session: AsyncSession,
    *,
    event: dict[str, Any],
    church: Church,
    content: str,
    kind: str,
    target_type: str,
    target_ids: list[int],
    created_by: int | None = None,
    recurring_id: int | None = None,
) -> Enqueued | None:
    """Create the message in a SAVEPOINT: a refusal (over the plan's texts, no SMS number) or
    a failure rolls back just the message, logs why and returns None; the caller still records
    the work as done."""
    plan = effective_plan(church.plan, church.subscription_status)
    try:
        # Checked when saved, but the church may have been renamed since: a text nobody could
        # receive is skipped (logged as `*_skipped`, reason validation_error) rather than
        # created to fail for everyone. One recipient's longer name fails just that recipient,
        # at sending (delivery.dispatcher). No statement: the church is loaded already.
        limits.check_content_alone(church.sms_provider, church.name, content, field="content")
        async with session.begin_nested():
            created = await enqueue(
                session,
                church=church,
                plan_texts=plan.texts_per_month,
                content=content,
                kind=kind,
                target_type=target_type,
                target_ids=target_ids,
                created_by=created_by,
                hold_for_quiet_hours=True,
                recurring_id=recurring_id,
            )
    except PlanLimitReached as exc:
        log.warning(f"{kind}_skipped_quota", **event, **exc.extra)
        return None
    except KoinoniaError as exc:
        log.warning(f"{kind}_skipped", reason=exc.code, detail=exc.detail, **event)
        return None
    except observe.NPlusOneDetected:
        raise
    except Exception:
        # A poison row must not block the queue (the claim takes the most overdue first) nor be
        # retried every poll: skip it loudly. A lost connection still propagates, from the
        # caller's next statement, and the whole unit is retried.
        log.exception(f"{kind}_failed", **event)
        return None
    return created
