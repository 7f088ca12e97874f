"""Prometheus metrics (exported at /metrics), correct with one API process or several.

One process (`koinonia serve`, `koinonia worker`, `koinonia dev`, the tests): the metrics live in
the process's default registry and `exposition()` renders it.

Several (`koinonia serve --workers N`): each worker is its own interpreter with its own values,
and a scrape reaches whichever worker accepted the connection, so a plain registry would answer
one worker's share. `shared_between_processes(workers)`, entered by the parent before uvicorn
starts the workers, creates a fresh private directory and names it in PROMETHEUS_MULTIPROC_DIR
(inherited by the workers, which read it when prometheus_client is imported): each worker then
keeps its values in memory-mapped files there (prometheus_client's multiprocess mode), and
`exposition()` answers the sum over all of them (`MultiProcessCollector`), whichever worker
serves the scrape. Counters and histograms keep the counts of workers that exited or were
replaced (the totals never go back); the pool gauges are `livesum`, the sum over the workers
alive: connections configured, checked out, in overflow, and tasks waiting, for the whole
server. A worker marks its gauges dead when its app shuts down (`process_exiting`), and a scrape
drops the gauges of any worker that died without shutting down (killed; uvicorn replaces it).
The parent removes the directory when it stops, so a restart starts from zero, as one process
does.

Multiprocess mode only with several workers, decided by measurement: each observation takes a
lock and writes a memory-mapped file, and a micro-benchmark (timeit, best of 15 x 50,000, on the
2-core development machine) measured `observe_request` (the counter and histogram every request
records) at 2.2 µs in the plain registry and 4.9 µs in multiprocess mode, a statement's counter
and histogram at 1.7 µs and 5.1 µs: ~3 µs more per request and per SQL statement, for nothing
when one process holds every value.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

DB_STATEMENTS = Counter("koinonia_db_statements_total", "SQL statements executed")
DB_SECONDS = Histogram(
    "koinonia_db_statement_seconds",
    "SQL statement duration",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
DB_SLOW = Counter("koinonia_db_slow_queries_total", "Statements over the slow threshold", ["level"])
N_PLUS_ONE = Counter(
    "koinonia_n_plus_one_total", "Units of work repeating one statement shape too often", ["label"]
)
# Per process, summed over the live processes in multiprocess mode (see the module docstring).
POOL_SIZE = Gauge("koinonia_db_pool_size", "Configured pool size", multiprocess_mode="livesum")
POOL_CHECKED_OUT = Gauge(
    "koinonia_db_pool_checked_out", "Connections checked out", multiprocess_mode="livesum"
)
POOL_OVERFLOW = Gauge(
    "koinonia_db_pool_overflow", "Connections beyond pool size", multiprocess_mode="livesum"
)
POOL_WAITERS = Gauge(
    "koinonia_db_pool_waiters", "Tasks waiting for a connection", multiprocess_mode="livesum"
)
POOL_WAIT = Histogram(
    "koinonia_db_pool_checkout_wait_seconds",
    "Time waiting to check out a connection",
    buckets=(0.0001, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 15, 45),
)
HTTP_REQUESTS = Counter(
    "koinonia_http_requests_total", "HTTP requests", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "koinonia_http_request_seconds",
    "HTTP request duration",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
CACHE = Counter("koinonia_cache_requests_total", "Cache lookups", ["name", "result"])
SMS_SENT = Counter("koinonia_sms_send_total", "SMS send attempts", ["provider", "outcome"])
WEBHOOKS = Counter("koinonia_webhooks_total", "Provider webhooks", ["provider", "kind", "outcome"])
REPORTS_DEFERRED = Counter(
    "koinonia_status_reports_deferred_total",
    "Delivery reports left for a later batch because their text was being written back",
)

# Label children per (method, route, status): `labels()` validates and locks on every call, and
# every request records one. The set is bounded by the routes, methods and statuses served.
_request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one HTTP request and its duration (`koinonia_http_request{s_total,_seconds}`)."""
    children = _request_children.get((method, route, status))
    if children is None:
        children = (HTTP_REQUESTS.labels(method, route, str(status)), HTTP_SECONDS.labels(route))
        _request_children[(method, route, status)] = children
    children[0].inc()
    children[1].observe(seconds)


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


@contextmanager
def shared_between_processes(workers: int) -> Iterator[None]:
    """Around the start of `workers` server processes: with more than one, a fresh private
    directory in PROMETHEUS_MULTIPROC_DIR for their metrics, removed (and the variable restored)
    on exit. Enter it before the processes start: prometheus_client reads the variable once,
    when it is imported."""
    if workers <= 1:
        yield
        return
    directory = tempfile.mkdtemp(prefix="koinonia-metrics-")
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = directory
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(directory, ignore_errors=True)


def in_multiprocess_mode() -> bool:
    """This process keeps its values in PROMETHEUS_MULTIPROC_DIR (decided at import)."""
    return values.ValueClass is not values.MutexValue


_shared_registry: CollectorRegistry | None = None


def exposition() -> bytes:
    """The metrics in Prometheus' text format: this process's registry, or in multiprocess mode
    the sum over every process's files (after dropping the gauges of processes that died)."""
    if not in_multiprocess_mode():
        return generate_latest(REGISTRY)
    global _shared_registry
    if _shared_registry is None:
        _shared_registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(_shared_registry)  # type: ignore[no-untyped-call]
    _forget_dead_processes(Path(os.environ[MULTIPROC_DIR_ENV]))
    return generate_latest(_shared_registry)


def process_exiting() -> None:
    """This process stops recording: in multiprocess mode its live gauges leave the sums."""
    if in_multiprocess_mode():
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def _forget_dead_processes(directory: Path) -> None:
    # Live gauge files are named gauge_live<mode>_<pid>.db.
    for pid in {int(f.stem.rsplit("_", 1)[1]) for f in directory.glob("gauge_live*_*.db")}:
        if not _alive(pid):
            with contextlib.suppress(FileNotFoundError):  # another worker's scrape was first
                multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True
