"""The delivery worker process: `koinonia worker` (and a task inside `koinonia dev`).

It sleeps on LISTEN koinonia_work (a send commits `pg_notify('koinonia_work', ...)`, so a
broadcast starts within milliseconds) with a short poll as the safety net for a missed
notification or due retries, runs `settings.send_pipelines` batch loops over one shared
dispatcher (while one batch is being claimed or recorded, another is sending), sweeps expired
leases of dead workers back into the queue, and fires due schedules and welcome texts.

Database connections: the worker runs on the `Database` it is given (`serve_worker` opens the
process's; `koinonia dev` shares the API's). The listener holds one connection of its pool for
its lifetime
(LISTEN needs a session of its own that is never handed to anyone else); everything else
borrows pool connections per statement batch. No connection is opened outside the pool.
Behind PgBouncer in transaction mode LISTEN cannot work (the server session is not ours
between transactions): notifications are then simply never received and the poll
(`worker_poll_s`) does all the waking; point DATABASE_URL of workers at PgBouncer in session
mode, or at Postgres directly, to keep the instant start.

Shutdown (SIGTERM / SIGINT, or `stop` set by the caller): nothing new is claimed, texts already
handed to a provider finish and are recorded, claimed texts not yet sent go back to 'queued'
without spending an attempt, then the HTTP session and the listener connection are closed. A
second signal cancels at once; the lease sweep of another worker then recovers the rows.

Database outages (koinonia.delivery.outage): every loop shares the dispatcher's
`DatabaseOutage`. A failed claim, sweep or schedule run that is an outage backs off
exponentially (up to 5 s) instead of retrying at its usual pace, and is logged once per cause
(`database_unavailable`), not as a traceback per attempt; the first statement that goes through
logs `database_recovered`. Nothing new is claimed (so nothing new is sent) until a claim goes
through again; results already obtained from the carrier are kept and written back when the
database answers (Dispatcher._record). A stop during an outage waits for those write-backs up
to the batches' lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from koinonia.config import Settings
from koinonia.db.database import Database
from koinonia.db.outage import outage_cause
from koinonia.delivery.dispatcher import Dispatcher
from koinonia.delivery.outage import DatabaseOutage
from koinonia.delivery.repository import DeliveryRepository
from koinonia.kit.logging import log

CHANNEL = "koinonia_work"
RELISTEN_S = 5.0  # after the listener's connection fails


async def _wait_any(*events: asyncio.Event, within: float | None) -> None:
    """Until one of `events` is set or `within` seconds (None: no limit) pass."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
        await asyncio.gather(*waiters, return_exceptions=True)


async def _listen_once(engine: AsyncEngine, wake: asyncio.Event, stop: asyncio.Event) -> None:
    """LISTEN on one pool connection until `stop`; raises if the connection is lost."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection  # the asyncpg connection
        lost = asyncio.Event()

        def on_notify(*_args: object) -> None:
            wake.set()

        def on_lost(*_args: object) -> None:
            lost.set()

        await driver.add_listener(CHANNEL, on_notify)
        driver.add_termination_listener(on_lost)
        wake.set()  # anything committed while we were not listening
        try:
            await _wait_any(stop, lost, within=None)
        finally:
            driver.remove_termination_listener(on_lost)
            if not lost.is_set():
                with contextlib.suppress(Exception):
                    await driver.remove_listener(CHANNEL, on_notify)
        if lost.is_set():
            raise ConnectionError("listener connection closed")


async def _listen(
    engine: AsyncEngine, wake: asyncio.Event, stop: asyncio.Event, outage: DatabaseOutage
) -> None:
    """Set `wake` on every NOTIFY; reconnect (through the pool) if the connection drops."""
    while not stop.is_set():
        try:
            await _listen_once(engine, wake, stop)
        except Exception as exc:
            if outage.failed(exc, during="worker.listen") is None:
                log.warning("worker_listen_failed", error=str(exc), retry_s=RELISTEN_S)
            await _wait_any(stop, within=RELISTEN_S)


async def _pipeline(
    dispatcher: Dispatcher, wake: asyncio.Event, stop: asyncio.Event, poll_s: float
) -> None:
    """Batch after batch while there is work; then wait for a NOTIFY or the poll. During a
    database outage, claims back off (see the module docstring)."""
    while not stop.is_set():
        try:
            result = await dispatcher.run_once()
        except Exception as exc:
            delay = dispatcher.outage.failed(exc, during="delivery.claim")
            if delay is None:
                log.exception("delivery_batch_failed")
                delay = poll_s
            await _wait_any(stop, within=delay)
            continue
        if result.claimed == 0:
            await _wait_any(wake, stop, within=poll_s)
            wake.clear()


async def sweep(settings: Settings, database: Database) -> int:
    """Requeue expired leases; complete messages whose delivery reports are all in (or overdue);
    apply delivery reports that were parked before their send was recorded and purge old ones.
    Returns rows requeued. Each part in its own transaction, so a part that fails (a bug, a
    constraint) is logged and does not block the others; a database outage is raised at once
    (the other parts would fail the same way) and left to the caller's backoff."""
    from koinonia.webhooks.repository import DeliveryReportRepository, purge_stale_pending_reports

    requeued = 0

    async def requeue_leases() -> None:
        nonlocal requeued
        async with database.session() as session:
            requeued = await DeliveryRepository(session).requeue_expired_leases(
                max_attempts=settings.max_attempts
            )
        if requeued:
            log.warning("delivery_leases_requeued", rows=requeued)

    async def complete_messages() -> None:
        async with database.session() as session:
            await DeliveryRepository(session).complete_reported_messages(
                report_wait_s=settings.report_wait_s
            )

    async def apply_pending_reports() -> None:
        async with database.session() as session:
            await DeliveryReportRepository(session).apply_matched_pending_reports()
            await purge_stale_pending_reports(session)

    for part in (requeue_leases, complete_messages, apply_pending_reports):
        try:
            await part()
        except Exception as exc:
            if outage_cause(exc) is not None:
                raise
            log.exception("delivery_sweep_part_failed", part=part.__name__)
    return requeued


