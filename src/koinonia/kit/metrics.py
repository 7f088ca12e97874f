"""Prometheus metrics of the process (exported at /metrics)."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

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
POOL_SIZE = Gauge("koinonia_db_pool_size", "Configured pool size")
POOL_CHECKED_OUT = Gauge("koinonia_db_pool_checked_out", "Connections checked out")
POOL_OVERFLOW = Gauge("koinonia_db_pool_overflow", "Connections beyond pool size")
POOL_WAITERS = Gauge("koinonia_db_pool_waiters", "Tasks waiting for a connection")
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
