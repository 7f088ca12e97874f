"""kit.logging: the JSON renderer writes one orjson line per event, whatever the values."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import structlog

from koinonia.kit.logging import _dumps


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
