"""Stats dashboards: one SQL statement each, cached per church (kit.cache).

Services return the JSON document as bytes: a cache hit is served as stored, without decoding
and re-validating it. Every committed write of the church's data invalidates its documents at
once (each service registers `db.effects.church_changed`; the delivery worker invalidates after
its write-backs); the TTLs bound what nothing announces: delivery reports from webhooks. A
service opens its session (`open_session`) only when the cache misses.
"""

from __future__ import annotations

from datetime import UTC, datetime

from koinonia.auth.context import AuthContext
from koinonia.billing.service import month_text
from koinonia.db.session import SessionSource
from koinonia.kit import cache
from koinonia.messages.service import delivery_rate
from koinonia.stats.repository import StatsRepository
from koinonia.stats.schemas import (
    BranchStatsOut,
    BranchStatsPage,
    DayStats,
    MemberCounts,
    MessageStatsOut,
    StatusTotals,
    SummaryOut,
)

SUMMARY_TTL_S = 60
BRANCHES_TTL_S = 300  # the seed plan's 5 minutes
MESSAGES_TTL_S = 120


async def summary(open_session: SessionSource, auth: AuthContext) -> bytes:
    # The month of the figures, and the one shown, is the database's (billing.repository);
    # this host's month only partitions the cache, so last month's summary is not served after
    # the turn of the month. "2026-12" without strftime (which cost more than the cache lookup).
    now = datetime.now(UTC)
    cache_month = f"{now.year:04d}-{now.month:02d}"

    async def load() -> SummaryOut:
        row = await StatsRepository(await open_session(), church_id=auth.church_id).summary()
        return SummaryOut(
            members=MemberCounts(
                total=row.members, opted_in=row.members - row.opted_out, opted_out=row.opted_out
            ),
            branches=row.branches,
            groups=row.groups,
            month=month_text(row.month),
            texts=row.texts,
            segments=row.segments,
            messages=row.messages,
            sent=row.sent,
            delivered=row.delivered,
            undelivered=row.undelivered,
            failed=row.failed,
            delivery_rate=delivery_rate(
                sent=row.sent,
                delivered=row.delivered,
                undelivered=row.undelivered,
                failed=row.failed,
            ),
        )

    return await cache.get_or_load_json(
        "stats.summary", auth.church_id, SUMMARY_TTL_S, load, variant=cache_month
    )


async def branches(open_session: SessionSource, auth: AuthContext, *, days: int) -> bytes:
    async def load() -> BranchStatsPage:
        rows = await StatsRepository(await open_session(), church_id=auth.church_id).branches(
            days=days
        )
        items = [
            BranchStatsOut(
                branch_id=r.id,
                name=r.name,
                is_active=r.is_active,
                groups=r.groups,
                members=r.members,
                messages=r.messages,
                texts=r.texts,
                sent=r.sent,
                delivered=r.delivered,
                undelivered=r.undelivered,
                failed=r.failed,
                delivery_rate=delivery_rate(
                    sent=r.sent, delivered=r.delivered, undelivered=r.undelivered, failed=r.failed
                ),
            )
            for r in rows
            if r.id is not None
        ]
        return BranchStatsPage(days=days, since=rows[0].since, items=items)

    return await cache.get_or_load_json(
        "stats.branches", auth.church_id, BRANCHES_TTL_S, load, variant=f"days={days}"
    )


async def messages(open_session: SessionSource, auth: AuthContext, *, days: int) -> bytes:
    async def load() -> MessageStatsOut:
        rows = await StatsRepository(
            await open_session(), church_id=auth.church_id
        ).messages_by_day(days=days)
        totals = StatusTotals(
            queued=sum(r.queued for r in rows),
            sending=sum(r.sending for r in rows),
            sent=sum(r.sent for r in rows),
            delivered=sum(r.delivered for r in rows),
            undelivered=sum(r.undelivered for r in rows),
            failed=sum(r.failed for r in rows),
            skipped=sum(r.skipped for r in rows),
        )
        series = [
            DayStats(
                day=r.day,
                messages=r.messages,
                texts=r.queued + r.sending + r.sent + r.delivered + r.undelivered + r.failed,
                delivered=r.delivered,
            )
            for r in rows
        ]
        return MessageStatsOut(
            days=days,
            timezone=rows[0].tz,
            since=rows[0].since,
            messages=sum(d.messages for d in series),
            texts=sum(d.texts for d in series),
            by_status=totals,
            delivery_rate=delivery_rate(
                sent=totals.sent,
                delivered=totals.delivered,
                undelivered=totals.undelivered,
                failed=totals.failed,
            ),
            series=series,
        )

    return await cache.get_or_load_json(
        "stats.messages", auth.church_id, MESSAGES_TTL_S, load, variant=f"days={days}"
    )
