"""Load against a real API process: `koinonia serve` (one uvicorn process, pool 30) in a
subprocess, driven by aiohttp clients from this process, and the same for the bare anchor apps
(bench.anchors) the load rows are judged against. Loopback only, bounded in time."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]

from bench.data import BENCH_EMAIL
from bench.harness import BENCH_PASSWORD, Timing

ROOT = Path(__file__).resolve().parent.parent  # the repository: where `bench` imports from


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`koinonia serve` on a free port against `database_url`; peak RSS sampled while up.
    With `anchor`, the bare app of that name (bench.anchors) in its place, run the same way."""

    def __init__(self, database_url: str, *, anchor: str | None = None, **env: str) -> None:
        self.anchor = anchor
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "KOINONIA_ENV": "production",
            "KOINONIA_PUBLIC_URL": self.url,
            "KOINONIA_CHURCH_RATE_LIMIT_PER_MIN": "100000000",
            # bench.anchors must import however the bench itself was started.
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            **env,
        }
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss_mb = 0.0

    async def __aenter__(self) -> Server:
        # Logs go to a file: a pipe nobody reads fills up and blocks the server.
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the server
            prefix="koinonia-bench-api-", suffix=".log"
        )
        module = ["bench.anchors", self.anchor] if self.anchor else ["koinonia.cli", "serve"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *module, "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
        )
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(self.url + "/healthz") as r:
                        if r.status == 200:
                            return self
                if self.proc.poll() is not None:
                    err = Path(self.log.name).read_text(errors="replace")  # noqa: ASYNC240
                    raise RuntimeError(f"API did not start: {err[-2000:]}")
                await asyncio.sleep(0.2)
        raise RuntimeError("API did not start in 60 s")

    def cpu_seconds(self) -> float:
        """CPU time the API process has used (user + system): per request, the number that
        holds still when the machine is busy, unlike requests per second."""
        if self.proc is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(self.proc.pid).cpu_times()
            return float(times.user + times.system)
        return 0.0

    def sample_rss(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(psutil.Error):
                rss = psutil.Process(self.proc.pid).memory_info().rss / 2**20
                self.peak_rss_mb = max(self.peak_rss_mb, rss)

    async def __aexit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


async def login(base: str) -> str:
    async with (
        aiohttp.ClientSession() as s,
        s.post(
            base + "/api/v1/auth/login", json={"email": BENCH_EMAIL, "password": BENCH_PASSWORD}
        ) as r,
    ):
        r.raise_for_status()
        return str((await r.json())["access_token"])


async def drive(
    server: Server,
    *,
    clients: int,
    seconds: float,
    request: Callable[[aiohttp.ClientSession, random.Random], Any],
) -> dict[str, Any]:
    """`clients` concurrent loops issuing `request` for `seconds`; requests/s, latency, errors."""
    timing = Timing()
    errors: dict[str, int] = {}
    stop = time.monotonic() + seconds
    connector = aiohttp.TCPConnector(limit=clients, force_close=False)
    timeout = aiohttp.ClientTimeout(total=60)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def loop(seed: int) -> None:
            rng = random.Random(seed)
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    async with request(session, rng) as r:
                        await r.read()
                        if r.status >= 400:
                            errors[str(r.status)] = errors.get(str(r.status), 0) + 1
                except (TimeoutError, aiohttp.ClientError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                timing.samples_ms.append((time.perf_counter() - started) * 1000)

        async def sampler() -> None:
            while time.monotonic() < stop:
                server.sample_rss()
                await asyncio.sleep(0.5)

        began = time.monotonic()
        cpu_before = server.cpu_seconds()
        await asyncio.gather(sampler(), *(loop(i) for i in range(clients)))
        elapsed = time.monotonic() - began
        cpu = server.cpu_seconds() - cpu_before
    total = len(timing.samples_ms)
    return {
        "clients": clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "per_s": f"{total / elapsed:.0f} req/s",
        "rate": round(total / elapsed, 1),
        "api_cpu_us_per_request": round(cpu / total * 1e6) if total else None,
        "errors": errors,
        **timing.summary(),
    }


async def pool_metrics(base: str) -> dict[str, float]:
    """Pool waiters / checkout waits as the API exported them (Prometheus text)."""
    async with aiohttp.ClientSession() as s, s.get(base + "/metrics") as r:
        text = await r.text()
    out: dict[str, float] = {}
    for line in text.splitlines():
        for name in (
            "koinonia_db_pool_checkout_wait_seconds_count",
            "koinonia_db_pool_checkout_wait_seconds_sum",
            "koinonia_db_pool_waiters",
        ):
            if line.startswith(name + " "):
                out[name] = float(line.split()[1])
        if line.startswith('koinonia_db_pool_checkout_wait_seconds_bucket{le="1.0"}'):
            out["checkouts_within_1s"] = float(line.split()[1])
    return out


def twilio_status_request(
    base: str,
    provider_ids: list[str],
    auth_token: str,
    path: str = "/api/v1/webhooks/twilio/status",
) -> Callable[..., Any]:
    """A signed Twilio status callback for a random known provider id."""
    from koinonia.sms.signatures import TWILIO_SIGNATURE_HEADER, twilio_signature

    url = base + path

    def request(session: aiohttp.ClientSession, rng: random.Random) -> Any:
        form = {
            "MessageSid": rng.choice(provider_ids),
            "MessageStatus": rng.choice(["sent", "delivered", "undelivered"]),
            "AccountSid": "AC" + "0" * 32,
        }
        sig = twilio_signature(url, form, auth_token)
        return session.post(url, data=form, headers={TWILIO_SIGNATURE_HEADER: sig})

    return request
