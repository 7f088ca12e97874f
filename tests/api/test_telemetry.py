"""FastAPI's native OpenTelemetry instrumentation is the operator's choice (KOINONIA_OPENTELEMETRY).

Off by default: without it FastAPI asks the global OpenTelemetry providers on every request
whether they are configured (~10% of a cached read's CPU, measured by the bench's profile).
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from koinonia.app import create_app
from koinonia.config import get_settings

SIGNALS = ("tracing", "metrics", "logs")


def _telemetry(app: FastAPI) -> dict[str, object]:
    return dict(app._telemetry)  # FastAPI keeps the resolved configuration here


@pytest.mark.parametrize("enabled", [False, True])
def test_the_setting_decides_fastapis_opentelemetry(enabled: bool) -> None:
    settings = get_settings().model_copy(update={"opentelemetry": enabled})
    app = create_app(settings)
    assert {signal: _telemetry(app)[signal] for signal in SIGNALS} == dict.fromkeys(
        SIGNALS, enabled
    )
    if not enabled:
        assert not app._native_telemetry.enabled()
