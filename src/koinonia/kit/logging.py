"""structlog set-up: JSON lines in production, readable console output in development.

Every request writes one line, so the JSON path is kept cheap: orjson renders bytes straight to
stderr's binary buffer (the stdlib `json` encoder was ~10% of a cached request's CPU).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import orjson
import structlog


def _dumps(event: dict[str, Any], **kw: Any) -> bytes:
    # Non-JSON values (exceptions, paths, enums...) are logged as their str(), never an error.
    return orjson.dumps(event, default=str, option=orjson.OPT_NON_STR_KEYS)


def _dumps_str(event: dict[str, Any], **kw: Any) -> str:
    return _dumps(event).decode()


def configure_logging(*, json: bool, level: str = "INFO") -> None:
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    logger_factory: Any
    binary = getattr(sys.stderr, "buffer", None)  # absent when stderr is swapped (captured)
    if json and binary is not None:
        processors.append(structlog.processors.JSONRenderer(serializer=_dumps))
        logger_factory = structlog.BytesLoggerFactory(file=binary)
    elif json:
        processors.append(structlog.processors.JSONRenderer(serializer=_dumps_str))
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
        logger_factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )


log = structlog.get_logger("koinonia")
