"""`koinonia serve --workers 2` as production runs it (a subprocess on the test database): /metrics
counts the requests of every worker process, whichever one answers the scrape, also after a
worker was killed and replaced, and every line the processes log (ours, uvicorn's, Alembic's)
is one JSON object."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from koinonia.config import get_settings

REQUESTS = "koinonia_http_requests_total"
START_S = 60.0  # two interpreters importing the app and migrating on a shared 2-core machine


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _metrics_dir(tmp: Path) -> Path:
    [directory] = tmp.glob("koinonia-metrics-*")
    return directory


def _log_lines(log: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in log.read_bytes().splitlines()]


def _answered_by_process(metrics_dir: Path, route: str) -> Counter[int]:
    """GET `route` requests each worker process counted, read from its own metrics file."""
    by_pid: Counter[int] = Counter()
    for path in metrics_dir.glob("counter_*.db"):
        pid = int(path.stem.rsplit("_", 1)[1])
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):
            _, sample, labels, _ = orjson.loads(key)
            if sample == REQUESTS and labels["route"] == route and labels["method"] == "GET":
                by_pid[pid] += int(value)
    return by_pid


def _requests_total(exposition: str, route: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        if sample.name == REQUESTS and sample.labels["route"] == route
    )


def _gauge(exposition: str, name: str) -> float:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    raise AssertionError(f"no {name}")


async def test_metrics_sum_every_worker_and_logs_are_json(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "KOINONIA_LOG_JSON": "true",
        "KOINONIA_LOG_LEVEL": "INFO",
        "TMPDIR": str(tmp_path),  # where `serve` creates its private metrics directory
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        serve = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "koinonia.cli", "serve", "--workers", "2"),
            *("--host", "127.0.0.1", "--port", str(port)),
            env=env,
            stdout=out,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + START_S
        while log.read_bytes().count(b"Application startup complete") < 2:
            assert serve.returncode is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        metrics_dir = _metrics_dir(tmp_path)

        # A fresh connection per request, until both workers have answered some.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as http:
            sent = 0
            while len(_answered_by_process(metrics_dir, "/healthz")) < 2:
                assert sent < 2000, "one worker answered every request"
                answers = await asyncio.gather(*(http.get("/healthz") for _ in range(20)))
                assert all(answer.status_code == 200 for answer in answers)
                sent += len(answers)
            assert sum(_answered_by_process(metrics_dir, "/healthz").values()) == sent

            scrapes = 0
            while scrapes < 5 or len(_answered_by_process(metrics_dir, "/metrics")) < 2:
                assert scrapes < 200, "one worker answered every scrape"
                scrape = await http.get("/metrics")
                scrapes += 1
                assert _requests_total(scrape.text, "/healthz") == sent
            # The pool gauges are summed over the live workers.
            pool_size = get_settings().pool_size
            assert _gauge(scrape.text, "koinonia_db_pool_size") == 2 * pool_size

            # A worker killed (no shutdown) is replaced by uvicorn: its requests stay counted,
            # its gauges leave the sums.
            os.kill(max(_answered_by_process(metrics_dir, "/healthz")), signal.SIGKILL)
            while log.read_bytes().count(b"Application startup complete") < 3:
                assert time.monotonic() < deadline + START_S, log.read_text()
                await asyncio.sleep(0.1)
            scrape = await http.get("/metrics")
            assert _requests_total(scrape.text, "/healthz") == sent
            assert _gauge(scrape.text, "koinonia_db_pool_size") == 2 * pool_size

        serve.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(serve.wait(), 30) == 0, log.read_text()
    finally:
        if serve.returncode is None:
            serve.kill()
            await serve.wait()
    assert not metrics_dir.exists()  # the parent removed it

    lines = _log_lines(log)  # each line one JSON object
    assert all({"event", "level", "timestamp"} <= line.keys() for line in lines)
    loggers = {line.get("logger") for line in lines}
    assert {"uvicorn.error", "alembic.runtime.migration"} <= loggers
    events = Counter(str(line["event"]) for line in lines)
    assert events["api_started"] == 3 and events["Application startup complete."] == 3
    assert not any(line["event"] == "request" for line in lines if "logger" in line)
