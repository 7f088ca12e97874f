"""kit.logging: the JSON renderer writes one orjson line per event, whatever the values."""

from __future__ import annotations

import io
import sys
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import orjson
import structlog
from structlog.contextvars import bind_contextvars, unbind_contextvars

from koinonia.kit.logging import _dumps, configure_logging, log_request


def test_json_lines_render_any_value() -> None:
    render = structlog.processors.JSONRenderer(serializer=_dumps)
    line = render(
        None,
        "info",
        {"event": "request", "path": Path("/a"), "at": datetime(2026, 1, 2, tzinfo=UTC), 3: "x"},
    )
    assert isinstance(line, bytes) and b"\n" not in line
    assert orjson.loads(line) == {
        "event": "request",
        "path": "/a",
        "at": "2026-01-02T00:00:00+00:00",
        "3": "x",
    }


def test_the_request_line_is_the_line_structlog_writes() -> None:
    """kit.http logs each request through `log_request`, which writes the JSON line itself:
    the same keys and values as the configured structlog chain (timestamps aside)."""
    stream = io.BytesIO()
    real_stderr = sys.stderr
    sys.stderr = SimpleNamespace(buffer=stream, isatty=lambda: False)  # type: ignore[assignment]
    fields = {"method": "GET", "path": "/a", "status": 200, "ms": 1.5, "church_id": None}
    try:
        configure_logging(json=True, level="INFO")
        bind_contextvars(request_id="r1")
        structlog.get_logger("koinonia").info("request", **fields)
        log_request("r1", **fields)
    finally:
        sys.stderr = real_stderr
        unbind_contextvars("request_id")
        configure_logging(json=False, level="WARNING")  # as tests/fixtures/database.py does
    by_structlog, direct = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("timestamp").endswith("Z") and by_structlog.pop("timestamp").endswith("Z")
    assert direct == by_structlog
