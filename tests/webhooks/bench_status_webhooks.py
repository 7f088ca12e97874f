"""Throughput of the status webhooks: one uvicorn API process, N signed reports fired concurrently.

Not a test (pytest collects test_*.py only) and never asserted: run it by hand,

    .venv/bin/python tests/webhooks/bench_status_webhooks.py --reports 20000 --concurrency 64

It makes its own database (`koinonia_bench_webhooks`, on DATABASE_URL or the embedded server),
seeds one message with reports/2 recipients that carry provider ids, serves the app with uvicorn
in a subprocess (production-like: JSON logs at INFO), posts a 'sent' then a 'delivered' report
per recipient (Twilio form or Telnyx JSON, properly signed) from `concurrency` connections, and
prints reports/s and client-side latency percentiles. SPEC §5 target: ≥ 1,000 reports/s per API
process, p99 ≤ 200 ms, each acknowledged only after it is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass

import aiohttp
import orjson
from sqlalchemy import text

from koinonia.config import get_settings
from koinonia.db.embedded import database_url
from koinonia.db.engine import make_engine
from koinonia.db.migrate import migrate
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    private_key_from_b64,
    telnyx_sign,
    twilio_signature,
)
from koinonia_sandbox import DEFAULT_TELNYX_SIGNING_KEY_B64

DB_NAME = "koinonia_bench_webhooks"
TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
TELNYX = "/api/v1/webhooks/telnyx"


@dataclass(frozen=True)
class Signed:
    path: str
    body: bytes
    headers: dict[str, str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prepare_database(recipients: int) -> tuple[str, int, list[str]]:
    """Migrated database with one message of `recipients` recipients at 'sending'."""
    settings = get_settings()
    url = database_url(settings, DB_NAME)
    engine = make_engine(settings, url)
    await migrate(engine)
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM churches WHERE contact_email = 'bench@example.org'"))
        await conn.execute(text("DELETE FROM pending_status_reports"))
        church_id = (
            await conn.execute(
                text(
                    "INSERT INTO churches (name, contact_email, sms_number, plan,"
                    " subscription_status) VALUES ('Bench', 'bench@example.org', '+13035550001',"
                    " 'pro', 'active') RETURNING id"
                )
            )
        ).scalar_one()
        message_id = (
            await conn.execute(
                text(
                    "INSERT INTO messages (church_id, content, kind, target_type, encoding,"
                    " segments, status, recipient_count) VALUES (:c, 'Hello', 'broadcast',"
                    " 'all', 'GSM-7', 1, 'sending', :n) RETURNING id"
                ),
                {"c": church_id, "n": recipients},
            )
        ).scalar_one()
        await conn.execute(
            text(
                "INSERT INTO message_recipients (message_id, member_id, church_id, phone, status,"
                " provider_message_id, attempts, sent_at)"
                " SELECT :m, i, :c, '+1202' || lpad(i::text, 7, '0'), 'sending',"
                " 'SMbench' || CAST(:m AS bigint)::text || 'x' || i, 1, now()"
                " FROM generate_series(1, :n) AS i"
            ),
            {"m": message_id, "c": church_id, "n": recipients},
        )
    await engine.dispose()
    ids = [f"SMbench{message_id}x{i}" for i in range(1, recipients + 1)]
    return url, int(message_id), ids


def build_requests(ids: list[str], provider: str, public_url: str) -> list[Signed]:
    """'sent' for every id, then 'delivered' for every id (each report is one request)."""
    token = get_settings().twilio_auth_token.get_secret_value()
    key = private_key_from_b64(DEFAULT_TELNYX_SIGNING_KEY_B64)
    out: list[Signed] = []
    for status in ("sent", "delivered"):
        for n, pid in enumerate(ids):
            use_twilio = provider == "twilio" or (provider == "mixed" and n % 2 == 0)
            if use_twilio:
                params = {
                    "AccountSid": "AC00000000000000000000000000000000",
                    "ApiVersion": "2010-04-01",
                    "From": "+13035550001",
                    "MessageSid": pid,
                    "MessageStatus": status,
                    "SmsSid": pid,
                    "SmsStatus": status,
                    "To": "+12025550100",
                }
                signature = twilio_signature(public_url + TWILIO_STATUS, params, token)
                out.append(
                    Signed(
                        TWILIO_STATUS,
                        urllib.parse.urlencode(params).encode(),
                        {
                            "Content-Type": "application/x-www-form-urlencoded",
                            TWILIO_SIGNATURE_HEADER: signature,
                        },
                    )
                )
            else:
                event = {
                    "data": {
                        "event_type": "message.sent" if status == "sent" else "message.finalized",
                        "id": f"evt-{status}-{pid}",
                        "payload": {
                            "id": pid,
                            "direction": "outbound",
                            "to": [{"phone_number": "+12025550100", "status": status}],
                            "errors": [],
                        },
                        "record_type": "event",
                    }
                }
                raw = orjson.dumps(event)
                ts = str(int(time.time()))  # the run must finish within 300 s
                out.append(
                    Signed(
                        TELNYX,
                        raw,
                        {
                            "Content-Type": "application/json",
                            TELNYX_SIGNATURE_HEADER: telnyx_sign(key, ts, raw),
                            TELNYX_TIMESTAMP_HEADER: ts,
                        },
                    )
                )
    return out


def start_api(database: str, port: int, public_url: str) -> subprocess.Popen[bytes]:
    """`koinonia serve` as production runs it: one uvicorn process, JSON logs at INFO."""
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "KOINONIA_PUBLIC_URL": public_url,
        "KOINONIA_LOG_JSON": "true",
        "KOINONIA_ENV": "dev",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "koinonia.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux), to tell its own cost from the machine's."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop_api(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    server.wait(timeout=10)


async def fire(
    base_url: str, requests: list[Signed], concurrency: int
) -> tuple[float, list[float], int]:
    """Seconds taken, per-request latencies, and how many were not answered 200."""
    latencies: list[float] = []
    failures = 0
    queue = iter(requests)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal failures
            for req in queue:
                started = time.perf_counter()
                async with http.post(base_url + req.path, data=req.body, headers=req.headers) as r:
                    await r.read()
                    if r.status != 200:
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p))]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reports", type=int, default=20_000, help="reports in the timed run")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--provider", choices=["twilio", "telnyx", "mixed"], default="twilio")
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args()

    recipients = (args.reports + args.warmup) // 2
    url, message_id, ids = await prepare_database(recipients)
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    server = start_api(url, port, public_url)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(public_url + "/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("the API did not start")
        requests = build_requests(ids, args.provider, public_url)
        # Warm up on the first recipients' reports (connections, prepared statements).
        half = args.warmup // 2
        warm = requests[:half] + requests[recipients : recipients + half]
        timed = requests[half:recipients] + requests[recipients + half :]
        await fire(public_url, warm, args.concurrency)
        cpu_before = cpu_seconds(server.pid)
        elapsed, latencies, failures = await fire(public_url, timed, args.concurrency)
        cpu_after = cpu_seconds(server.pid)
    finally:
        stop_api(server)

    latencies.sort()
    engine = make_engine(get_settings(), url)
    async with engine.connect() as conn:
        delivered = (
            await conn.execute(
                text(
                    "SELECT sum(n) FROM message_status_counts"
                    " WHERE message_id = :m AND status = 'delivered'"
                ),
                {"m": message_id},
            )
        ).scalar_one()
    await engine.dispose()
    print(
        f"{len(timed)} {args.provider} reports, concurrency {args.concurrency}: "
        f"{len(timed) / elapsed:,.0f} reports/s; latency p50 {percentile(latencies, 0.5) * 1e3:.1f}"
        f" ms, p95 {percentile(latencies, 0.95) * 1e3:.1f} ms,"
        f" p99 {percentile(latencies, 0.99) * 1e3:.1f} ms; non-200: {failures};"
        f" recipients delivered: {delivered}/{recipients}"
    )
    if cpu_before is not None and cpu_after is not None and cpu_after > cpu_before:
        cpu = cpu_after - cpu_before
        print(
            f"API process CPU: {cpu * 1e3 / len(timed):.2f} ms per report, i.e."
            f" {len(timed) / cpu:,.0f} reports/s per fully used core"
            f" (the machine has {os.cpu_count()} cores, shared with PostgreSQL and this client)"
        )


if __name__ == "__main__":
    asyncio.run(main())
