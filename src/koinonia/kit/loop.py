"""The event loop of the worker and sandbox processes."""

from __future__ import annotations

import asyncio


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop where it exists (Linux, macOS), else asyncio's. Worker and sandbox
    processes run on it: most of their CPU per text is event-loop and socket work, which uvloop
    does in C. (The API gets uvloop from uvicorn.)"""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
