"""Serving a sandbox: in this process's event loop (tests, `koinonia dev`) or on its own
until interrupted (`koinonia sms-sandbox`, the bench)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from aiohttp import web

from koinonia.kit.loop import new_event_loop
from koinonia_sandbox.carrier import FakeCarrier
from koinonia_sandbox.config import SandboxConfig

log = structlog.get_logger("koinonia_sandbox")

DEFAULT_PORT = 8025
# A burst of new connections beyond the listen backlog waits out a 1 s SYN retransmit.
BACKLOG = 2048


@dataclass(slots=True)
class RunningSandbox:
    """A sandbox serving in this process's event loop (tests, `koinonia dev`)."""

    base_url: str
    carrier: FakeCarrier
    _runner: web.AppRunner

    @property
    def config(self) -> SandboxConfig:
        return self.carrier.config

    @property
    def public_key_b64(self) -> str:
        return self.carrier.config.telnyx_public_key_b64

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> RunningSandbox:
    """Serve a sandbox on host:port (0 picks a free port) until `.stop()`."""
    carrier = FakeCarrier(config or SandboxConfig())
    runner = web.AppRunner(carrier.app(), access_log=None, handle_signals=False)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port, backlog=BACKLOG).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_port = runner.addresses[0][1]
    shown_host = f"[{host}]" if ":" in host else host
    return RunningSandbox(f"http://{shown_host}:{bound_port}", carrier, runner)


def run_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = DEFAULT_PORT
) -> None:
    """Serve a sandbox until interrupted (the `koinonia sms-sandbox` command)."""
    carrier = FakeCarrier(config or SandboxConfig())

    def announce(*_args: object) -> None:
        log.info(
            "sms_sandbox_listening",
            url=f"http://{host}:{port}",
            telnyx_public_key=carrier.config.telnyx_public_key_b64,
        )

    web.run_app(
        carrier.app(),
        host=host,
        port=port,
        access_log=None,
        print=announce,
        backlog=BACKLOG,
        loop=new_event_loop(),
    )
