"""Broadcast delivery against the sandbox carrier with 50 ms latency: workers as real
`koinonia worker` processes, the sandbox in its own process, loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

import psutil  # type: ignore[import-untyped]
from sqlalchemy import text

from bench.harness import broadcast_to_all
from bench.load import free_port
from koinonia.config import get_settings
from koinonia.db.database import Database
from koinonia.db.embedded import database_url
from koinonia.db.migrate import migrate
from koinonia.sms.base import OutboundSms, create_http_client
from koinonia.sms.providers import build_provider

DB = "koinonia_bench_delivery"
CONTENT = "Hi {first_name|friend}, service moved to 11am. Reply STOP to opt out."


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/sandbox/stats") as r:
        return dict(json.load(r))


def _sent_times(url: str) -> list[float]:
    with urllib.request.urlopen(url + "/sandbox/messages") as r:
        messages = json.load(r)["messages"]
    from datetime import datetime

    return sorted(datetime.fromisoformat(m["accepted_at"]).timestamp() for m in messages)


def _cpu_s(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(t.user + t.system)


def _backend_pids() -> list[int]:
    """PostgreSQL backends connected to the rig's database (the workers' and the bench's)."""
    pids = []
    for p in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if cmdline.startswith("postgres:") and f" {DB} " in cmdline:
            pids.append(p.pid)
    return pids


