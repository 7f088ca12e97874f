"""Group commit for delivery reports: the reports of concurrent webhook requests share one
transaction (two statements: lock their ids, store them).

Each report was its own transaction: BEGIN, one statement, COMMIT (a WAL flush) per request,
which at 1,000 reports/s made the database round trips and commits most of a report's cost.
Now a request hands its report to the app's `ReportWriter` (`app.state.report_writer`, made
with the app's database) and waits; that one writer stores every report waiting at that moment
with one `record_delivery_reports` call in its own unit of work (`Database.session()`), commits,
and only then answers each waiting request with its outcome. The provider is still acknowledged
only after its report is stored (SPEC §6): a request returns after the commit that contains its
report, or gets the error (a 500, so the provider retries).

No report waits for a timer: an idle writer takes the first report at once; while a batch is
being written the next reports gather and go together in the next one (at most MAX_BATCH).
A batch that fails is retried report by report, so one bad report fails only its own request;
a deadlock or serialisation failure against another writer is retried as a whole first.
A report whose text the dispatcher is writing back at that moment is left out of the batch
(webhooks.repository._LOCK_IDS) and goes in the next one: it waits for that write-back, the
other reports do not.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from functools import partial

from sqlalchemy.exc import DBAPIError

from koinonia.db import observe
from koinonia.db.database import Database
from koinonia.db.outage import CONFLICT_SQLSTATES, sqlstate
from koinonia.kit.logging import log
from koinonia.kit.metrics import REPORTS_DEFERRED
from koinonia.webhooks.repository import DeliveryReportRepository
from koinonia.webhooks.schemas import DeliveryReport, ReportOutcome

MAX_BATCH = 1000
# How long reports wait before they are tried again when every one of them was left out of a
# batch because the dispatcher was writing their texts back (a write-back takes milliseconds).
DEFERRED_PAUSE_S = 0.01
_ATTEMPTS = 3

_Waiting = tuple[DeliveryReport, "asyncio.Future[ReportOutcome]"]
# Stores one batch, committed when it returns: an outcome per report, None for a report left
# out (its text is being written back).
Store = Callable[[Sequence[DeliveryReport]], Awaitable[list[ReportOutcome | None]]]


class ReportWriter:
    """The one writer of an app (see the module docstring). `into(database)` makes the app's;
    tests give their own `store`."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self.max_batch = max_batch
        self._waiting: list[_Waiting] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def into(cls, database: Database) -> ReportWriter:
        """The writer storing into `database`."""
        return cls(partial(store_reports, database))

    async def record(self, report: DeliveryReport) -> ReportOutcome:
        """Store `report` (with whatever else is waiting); returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ReportOutcome] = loop.create_future()
        self._waiting.append((report, future))
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            # A fresh context: the writer belongs to no request (no request id in its logs, its
            # statements counted in its own unit of work, not in the request that woke it).
            self._task = loop.create_task(self._drain(), context=contextvars.Context())
        return await future

    async def _drain(self) -> None:
        while self._waiting:
            batch = self._waiting[: self.max_batch]
            del self._waiting[: self.max_batch]
            deferred: list[_Waiting] = []
            try:
                outcomes = await self._store([report for report, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch, exc)
                    continue
                log.warning("status_report_batch_failed", reports=len(batch), error=repr(exc))
                for one in batch:
                    try:
                        deferred += _resolve([one], await self._store([one[0]]))
                    except Exception as one_exc:
                        _fail([one], one_exc)
            except BaseException:  # cancelled (shutdown): no answer will come, say so
                for _, future in [*batch, *self._waiting]:
                    future.cancel()
                self._waiting.clear()
                raise
            else:
                deferred = _resolve(batch, outcomes)
            if deferred:
                # Their texts are being written back: first in line for the next batch, after a
                # pause when nothing else could be stored (the write-back commits shortly).
                self._waiting[:0] = deferred
                REPORTS_DEFERRED.inc(len(deferred))
                if len(deferred) == len(batch):
                    await asyncio.sleep(DEFERRED_PAUSE_S)


async def store_reports(
    database: Database, batch: Sequence[DeliveryReport]
) -> list[ReportOutcome | None]:
    """Store `batch` in one unit of work of `database`; a deadlock or serialisation failure
    against another writer is retried as a whole."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with observe.track("webhooks.status_reports"):
                async with database.session() as session:
                    return await DeliveryReportRepository(session).record_delivery_reports(batch)
        except DBAPIError as exc:
            code = sqlstate(exc)
            if code not in CONFLICT_SQLSTATES or attempt == _ATTEMPTS:
                raise
            log.info("status_report_batch_retry", reports=len(batch), sqlstate=code)
    raise AssertionError("unreachable")


def _resolve(batch: Sequence[_Waiting], outcomes: Sequence[ReportOutcome | None]) -> list[_Waiting]:
    """Answer each stored report; returns those left out (their id was being written back)."""
    deferred: list[_Waiting] = []
    for waiting, outcome in zip(batch, outcomes, strict=True):
        future = waiting[1]
        if future.done():  # the request was cancelled (client went away)
            continue
        if outcome is None:
            deferred.append(waiting)
        else:
            future.set_result(outcome)
    return deferred


def _fail(batch: Sequence[_Waiting], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
