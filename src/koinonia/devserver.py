"""`koinonia dev` (what `make run` starts): the API, a delivery worker and the SMS sandbox in
one asyncio loop, so a fresh machine needs one command and one Ctrl-C. The API and the worker
share one `Database` (one pool), opened and disposed of here.

The sandbox listens on the port of `settings.sandbox_url` and posts delivery reports and
member texts to `settings.public_url`, so a broadcast sent from the API goes through the worker,
the real adapters, the sandbox and back through the signed webhooks, as in production.

The sandbox is development tooling outside the product (`src/koinonia_sandbox`): it is
imported only when `serve_dev` runs; `koinonia dev` checks first that it is installed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Generator
from urllib.parse import urlsplit

import uvicorn

from koinonia.config import DEV_TELNYX_API_KEY, DEV_TWILIO_AUTH_TOKEN, Settings
from koinonia.db.database import Database
from koinonia.db.migrate import migrate
from koinonia.delivery.worker import install_signal_handlers, run_worker
from koinonia.kit.logging import configure_logging_from, log
from koinonia.kit.server import uvicorn_options


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: ours stops the worker before the API, and the
    database they share is disposed of after both."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def dev_settings(settings: Settings) -> Settings:
    """With the development credentials (the sandbox's defaults), Twilio and Telnyx churches
    talk to the sandbox too (the demo data may use either); real credentials keep the real
    APIs."""
    updates: dict[str, str] = {}
    if settings.twilio_auth_token.get_secret_value() == DEV_TWILIO_AUTH_TOKEN:
        updates["twilio_api_url"] = settings.sandbox_url
    if settings.telnyx_api_key.get_secret_value() == DEV_TELNYX_API_KEY:
        updates["telnyx_api_url"] = settings.sandbox_url
    return settings.model_copy(update=updates) if updates else settings


async def serve_dev(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run until `stop` is set (or SIGINT/SIGTERM when `stop` is not given)."""
    from koinonia.app import create_app
    from koinonia_sandbox import DEFAULT_PORT, sandbox_config, start_sandbox

    settings = dev_settings(settings)
    configure_logging_from(settings)
    if stop is None:
        stop = asyncio.Event()
        install_signal_handlers(stop)
    where = urlsplit(settings.sandbox_url)
    sandbox = await start_sandbox(
        sandbox_config(settings),
        host=where.hostname or "127.0.0.1",
        port=where.port or DEFAULT_PORT,
    )
    database = Database.open(settings)
    try:
        await migrate(database.engine)
        server = _Server(
            uvicorn.Config(
                create_app(settings, database=database),
                host=settings.host,
                port=settings.port,
                **uvicorn_options(settings),
            )
        )
        api = asyncio.create_task(server.serve(), name="dev-api")
        while not server.started:
            if api.done():
                await api  # start-up failed (port taken): uvicorn says why
                return
            await asyncio.sleep(0.05)
        worker = asyncio.create_task(run_worker(settings, database, stop=stop), name="dev-worker")
        log.info(
            "dev_started", api=f"http://{settings.host}:{settings.port}", sandbox=sandbox.base_url
        )
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait({api, worker, stopped}, return_when=asyncio.FIRST_COMPLETED)
        stop.set()
        await asyncio.gather(worker, return_exceptions=True)  # finishes its in-flight batch
        server.should_exit = True
        await asyncio.gather(api, stopped, return_exceptions=True)
    finally:
        await sandbox.stop()
        await database.dispose()


def run_dev(settings: Settings) -> None:
    """Blocking entry point of `koinonia dev`."""
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(serve_dev(settings))