async def _every(
    period_s: float,
    job: Callable[[], Awaitable[object]],
    *,
    stop: asyncio.Event,
    outage: DatabaseOutage,
    during: str,
    failed_event: str,
) -> None:
    """Run `job` every `period_s` seconds until `stop`. A failure that is a database outage is
    retried after the outage's backoff when that is sooner; any other is logged as
    `failed_event`, with its traceback, and waits for the next period."""
    while not stop.is_set():
        delay = period_s
        try:
            await job()
            outage.succeeded()
        except Exception as exc:
            if (backoff := outage.failed(exc, during=during)) is None:
                log.exception(failed_event)
            else:
                delay = min(delay, backoff)
        await _wait_any(stop, within=delay)


async def _fire_schedules(database: Database) -> None:
    """Fire due recurring messages and welcome texts (koinonia.delivery.scheduler); the
    messages they write NOTIFY the pipelines like any send."""
    from koinonia.delivery.scheduler import fire_due_schedules, send_due_welcomes

    await fire_due_schedules(database)
    await send_due_welcomes(database)


async def run_worker(
    settings: Settings,
    database: Database,
    *,
    stop: asyncio.Event,
    dispatcher: Dispatcher | None = None,
) -> None:
    """Deliver from `database` until `stop` is set, then shut down gracefully (see the module
    docstring). The caller owns `database` (and disposes of it after)."""
    if dispatcher is None:
        dispatcher = Dispatcher(settings, database, stop=stop)
    else:
        dispatcher.stop = stop
    wake = asyncio.Event()
    background = [
        asyncio.create_task(
            _listen(database.engine, wake, stop, dispatcher.outage), name="worker-listen"
        ),
        asyncio.create_task(
            _every(
                settings.lease_sweep_s,
                lambda: sweep(settings, database),
                stop=stop,
                outage=dispatcher.outage,
                during="delivery.sweep",
                failed_event="delivery_sweep_failed",
            ),
            name="worker-sweep",
        ),
        asyncio.create_task(
            _every(
                settings.schedule_poll_s,
                lambda: _fire_schedules(database),
                stop=stop,
                outage=dispatcher.outage,
                during="delivery.schedules",
                failed_event="delivery_schedules_failed",
            ),
            name="worker-schedules",
        ),
    ]
    log.info(
        "worker_started",
        pipelines=settings.send_pipelines,
        batch=dispatcher.batch_size,
        concurrency=settings.send_concurrency,
        rate_per_number=settings.send_rate_per_number,
    )
    try:
        await asyncio.gather(
            *(
                _pipeline(dispatcher, wake, stop, settings.worker_poll_s)
                for _ in range(settings.send_pipelines)
            )
        )
    finally:
        stop.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await dispatcher.close()
        log.info("worker_stopped")


def install_signal_handlers(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT: graceful stop. Second: cancel the main task at once."""
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("worker_forced_stop", signal=sig.name)
            if main is not None:
                main.cancel()
            return
        log.info("worker_stopping", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)


async def serve_worker(settings: Settings) -> None:
    """The `koinonia worker` process: logging, the store, its database, migrations, signals,
    run (`db.process`)."""
    from koinonia.db.process import process_database

    stop = asyncio.Event()
    install_signal_handlers(stop)
    async with process_database(settings) as database:
        await run_worker(settings, database, stop=stop)
