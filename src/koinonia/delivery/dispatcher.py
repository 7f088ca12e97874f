"""Claim → send → record: one batch of due texts (DESIGN §5).

Three phases, never a provider call inside a database transaction: the claim commits (rows are
'sending' with a lease), the texts go out concurrently under a semaphore and the per-number
rate limiter, then every result is written back in a new transaction with a constant number of
statements. Any number of dispatchers in any number of processes can run at once; Postgres
hands each row to one of them.

What the carrier answered is the only record of what it took, so the write-back is never given
up while it can still matter: during a database outage it is retried with backoff for as long
as the worker runs (when stopping, until the batch's lease expires, after which another worker
may own the rows). An outage shorter than the lease therefore sends nothing twice.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from koinonia.config import Settings
from koinonia.db import observe
from koinonia.db.database import Database
from koinonia.db.outage import CONFLICT_SQLSTATES, sqlstate
from koinonia.delivery.outage import DatabaseOutage
from koinonia.delivery.ratelimit import RateLimiter, build_rate_limiter
from koinonia.delivery.repository import (
    FAILED,
    RELEASED,
    RETRY,
    SENT,
    ClaimedRecipient,
    DeliveryRepository,
    Outcome,
    Recorded,
    RetryPolicy,
)
from koinonia.kit import metrics
from koinonia.kit.cache import invalidate_church
from koinonia.kit.logging import log
from koinonia.kit.segments import count_segments, render
from koinonia.messages import limits
from koinonia.messages.service import VERBATIM_KINDS
from koinonia.sms.base import (
    OutboundSms,
    Provider,
    ProviderName,
    SendResult,
    create_http_client,
)
from koinonia.sms.http import HttpClient
from koinonia.sms.providers import build_provider

# Codes that mean "slow down" rather than "this text is in trouble" (HTTP 429, Twilio 20429,
# Telnyx 10011): the text waits out Retry-After and may try up to max_rate_limited_attempts
# times. The number itself is not paused: Retry-After comes in whole seconds while carriers
# refill per message, so pausing a number on every 429 collapses it to ~1 text a second.
RATE_LIMITED_CODES = frozenset({"429", "20429", "10011"})
# Backoff of a write-back retried after a conflict (deadlock 40P01, serialisation 40001), in
# seconds: base * 2**(n-1) up to the cap. (Outages back off per DatabaseOutage.)
_CONFLICT_RETRY_BASE_S = 0.05
_CONFLICT_RETRY_MAX_S = 2.0


@dataclass(frozen=True, slots=True)
class BatchResult:
    claimed: int = 0
    sent: int = 0
    retried: int = 0
    failed: int = 0
    skipped: int = 0  # opted out or deleted since the message was written
    released: int = 0  # claimed but not sent (shutdown, no rate slot within the lease)
    recorded: int = 0
    statements: int = 0  # SQL statements the batch ran (constant whatever its size)


def status_callback_url(settings: Settings, provider: str) -> str:
    """Where the provider posts delivery reports for a text (our webhook routes)."""
    if provider == "telnyx":
        return f"{settings.public_url}/api/v1/webhooks/telnyx"
    return f"{settings.public_url}/api/v1/webhooks/twilio/status"


def backoff_s(settings: Settings, attempts: int, retry_after: float | None) -> float:
    """Delay before the next try: the provider's Retry-After when given (plus up to 20%, so
    the texts it refused do not all come back in the same millisecond), else exponential
    from retry_base_s with "equal jitter" (half fixed, half random)."""
    if retry_after is not None:
        return min(settings.retry_max_s, retry_after * (1.0 + 0.2 * random.random()))
    ceiling = min(settings.retry_max_s, settings.retry_base_s * 2.0 ** max(0, attempts - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


class Dispatcher:
    """Sends batches of due texts from `database`; share one per process (it owns the HTTP
    session). Its claims and write-backs end their own transactions (`Database.sessions`).

    `stop`, once set, makes `run_once` claim nothing and release claimed texts that have not
    been handed to a provider yet; texts already in flight finish and are recorded.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        *,
        limiter: RateLimiter | None = None,
        stop: asyncio.Event | None = None,
        http: HttpClient | None = None,
        outage: DatabaseOutage | None = None,
    ) -> None:
        self.settings = settings
        # Shared with the worker's other loops (koinonia.delivery.worker) for one log per cause.
        self.outage = outage or DatabaseOutage()
        self.limiter = limiter or build_rate_limiter(settings)
        self.stop = stop or asyncio.Event()
        self.database = database
        self._http = http
        self._owns_http = http is None
        self._providers: dict[str, Provider] = {}
        self._semaphore = asyncio.Semaphore(settings.send_concurrency)
        # A batch is at most what one number may send in half a lease, so a slow number (a
        # long code at 1/s) cannot hold rows until their lease expires under it.
        by_rate = int(settings.send_rate_per_number * settings.lease_s / 2)
        self.batch_size = max(1, min(settings.claim_batch_size, by_rate))

    # --- resources --------------------------------------------------------------------------

    def _client(self) -> HttpClient:
        if self._http is None:
            self._http = create_http_client(connection_limit=self.settings.send_concurrency)
        return self._http

    def provider(self, name: str) -> Provider:
        """The adapter for a church's provider, built once per process on the shared session.
        Raises ValueError when it is misconfigured (missing credentials)."""
        cached = self._providers.get(name)
        if cached is not None:
            return cached
        s = self.settings
        known: dict[str, tuple[ProviderName, str]] = {
            "sandbox": ("sandbox", s.sandbox_url),
            "twilio": ("twilio", s.twilio_api_url),
            "telnyx": ("telnyx", s.telnyx_api_url),
        }
        if name not in known:
            raise ValueError(f"unknown SMS provider {name!r}")
        provider_name, base_url = known[name]
        built = build_provider(
            provider_name,
            base_url=base_url,
            twilio_account_sid=s.twilio_account_sid,
            twilio_auth_token=s.twilio_token or "",
            telnyx_api_key=s.telnyx_key or "",
            timeout_s=s.sms_timeout_s,
            http=self._client(),
        )
        self._providers[name] = built
        return built

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
        self._providers.clear()
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None
        await self.limiter.close()

    # --- one batch --------------------------------------------------------------------------

    async def run_once(self) -> BatchResult:
        """Claim one batch, send it, record it. Returns what happened (claimed 0 = no work)."""
        if self.stop.is_set():
            return BatchResult()
        with observe.track("delivery.batch") as stats:
            started = time.monotonic()
            async with self.database.sessions() as session:
                claimed = await DeliveryRepository(session).claim_due_recipients(
                    limit=self.batch_size, lease_s=self.settings.lease_s
                )
                await session.commit()
            self.outage.succeeded()
            if not claimed:
                return BatchResult(statements=stats.count)
            to_send = [c for c in claimed if c.status == "sending"]
            # Half the lease for waiting on rate slots; the rest covers the send itself.
            deadline = started + self.settings.lease_s / 2
            outcomes = await asyncio.gather(*(self._deliver(c, deadline) for c in to_send))
            recorded = await self._record(
                list(outcomes),
                lease=to_send[0].lease if to_send else None,
                message_ids=[c.message_id for c in claimed],
                skipped_unsent=[
                    c.message_id for c in claimed if c.status == "skipped" and c.attempts == 0
                ],
                # The claim set the lease from the database clock after `started`: this
                # local estimate ends no later than the lease itself.
                lease_ends=started + self.settings.lease_s,
            )
        # Delivery counts changed: cached dashboards of these churches miss from now on (once
        # per church per batch, after the commit).
        for church_id in {c.church_id for c in claimed}:
            await invalidate_church(church_id)
        kinds = [o.outcome for o in outcomes]
        result = BatchResult(
            claimed=len(claimed),
            sent=kinds.count(SENT),
            retried=kinds.count(RETRY),
            failed=kinds.count(FAILED),
            skipped=len(claimed) - len(to_send),
            released=kinds.count(RELEASED),
            recorded=recorded.recorded,
            statements=stats.count,
        )
        if recorded.recorded < len(outcomes):
            # Another worker took these rows over after their lease expired; its claim wins.
            log.warning("delivery_lease_lost", lost=len(outcomes) - recorded.recorded)
        return result

    async def _record(
        self,
        outcomes: list[Outcome],
        *,
        lease: datetime | None,
        message_ids: list[int],
        skipped_unsent: list[int],
        lease_ends: float | None = None,
    ) -> Recorded:
        """Write the batch back, retrying outages and conflicts with backoff (see the module
        docstring); anything else is a bug and raises at once. `lease_ends` (monotonic) bounds
        the retries once the dispatcher is stopping."""
        attempt = 0
        while True:
            attempt += 1
            try:
                # Each attempt counts its own statements; only the one that commits joins the
                # batch's count, so retries neither inflate it nor look like an N+1.
                with observe.track("delivery.record") as attempt_stats:
                    async with self.database.sessions() as session:
                        recorded = await DeliveryRepository(session).record_results(
                            outcomes,
                            lease=lease,
                            message_ids=message_ids,
                            skipped_unsent=skipped_unsent,
                            retry=RetryPolicy.from_settings(self.settings),
                        )
                        await session.commit()
            except (DBAPIError, OSError, PoolTimeoutError) as exc:
                state = sqlstate(exc)
                delay = self.outage.failed(exc, during="delivery.record")
                if delay is None:
                    if state not in CONFLICT_SQLSTATES:
                        raise
                    delay = min(_CONFLICT_RETRY_MAX_S, _CONFLICT_RETRY_BASE_S * 2 ** (attempt - 1))
                    log.warning("delivery_record_retry", attempt=attempt, sqlstate=state)
                if self.stop.is_set() and (lease_ends is None or time.monotonic() >= lease_ends):
                    # Stopping, and the rows may be someone else's by now: the lease sweep
                    # puts them back and they are sent again.
                    log.error(
                        "delivery_results_unrecorded", results=len(outcomes), attempts=attempt
                    )
                    raise
                await asyncio.sleep(delay)
                continue
            self.outage.succeeded()
            batch = observe.current()
            if batch is not None:
                batch.count += attempt_stats.count
                batch.db_seconds += attempt_stats.db_seconds
                batch.statements.extend(attempt_stats.statements)
            return recorded

    # --- one text ---------------------------------------------------------------------------

    async def _deliver(self, row: ClaimedRecipient, deadline: float) -> Outcome:
        try:
            return await self._deliver_unguarded(row, deadline)
        except Exception as exc:  # a bug must not lose the batch's other results
            log.exception("delivery_send_error", message_id=row.message_id)
            return self._retry_or_fail(row, SendResult(None, "internal", str(exc)[:500], True))

    async def _deliver_unguarded(self, row: ClaimedRecipient, deadline: float) -> Outcome:
        if not row.sms_number:
            return self._outcome(
                row, FAILED, "no_sms_number", "the church has no SMS number", refund=True
            )
        try:
            provider = self.provider(row.sms_provider)
        except ValueError as exc:
            log.error("delivery_provider_misconfigured", provider=row.sms_provider, error=str(exc))
            result = SendResult(None, "provider_config", str(exc), transient=True)
            return self._retry_or_fail(row, result)
        # Relays, replies and system texts hold other people's words, already composed: their
        # braces are literal, never merge fields.
        body = (
            row.content
            if row.kind in VERBATIM_KINDS
            else render(
                row.content,
                {
                    "first_name": row.first_name or "",
                    "last_name": row.last_name or "",
                    "church_name": row.church_name,
                },
            )
        )
        # Checked when the send was accepted, but a recurring or welcome text reaches whoever
        # is in the audience when it fires (a longer name since, a renamed church): the carrier
        # would refuse it, so fail it here with the reason, unsent and refunded. The others of
        # the message still go out.
        too_long = limits.exceeded(row.sms_provider, body)
        if too_long is not None:
            return self._outcome(row, FAILED, "text_too_long", too_long, refund=True)
        if not await self.limiter.acquire(
            row.sms_number, max_wait=max(0.0, deadline - time.monotonic()), stop=self.stop
        ):
            return self._outcome(row, RELEASED)
        async with self._semaphore:
            if self.stop.is_set():
                return self._outcome(row, RELEASED)
            result = await provider.send(
                OutboundSms(
                    to=row.phone,
                    from_=row.sms_number,
                    body=body,
                    status_callback=status_callback_url(self.settings, row.sms_provider),
                )
            )
        if result.ok:
            metrics.SMS_SENT.labels(provider.name, "sent").inc()
            return Outcome(
                message_id=row.message_id,
                member_id=row.member_id,
                attempts=row.attempts,
                outcome=SENT,
                provider_id=result.provider_id,
                segments=count_segments(body).segments,
            )
        if result.opted_out:
            metrics.SMS_SENT.labels(provider.name, "opted_out").inc()
            return self._outcome(
                row,
                FAILED,
                result.error_code,
                result.error_text,
                opted_out=True,
                refund=row.attempts == 1,
            )
        outcome = self._retry_or_fail(row, result)
        metrics.SMS_SENT.labels(
            provider.name, "retry" if outcome.outcome == RETRY else "failed"
        ).inc()
        return outcome

    def _retry_or_fail(self, row: ClaimedRecipient, result: SendResult) -> Outcome:
        rate_limited = result.error_code in RATE_LIMITED_CODES
        limit = (
            self.settings.max_rate_limited_attempts if rate_limited else self.settings.max_attempts
        )
        if result.transient and row.attempts < limit:
            delay = backoff_s(self.settings, row.attempts, result.retry_after)
            return self._outcome(row, RETRY, result.error_code, result.error_text, delay_s=delay)
        # Refunded only when certain no provider took it: rejected on the first attempt. (An
        # earlier attempt may have timed out after the provider took the text; which earlier
        # attempts did is not recorded, so those are not refunded: billing errs for the church
        # only by not refunding.)
        refund = row.attempts == 1 and result.rejected
        return self._outcome(row, FAILED, result.error_code, result.error_text, refund=refund)

    @staticmethod
    def _outcome(
        row: ClaimedRecipient,
        outcome: str,
        error_code: str | None = None,
        error_text: str | None = None,
        *,
        delay_s: float = 0.0,
        opted_out: bool = False,
        refund: bool = False,
    ) -> Outcome:
        return Outcome(
            message_id=row.message_id,
            member_id=row.member_id,
            attempts=row.attempts,
            outcome=outcome,
            error_code=error_code[:32] if error_code else None,
            error_text=error_text[:1000] if error_text else None,
            delay_s=delay_s,
            opted_out=opted_out,
            refund=refund,
        )


async def drain(dispatcher: Dispatcher) -> int:
    """Run batches until one claims nothing (tests, benchmarks). Returns texts claimed."""
    total = 0
    while (claimed := (await dispatcher.run_once()).claimed) > 0:
        total += claimed
    return total
