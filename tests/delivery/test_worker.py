"""The worker process: crash recovery (SIGKILL mid-broadcast), graceful stop, LISTEN wake-up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from delivery.support import (
    MakeBroadcast,
    MakeSettings,
    message_status,
    send_to_all,
    sent_phones,
    statuses,
)
from fixtures.factories import Tenant, make_members
from koinonia.db.database import Database
from koinonia.delivery.dispatcher import BatchResult, Dispatcher, drain
from koinonia.delivery.worker import run_worker, sweep
from koinonia_sandbox import RunningSandbox


async def _until(predicate: Callable[[], Awaitable[bool]], within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _count(session: AsyncSession, sql: str, **params: object) -> int:
    value = (await session.execute(text(sql), params)).scalar_one()
    await session.commit()
    return int(value)


async def test_worker_killed_mid_broadcast_loses_nothing(
    engine: AsyncEngine,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    tmp_path: Path,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"latency_ms": 50, "delivery_delay_ms": 60_000})
    b = await broadcast(2000)
    batch, pipelines = 100, 2
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "KOINONIA_SANDBOX_URL": sandbox.base_url,
        "KOINONIA_PUBLIC_URL": make_settings().public_url,
        "KOINONIA_LEASE_S": "2",
        "KOINONIA_CLAIM_BATCH_SIZE": str(batch),
        "KOINONIA_SEND_PIPELINES": str(pipelines),
        "KOINONIA_SEND_RATE_PER_NUMBER": "400",  # 2,000 texts take >= 5 s: killed well before
        "KOINONIA_WORKER_POLL_S": "0.2",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "koinonia.cli", "worker", env=env, stdout=out, stderr=out
        )
    try:

        async def some_sent() -> bool:
            assert worker.returncode is None, log.read_text()
            return len(sandbox.carrier.messages) >= 600

        await _until(some_sent, 30, "the worker to send")
    finally:
        worker.send_signal(signal.SIGKILL)
        await asyncio.wait_for(worker.wait(), 10)
    handed_at_kill = len(sandbox.carrier.messages)
    assert handed_at_kill < 2000, "the worker finished before it could be killed"

    # After the lease (2 s) the sweep of any worker puts the dead worker's rows back.
    settings = make_settings(lease_s=2)

    async def leases_recovered() -> bool:
        await sweep(settings, committed_database)
        return (
            await _count(
                committed_session,
                "SELECT count(*) FROM message_recipients WHERE message_id = :m"
                " AND status = 'sending'",
                m=b.message_id,
            )
            == 0
        )

    await _until(leases_recovered, 15, "expired leases to be requeued")
    second = Dispatcher(settings, committed_database)
    try:
        await drain(second)
    finally:
        await second.close()

    by_status = await statuses(committed_session, b.message_id)
    assert by_status == {"sent": 2000}
    # Handed over, the carrier's reports still awaited (it reports after 60 s here).
    assert await message_status(committed_session, b.message_id) == "sent"
    phones = Counter(sent_phones(sandbox))
    assert len(phones) == 2000  # nothing lost
    twice = sum(n - 1 for n in phones.values())
    print(f"handed over at the kill: {handed_at_kill}, sent twice: {twice}")
    assert twice <= batch * pipelines  # only texts in flight at the kill can go out twice


async def test_sigterm_stops_the_worker_process_cleanly(
    engine: AsyncEngine,
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    tmp_path: Path,
) -> None:
    sandbox.carrier.update_config({"latency_ms": 100, "delivery_delay_ms": 60_000})
    b = await broadcast(400)
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "KOINONIA_SANDBOX_URL": sandbox.base_url,
        "KOINONIA_PUBLIC_URL": make_settings().public_url,
        "KOINONIA_CLAIM_BATCH_SIZE": "100",
        "KOINONIA_SEND_RATE_PER_NUMBER": "100",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "koinonia.cli", "worker", env=env, stdout=out, stderr=out
        )
    try:
        await _until(lambda: _some(sandbox), 30, "the worker to send")
        worker.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(worker.wait(), 10) == 0, log.read_text()
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
    by_status = await statuses(committed_session, b.message_id)
    assert "sending" not in by_status and by_status.get("queued", 0) > 0  # stopped early
    sent = by_status.get("sent", 0) + by_status.get("delivered", 0)
    assert sent == len(sent_phones(sandbox))  # every text handed over was recorded
    assert "worker_stopped" in log.read_text()


async def test_graceful_stop_finishes_in_flight_texts_and_releases_the_rest(
    broadcast: MakeBroadcast,
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_database: Database,
) -> None:
    sandbox.carrier.update_config({"latency_ms": 150, "delivery_delay_ms": 60_000})
    b = await broadcast(300)
    stop = asyncio.Event()
    settings = make_settings(
        claim_batch_size=100, send_pipelines=2, send_rate_per_number=200.0, worker_poll_s=0.2
    )
    worker = asyncio.create_task(run_worker(settings, committed_database, stop=stop))
    await _until(lambda: _some(sandbox), 10, "the first texts")
    stop.set()
    await asyncio.wait_for(worker, 10)

    rows = (
        await committed_session.execute(
            text(
                "SELECT status, attempts, count(*) FROM message_recipients WHERE message_id = :m"
                " GROUP BY status, attempts"
            ),
            {"m": b.message_id},
        )
    ).all()
    await committed_session.commit()
    by = {(r[0], r[1]): r[2] for r in rows}
    assert set(by) <= {("sent", 1), ("delivered", 1), ("queued", 0)}, by
    sent = by.get(("sent", 1), 0) + by.get(("delivered", 1), 0)
    assert 0 < sent < 300 and by.get(("queued", 0), 0) == 300 - sent
    assert len(sent_phones(sandbox)) == sent  # everything handed over was recorded


async def _some(sandbox: RunningSandbox) -> bool:
    return len(sandbox.carrier.messages) > 0


async def test_idle_worker_wakes_on_notify(
    make_settings: MakeSettings,
    sandbox: RunningSandbox,
    committed_session: AsyncSession,
    committed_tenants: Callable[..., Awaitable[Tenant]],
    committed_database: Database,
) -> None:
    """With a 60 s poll, only the NOTIFY a send commits can start delivery within the test."""
    church = await committed_tenants()
    church_id = church.church_id
    await make_members(committed_session, church_id, 5)
    stop = asyncio.Event()
    # One pipeline, whose idle passes are counted: its first pass runs at start; a second one
    # only after a wake, which (no send yet) only the listener gives, once its LISTEN is in. So
    # two idle passes mean listening and idle, and only a NOTIFY can start the next pass.
    settings = make_settings(worker_poll_s=60.0, send_pipelines=1)
    dispatcher = Dispatcher(settings, committed_database)
    run_once = dispatcher.run_once
    idle_passes = 0

    async def counted() -> BatchResult:
        nonlocal idle_passes
        result = await run_once()
        idle_passes += result.claimed == 0
        return result

    dispatcher.run_once = counted  # type: ignore[method-assign]

    async def listening_and_idle() -> bool:
        return idle_passes >= 2

    worker = asyncio.create_task(
        run_worker(settings, committed_database, stop=stop, dispatcher=dispatcher)
    )
    try:
        await _until(listening_and_idle, 30, "the worker to listen and go idle")
        message_id = await send_to_all(committed_session, church_id, "Choir at 7")

        async def delivered() -> bool:
            return len(sandbox.carrier.messages) == 5

        await _until(delivered, 10, "the worker to wake")
    finally:
        stop.set()
        await asyncio.wait_for(worker, 10)
    assert set(await statuses(committed_session, message_id)) <= {"sent", "delivered"}
