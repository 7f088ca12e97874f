"""The API served by a real uvicorn on a loopback port, configured as `koinonia serve` configures
it (`kit.server.uvicorn_options`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Generator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvicorn

from api.live import LiveServer, ServeApi
from koinonia.app import create_app
from koinonia.config import get_settings
from koinonia.db.database import Database
from koinonia.kit.server import uvicorn_options


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@pytest.fixture
async def serve_api(committed_database: Database) -> AsyncIterator[ServeApi]:
    """`async with serve_api(**settings) as server:` the app on a free port, with these
    settings (small deadlines and gates) for the app and for uvicorn."""

    @asynccontextmanager
    async def serve(**overrides: Any) -> AsyncIterator[LiveServer]:
        # uvicorn applies the settings' logging to this process: the level the session logs at
        # (tests/fixtures/database.py).
        settings = get_settings().model_copy(update={"log_level": "WARNING", **overrides})
        app = create_app(settings, database=committed_database)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=0, lifespan="off", **uvicorn_options(settings)
        )
        server = _Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            assert not task.done(), "test API did not start"
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield LiveServer(app, port, server)
        finally:
            server.should_exit = True
            server.force_exit = True  # stalled test clients must not hold the shutdown
            await task

    yield serve
