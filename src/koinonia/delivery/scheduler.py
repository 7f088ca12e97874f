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

from collections import defaultdict
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.db import observe
from koinonia.db.database import Database
from koinonia.groups.repository import DueWelcome, WelcomeQueue
from koinonia.groups.service import welcome_content
from koinonia.kit.errors import KoinoniaError
from koinonia.kit.logging import log
from koinonia.kit.schedule import ScheduleError
from koinonia.messages import limits
from koinonia.messages.service import Enqueued, Outgoing, enqueue_within_quota, plan_texts_of
from koinonia.recurring.repository import ScheduleQueue
from koinonia.recurring.service import next_send_at

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
        Outgoing(
            church=church,
            plan_texts=plan_texts_of(church),
            content=schedule.content,
            kind="recurring",
            target_type=schedule.target_type,
            target_ids=list(schedule.target_ids or []),
            created_by=schedule.created_by,
            recurring_id=schedule_id,
        ),
        event=event,
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
                church = churches[first.church_id]
                with observe.track("welcome_group"):
                    created = await _enqueue_or_skip(
                        session,
                        Outgoing(
                            church=church,
                            plan_texts=plan_texts_of(church),
                            content=welcome_content(first.welcome_text, first.group_name),
                            kind="welcome",
                            target_type="members",
                            target_ids=newcomers,
                        ),
                        event=event,
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
    session: AsyncSession, outgoing: Outgoing, *, event: dict[str, Any]
) -> Enqueued | None:
    """Create the message, skipping it (logged, None returned; the caller still records the
    work as done) when the month's texts are used up (`enqueue_within_quota`: only the
    message rolls back), when it is refused (no SMS number, too long) or when it fails."""
    church, content, kind = outgoing.church, outgoing.content, outgoing.kind
    try:
        # Checked when saved, but the church may have been renamed since: a text nobody could
        # receive is skipped (logged as `*_skipped`, reason validation_error) rather than
        # created to fail for everyone. One recipient's longer name fails just that recipient,
        # at sending (delivery.dispatcher). No statement: the church is loaded already.
        limits.check_content_alone(church.sms_provider, church.name, content, field="content")
        return await enqueue_within_quota(session, outgoing, event=event)
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
