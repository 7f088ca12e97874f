"""A database outage while texts are in flight: results the carrier gave are written back once
the database answers (nothing is sent twice), and the worker neither claims nor floods the log
meanwhile. The outage is real (connections cut and refused by a proxy); the tests wait on what
the code does (refused connection attempts, rows written), never on time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.testing import capture_logs

from db.outages import dbapi_error, driver_refusal
from delivery.faults import DatabaseProxy
from delivery.support import (
    MakeBroadcast,
    MakeSettings,
    deliver_with,
    sent_phones,
    statuses,
)
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import Dispatcher
from koinonia.delivery.outage import DatabaseOutage
from koinonia.delivery.repository import Outcome
from koinonia.delivery.worker import _pipeline, sweep
from koinonia_sandbox import RunningSandbox

# The write-back used to give up after 5 tries (~1.5 s of backoff) and drop the results.
OLD_RECORD_TRIES = 5


@pytest.fixture
async def proxied(db_proxy: DatabaseProxy, make_settings: MakeSettings) -> AsyncIterator[Database]:
    database = db_proxy.database(make_settings())
    yield database
    await database.dispose()


def _fast_outage() -> DatabaseOutage:
    return DatabaseOutage(base_s=0.005, max_s=0.02)


async def test_results_survive_an_outage_longer_than_the_old_retry_budget(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
    db_proxy: DatabaseProxy,
    proxied: Database,
) -> None:
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    b = await broadcast(20)
    refusals = 2 * OLD_RECORD_TRIES

    class OutageAtWriteBack(Dispatcher):
        async def _record(self, outcomes: list[Outcome], **kwargs: Any) -> Any:
            # The carrier has taken every text; now the database goes away.
            db_proxy.cut(refuse=refusals)
            return await super()._record(outcomes, **kwargs)

    settings = make_settings()
    dispatcher = OutageAtWriteBack(settings, proxied, outage=_fast_outage())
    try:
        with capture_logs() as logs:
            result = await dispatcher.run_once()
    finally:
        await dispatcher.close()
    assert db_proxy.refused == refusals  # the write-back outlived them all
    assert (result.sent, result.recorded) == (20, 20)
    rows = (
        await committed_session.execute(
            text(
                "SELECT status, attempts, provider_message_id FROM message_recipients"
                " WHERE message_id = :m"
            ),
            {"m": b.message_id},
        )
    ).all()
    await committed_session.commit()
    assert {(r.status, r.attempts) for r in rows} == {("sent", 1)}
    assert {r.provider_message_id for r in rows} == {m.id for m in sandbox.carrier.messages}

    # Whatever the sweep and any other worker do next, nothing goes out again.
    await sweep(settings, committed_database)
    await deliver_with(settings, committed_database, committed_session, b.message_id)
    assert Counter(sent_phones(sandbox)).most_common(1)[0][1] == 1
    assert len(sent_phones(sandbox)) == 20

    events = [e for e in logs if e["event"] == "database_unavailable"]
    causes = [e["cause"] for e in events]
    assert len(causes) == len(set(causes)) and len(causes) < refusals  # once per cause
    assert [e["event"] for e in logs].count("database_recovered") == 1


async def test_a_stopping_worker_gives_up_a_write_back_only_after_the_lease(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    db_proxy: DatabaseProxy,
    proxied: Database,
) -> None:
    """Past the lease another worker may own the rows: a stopping worker then leaves them to
    the lease sweep instead of retrying forever."""
    sandbox.carrier.update_config({"delivery_delay_ms": 60_000})
    await broadcast(2)

    class StopsDuringOutage(Dispatcher):
        async def _record(self, outcomes: list[Outcome], **kwargs: Any) -> Any:
            db_proxy.cut(refuse=None)
            self.stop.set()
            return await super()._record(outcomes, **{**kwargs, "lease_ends": 0.0})

    dispatcher = StopsDuringOutage(make_settings(), proxied, outage=_fast_outage())
    try:
        with capture_logs() as logs, pytest.raises((DBAPIError, OSError)):
            await dispatcher.run_once()
    finally:
        db_proxy.restore()
        await dispatcher.close()
    assert [e["results"] for e in logs if e["event"] == "delivery_results_unrecorded"] == [2]


async def test_while_the_database_is_down_nothing_is_claimed_or_sent_and_it_is_logged_once(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    db_proxy: DatabaseProxy,
    proxied: Database,
) -> None:
    b = await broadcast(5)
    outage = _fast_outage()
    dispatcher = Dispatcher(make_settings(), proxied, outage=outage)
    stop, wake = asyncio.Event(), asyncio.Event()
    db_proxy.cut(refuse=None)  # down until restored
    with capture_logs() as logs:
        pipeline = asyncio.create_task(_pipeline(dispatcher, wake, stop, poll_s=0.01))
        try:
            await db_proxy.wait_refused(20)  # twenty claims tried, each refused
            assert not sandbox.carrier.messages
            down = [e["event"] for e in logs]
            assert outage.down
            db_proxy.restore()
            while (await statuses(committed_session, b.message_id)).get("queued"):
                assert not pipeline.done()
                await asyncio.sleep(0.01)
        finally:
            stop.set()
            db_proxy.restore()
            await pipeline
            await dispatcher.close()
    # One warning for the whole outage (one cause), no traceback per attempt; then recovery.
    assert down == ["database_unavailable"]
    events = [e["event"] for e in logs]
    assert events.count("database_unavailable") == 1 and "delivery_batch_failed" not in events
    [recovered] = [e for e in logs if e["event"] == "database_recovered"]
    assert recovered["failures"] >= 20 and outage.failures == 0
    assert sorted(sent_phones(sandbox)) == sorted(set(sent_phones(sandbox)))
    assert len(sent_phones(sandbox)) == 5


async def test_outage_backs_off_exponentially_up_to_a_cap_and_logs_each_cause_once() -> None:
    outage = DatabaseOutage(base_s=0.1, max_s=1.0, clock=lambda: 0.0, rng=lambda: 1.0)
    refused = await driver_refusal()
    with capture_logs() as logs:
        delays = [outage.failed(refused, during="claim") for _ in range(6)]
        assert outage.failed(dbapi_error("57P01"), during="record") == 1.0
        assert outage.failed(dbapi_error("57P01"), during="record") == 1.0
        assert outage.down
        outage.succeeded()
        outage.succeeded()
    assert delays == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [(e["event"], e.get("cause")) for e in logs] == [
        ("database_unavailable", "connect_failed"),
        ("database_unavailable", "sqlstate_57P01"),
        ("database_recovered", None),
    ]
    assert not outage.down
    # A bug or a constraint is not an outage: not retried as one, not logged as one.
    with capture_logs() as logs:
        assert outage.failed(dbapi_error("23505", IntegrityError), during="record") is None
        assert outage.failed(ValueError("bug"), during="record") is None
    assert logs == [] and not outage.down
