"""Delivery reports under real timing: does every report the carrier sends end up applied?

`python -m bench.reports [--texts 10000] [--delays 0,50,500,2000] [--workers 2] [--code DIR]`

For each delivery-report delay: a broadcast of `texts` texts through the sandbox carrier (its own
process, 50 ms answer latency, a 'sent' report at half the delay and 'delivered' at the delay),
delivered by `workers` real `koinonia worker` processes, the reports posted (signed) to a real
`koinonia serve` process (waiting up to 15 s for an answer, as Twilio does, and retried up to
10 times: a report the sandbox gave up on is counted apart, as it never reached us). Once the
sandbox says every report was answered (2 per text), the database must hold no recipient still
at 'sent' (the issue-10 symptom: reports acknowledged but lost) and nothing queued or sending.
Prints one JSON row per delay and exits non-zero if any text is stuck. `--code DIR` runs the
API and the workers from another checkout's `src` (the bench process itself only migrates and
enqueues), to measure an older commit the same way.

Its own database (`koinonia_bench_reports`, dropped and made again) on DATABASE_URL or the
embedded server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from typing import Any

from sqlalchemy import text

from bench.harness import broadcast_to_all
from bench.load import free_port
from koinonia.config import get_settings
from koinonia.db.database import Database
from koinonia.db.embedded import database_url, execute_on_server
from koinonia.db.migrate import migrate

DB = "koinonia_bench_reports"
CONTENT = "Hi {first_name|friend}, service moved to 11am. Reply STOP to opt out."
SETTLE_TIMEOUT_S = 900.0


def _get(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=30) as r:
        return dict(json.load(r))


def _patch(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="PATCH",
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


def _post(url: str) -> None:
    with urllib.request.urlopen(urllib.request.Request(url, data=b"", method="POST"), timeout=10):
        pass


def _wait_http(url: str, within_s: float = 180.0) -> None:
    deadline = time.monotonic() + within_s
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Rig:
    """Sandbox, API and workers as processes on one database; a church per run."""

    def __init__(self, workers: int, code: str | None) -> None:
        self.workers = workers
        self.code = code
        self.procs: list[subprocess.Popen[bytes]] = []

    def _env(self, **extra: str) -> dict[str, str]:
        env = {**os.environ, **extra}
        if self.code:
            env["PYTHONPATH"] = self.code
        return env

    async def __aenter__(self) -> Rig:
        settings = get_settings()
        url = database_url(settings, DB)
        await execute_on_server(url, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')
        await execute_on_server(url, f'CREATE DATABASE "{DB}"')
        self.db_url = url
        self.database = Database.open(settings, url)
        await migrate(self.database.engine)
        sandbox_port, api_port = free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        common = {
            "DATABASE_URL": url,
            "KOINONIA_ENV": "dev",
            "KOINONIA_LOG_LEVEL": "WARNING",
            "KOINONIA_SANDBOX_URL": self.sandbox_url,
            "KOINONIA_PUBLIC_URL": self.api_url,
            "KOINONIA_SEND_RATE_PER_NUMBER": "1000000",
            "KOINONIA_SEND_CONCURRENCY": "400",
        }
        code = (
            "from koinonia_sandbox import run_sandbox, SandboxConfig;"
            "run_sandbox(SandboxConfig(latency_ms=50, callback_timeout_s=15, callback_attempts=10),"
            f" port={sandbox_port})"
        )
        quiet = subprocess.DEVNULL
        # The fake carrier always runs from this checkout (src/koinonia_sandbox): `--code`
        # measures another checkout's API and workers against the same sandbox.
        self.procs.append(
            subprocess.Popen([sys.executable, "-c", code], stdout=quiet, stderr=quiet)
        )
        self.procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "koinonia.cli", "serve", "--port", str(api_port)],
                env=self._env(**common),
                stdout=quiet,
                stderr=quiet,
            )
        )
        for _ in range(self.workers):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "koinonia.cli", "worker"],
                    env=self._env(**common),
                    stdout=quiet,
                    stderr=quiet,
                )
            )
        _wait_http(self.sandbox_url + "/sandbox/stats")
        _wait_http(self.api_url + "/healthz")
        await asyncio.sleep(3)  # workers up and LISTENing
        return self

    async def run(self, texts: int, delay_ms: float) -> dict[str, Any]:
        _patch(self.sandbox_url + "/sandbox/config", {"delivery_delay_ms": delay_ms})
        _post(self.sandbox_url + "/sandbox/reset")
        async with self.database.session() as s:
            church_id = (
                await s.execute(
                    text(
                        "INSERT INTO churches (name, contact_email, sms_number, plan,"
                        " subscription_status, sms_provider) VALUES ('Bench', 'b@example.org',"
                        " '+13035550199', 'pro', 'active', 'sandbox') RETURNING id"
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
                {"c": church_id, "n": texts},
            )
        message_id = await broadcast_to_all(self.database, church_id, CONTENT)
        started = time.perf_counter()
        while True:
            try:
                stats = _get(self.sandbox_url + "/sandbox/stats")
            except OSError:  # the sandbox is busy posting 20,000 reports: ask again
                await asyncio.sleep(1)
                continue
            callbacks = stats["callbacks"]
            answered = callbacks["delivered"] + callbacks["failed"]
            if stats["accepted"] >= texts and callbacks["pending"] == 0 and answered >= 2 * texts:
                break
            if time.perf_counter() - started > SETTLE_TIMEOUT_S:
                raise TimeoutError(f"reports not all answered: {stats}")
            await asyncio.sleep(0.2)
        settled_s = time.perf_counter() - started
        async with self.database.session() as s:
            rows = (
                await s.execute(
                    text(
                        "SELECT status, count(*) FROM message_recipients WHERE message_id = :m"
                        " GROUP BY status ORDER BY status"
                    ),
                    {"m": message_id},
                )
            ).all()
            pending = (
                await s.execute(text("SELECT count(*) FROM pending_status_reports"))
            ).scalar_one()
            await s.execute(text("DELETE FROM churches WHERE id = :c"), {"c": church_id})
            await s.execute(text("DELETE FROM pending_status_reports"))
        statuses = {str(r[0]): int(r[1]) for r in rows}
        return {
            "texts": texts,
            "report_delay_ms": delay_ms,
            "workers": self.workers,
            "accepted_by_carrier": stats["accepted"],
            "reports_acknowledged": callbacks["delivered"],
            "reports_given_up": callbacks["failed"],
            "statuses": statuses,
            "stuck_sent": statuses.get("sent", 0),
            "still_open": statuses.get("queued", 0) + statuses.get("sending", 0),
            "pending_reports_left": int(pending),
            "seconds_until_all_reports_answered": round(settled_s, 1),
        }

    async def __aexit__(self, *exc: Any) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        await self.database.dispose()
        await execute_on_server(self.db_url, f'DROP DATABASE IF EXISTS "{DB}" WITH (FORCE)')


async def main(texts: int, delays: list[float], workers: int, code: str | None) -> int:
    stuck = 0
    async with Rig(workers, code) as rig:
        for delay in delays:
            row = await rig.run(texts, delay)
            print(json.dumps(row), flush=True)
            stuck += row["stuck_sent"] + row["still_open"]
    return 1 if stuck else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=10_000)
    parser.add_argument("--delays", default="0,50,500,2000", help="report delays in ms")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--code", help="src directory of another checkout for API and workers")
    args = parser.parse_args()
    delays = [float(d) for d in args.delays.split(",")]
    sys.exit(asyncio.run(main(args.texts, delays, args.workers, args.code)))
