"""kit.logging: the JSON renderer writes one orjson line per event, whatever the values, and the
libraries' stdlib records come out in the same shape."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import orjson
import structlog
import uvicorn
from structlog.contextvars import bind_contextvars, unbind_contextvars

from koinonia.kit.logging import _dumps, configure_logging, log_request, logging_config


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
        configure_logging(json=True, level="INFO", cache=False)
        bind_contextvars(request_id="r1")
        structlog.get_logger("koinonia").info("request", **fields)
        log_request("r1", **fields)
    finally:
        sys.stderr = real_stderr
        unbind_contextvars("request_id")
        configure_logging(
            json=False, level="WARNING", cache=False
        )  # as tests/fixtures/database.py does
    by_structlog, direct = (orjson.loads(line) for line in stream.getvalue().splitlines())
    assert direct.pop("timestamp").endswith("Z") and by_structlog.pop("timestamp").endswith("Z")
    assert direct == by_structlog


def _lines_of(json: bool, level: str, emit: Callable[[], None]) -> list[str]:
    """What `emit` writes on stderr with logging configured as in production (`json`)."""
    stream = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = stream
    try:
        configure_logging(json=json, level=level, cache=False)
        emit()
    finally:
        sys.stderr = real_stderr
        configure_logging(
            json=False, level="WARNING", cache=False
        )  # as tests/fixtures/database.py does
    return stream.getvalue().splitlines()


def _library_records() -> None:
    bind_contextvars(request_id="r1")
    try:
        logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
        logging.getLogger("uvicorn.error").debug("below the level")
        logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")  # echo: never at INFO
        logging.getLogger("sqlalchemy.pool.impl.AsyncAdaptedQueuePool").warning("pool trouble")
        logging.getLogger("alembic.runtime.migration").info("Running upgrade  -> 0001")
        try:
            raise ValueError("boom")
        except ValueError:
            logging.getLogger("asyncio").exception("Task exception was never retrieved")
    finally:
        unbind_contextvars("request_id")


def test_library_records_are_json_lines_in_production() -> None:
    """uvicorn's, SQLAlchemy's, Alembic's and asyncio's stdlib records come out as our JSON
    lines (event, level, logger, timestamp, the bound context), at the configured level."""
    lines = [orjson.loads(line) for line in _lines_of(True, "INFO", _library_records)]
    for line in lines:
        assert line.pop("timestamp").endswith("Z")
        assert line.pop("request_id") == "r1"
    exception = lines[-1].pop("exception")
    assert exception.startswith("Traceback") and "ValueError: boom" in exception
    assert lines == [
        {"event": "Started server process [42]", "level": "info", "logger": "uvicorn.error"},
        {
            "event": "pool trouble",
            "level": "warning",
            "logger": "sqlalchemy.pool.impl.AsyncAdaptedQueuePool",
        },
        {
            "event": "Running upgrade  -> 0001",
            "level": "info",
            "logger": "alembic.runtime.migration",
        },
        {"event": "Task exception was never retrieved", "level": "error", "logger": "asyncio"},
    ]


def test_library_records_respect_the_level_and_read_well_in_development() -> None:
    lines = _lines_of(False, "WARNING", _library_records)
    assert len(lines) > 2 and not lines[0].startswith("{")
    assert "pool trouble" in lines[0] and "sqlalchemy.pool.impl" in lines[0]
    assert "Task exception was never retrieved" in lines[1] and "ValueError: boom" in lines[-1]
    assert not any("Started server" in line or "Running upgrade" in line for line in lines)


def test_uvicorn_applies_the_same_set_up_in_its_processes() -> None:
    """`logging_config` (uvicorn's `log_config`, applied in each worker process) routes the
    records like `configure_logging`, also when uvicorn's own configuration came first."""
    stream = io.StringIO()
    real_stderr = sys.stderr
    sys.stderr = stream
    try:
        logging.config.dictConfig(uvicorn.config.LOGGING_CONFIG)
        config = logging_config(json=True, level="INFO")
        uvicorn.Config("koinonia.app:create_app", log_config=config)
        logging.getLogger("uvicorn.error").info("Uvicorn running")
        logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    finally:
        sys.stderr = real_stderr
        configure_logging(json=False, level="WARNING", cache=False)
    line = orjson.loads(stream.getvalue())
    assert line.pop("timestamp").endswith("Z")
    assert line == {"event": "Uvicorn running", "level": "info", "logger": "uvicorn.error"}