class Rig:
    """Sandbox + N worker processes on a fresh church of `members` members."""

    def __init__(self, members: int, workers: int, rate: float) -> None:
        self.members, self.workers, self.rate = members, workers, rate
        self.procs: list[subprocess.Popen[bytes]] = []
        self.peak_worker_rss_mb = 0.0
        self.cpu: dict[str, float] = {}  # CPU seconds per role during the last broadcast

    def _cpu_snapshot(self) -> dict[str, dict[int, float]]:
        return {
            "workers": {p.pid: _cpu_s(p.pid) for p in self.worker_procs},
            "sandbox": {self.procs[0].pid: _cpu_s(self.procs[0].pid)},
            "postgres": {pid: _cpu_s(pid) for pid in _backend_pids()},
            "bench": {os.getpid(): _cpu_s(os.getpid())},
        }

    @staticmethod
    def _cpu_spent(
        before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]
    ) -> dict[str, float]:
        # A backend started during the broadcast counts whole; one that exited is lost (pools
        # keep their connections, so none does in practice).
        return {
            role: round(sum(t - before[role].get(pid, 0.0) for pid, t in pids.items()), 2)
            for role, pids in after.items()
        }

    async def __aenter__(self) -> Rig:
        settings = get_settings()
        self.db_url = database_url(settings, DB)
        # Its own database (the bench data's is the caller's, untouched).
        self.database = Database.open(settings, self.db_url)
        await migrate(self.database.engine)
        async with self.database.session() as s:
            await s.execute(text("DELETE FROM churches"))
        port = free_port()
        token = settings.twilio_auth_token.get_secret_value()
        self.sandbox_url = f"http://127.0.0.1:{port}"
        code = (
            "from koinonia_sandbox import run_sandbox, SandboxConfig;"
            "run_sandbox(SandboxConfig(latency_ms=50, delivery_delay_ms=3_600_000,"
            f" twilio_auth_token={token!r}), port={port})"
        )
        self.procs.append(subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.DEVNULL))
        env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "KOINONIA_ENV": "production",
            "KOINONIA_SANDBOX_URL": self.sandbox_url,
            "KOINONIA_PUBLIC_URL": "http://127.0.0.1:9",  # reports are not what is measured
            "KOINONIA_SEND_RATE_PER_NUMBER": str(self.rate),
            "KOINONIA_SEND_CONCURRENCY": "400",
        }
        self.worker_procs = [
            subprocess.Popen(
                [sys.executable, "-m", "koinonia.cli", "worker"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(self.workers)
        ]
        self.procs += self.worker_procs
        async with self.database.session() as s:
            self.church_id = (
                await s.execute(
                    text(
                        "INSERT INTO churches (name, contact_email, sms_number, plan,"
                        " subscription_status) VALUES ('Bench', 'b@example.org',"
                        " '+13035550199', 'pro', 'active') RETURNING id"
                    )
                )
            ).scalar_one()
            await s.execute(
                text(
                    "INSERT INTO members (church_id, first_name, last_name, phone)"
                    " SELECT :c, 'Member' || i, 'Bench',"
                    " '+1202' || lpad((2000000 + i)::text, 7, '0')"
                    " FROM generate_series(1, :n) i"
                ),
                {"c": self.church_id, "n": self.members},
            )
        await asyncio.sleep(4)  # workers up and idle (LISTENing)
        return self

    async def broadcast(self) -> tuple[float, float]:
        """(seconds until the sandbox accepted every text, seconds until every result was
        written back: the message is `sent` or `completed`)."""
        message_id = await broadcast_to_all(self.database, self.church_id, CONTENT)
        cpu_before = self._cpu_snapshot()
        started = time.perf_counter()
        handed: float | None = None
        while True:
            for p in self.worker_procs:
                try:
                    rss = psutil.Process(p.pid).memory_info().rss / 2**20
                    self.peak_worker_rss_mb = max(self.peak_worker_rss_mb, rss)
                except psutil.Error:
                    pass
            if handed is None and _stats(self.sandbox_url)["accepted"] >= self.members:
                handed = time.perf_counter() - started
            async with self.database.session() as s:
                status = (
                    await s.execute(
                        text("SELECT status FROM messages WHERE id = :m"), {"m": message_id}
                    )
                ).scalar_one()
            # Every text handed over and written back: `sent` (delivery reports still
            # awaited, which is carrier time, not ours) or already `completed`.
            if status in ("sent", "completed"):
                done = time.perf_counter() - started
                self.cpu = self._cpu_spent(cpu_before, self._cpu_snapshot())
                return handed or done, done
            if time.perf_counter() - started > 300:
                raise TimeoutError("broadcast did not complete in 300 s")
            await asyncio.sleep(0.05)

    async def __aexit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        async with self.database.session() as s:
            await s.execute(text("DELETE FROM churches"))
        await self.database.dispose()


async def naive_sequential(sandbox_url: str, n: int) -> float:
    """The seed's broadcastOutboundToMembers: one send after another. Seconds for n texts."""
    settings = get_settings()
    http = create_http_client()
    provider = build_provider(
        "sandbox",
        base_url=sandbox_url,
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token.get_secret_value(),
        http=http,
    )
    started = time.perf_counter()
    for i in range(n):
        await provider.send(OutboundSms(f"+1202{3000000 + i:07d}", "+13035550198", "Hi", None))
    elapsed = time.perf_counter() - started
    await provider.close()
    await http.close()
    return elapsed


async def scenarios(members: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    async with Rig(members, workers=2, rate=1_000_000) as rig:
        handed, done = await rig.broadcast()
        naive_n = 100
        naive_s = await naive_sequential(rig.sandbox_url, naive_n)
        rows.append(
            {
                "operation": f"broadcast delivery: {members:,} texts handed to a carrier with 50 ms"
                " latency (2 worker processes)",
                "ours": {
                    "handed_s": round(handed, 2),
                    "completed_s": round(done, 2),
                    "per_s": f"{members / handed:.0f} texts/s",
                    "worker_peak_rss_mb": round(rig.peak_worker_rss_mb, 1),
                    # CPU seconds per role from the enqueue's commit to "completed": stable on
                    # a busy machine, unlike the wall clock.
                    "cpu_s": rig.cpu,
                },
                "naive": {
                    "note": f"sequential sends: {naive_n} in {naive_s:.1f} s",
                    "per_s": f"{naive_n / naive_s:.0f} texts/s",
                    "projected_s": round(members * naive_s / naive_n, 1),
                },
                "ratio_p50": round((members * naive_s / naive_n) / handed, 1),
                "goal": "10,000 texts handed over in ≤ 3 s",
                "seed": "10 s → 1 s for 1,000",
            }
        )
    rate, n = 50.0, 500
    # Several workers share one bucket only through Redis (REDIS_URL); without it each process
    # holds its own, so the in-process case is measured with one worker.
    workers = 2 if get_settings().redis_url else 1
    async with Rig(n, workers=workers, rate=rate) as rig:
        await rig.broadcast()
        times = _sent_times(rig.sandbox_url)
        span = times[-1] - times[0]
        achieved = (len(times) - 1) / span if span else 0.0
        rows.append(
            {
                "operation": f"rate limit held: {n} texts at a set {rate:.0f}/s per number,"
                f" {workers} worker(s){' sharing Redis' if workers > 1 else ''}",
                "ours": {
                    "per_s": f"{achieved:.1f} texts/s",
                    "error_pct": round(100 * (achieved - rate) / rate, 1),
                },
                "goal": "within 5% of the set rate",
                "seed": "—",
            }
        )
    return rows
