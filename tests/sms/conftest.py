"""SMS fixtures: a sandbox on a free loopback port, a client session, and a webhook receiver."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDictProxy

from koinonia.sms.base import Provider, create_http_client
from koinonia.sms.http import HttpClient
from koinonia.sms.providers import build_provider
from koinonia_sandbox import RunningSandbox, SandboxConfig, start_sandbox

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-auth-token"
TELNYX_KEY = "KEYtest"


@dataclass(frozen=True)
class Received:
    path: str
    headers: CIMultiDictProxy[str]
    body: bytes


@dataclass
class Receiver:
    """Stands in for our webhook endpoints: records every POST and answers as told."""

    base_url: str = ""
    requests: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many requests before succeeding
    reply_status: int = 200
    reply_body: str = "ok"
    reply_content_type: str = "text/plain"
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    def url(self, path: str) -> str:
        return self.base_url + path

    def on(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        async with self._arrived:
            self.requests.append(Received(request.path_qs, request.headers, body))
            self._arrived.notify_all()
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500, text="not yet")
        return web.Response(
            status=self.reply_status, text=self.reply_body, content_type=self.reply_content_type
        )

    async def wait_for(self, path: str, count: int, within_s: float = 5.0) -> list[Received]:
        async with asyncio.timeout(within_s), self._arrived:
            await self._arrived.wait_for(lambda: len(self.on(path)) >= count)
        return self.on(path)


def _config() -> SandboxConfig:
    # Fast callbacks, so tests wait milliseconds, not seconds.
    return SandboxConfig(
        twilio_account_sid=TWILIO_SID,
        twilio_auth_token=TWILIO_TOKEN,
        telnyx_api_key=TELNYX_KEY,
        delivery_delay_ms=20,
        callback_retry_ms=10,
        seed=1234,
    )


@pytest_asyncio.fixture(loop_scope="function")
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(_config())
    yield running
    await running.stop()


@pytest_asyncio.fixture(loop_scope="function")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP client, for talking to the sandbox directly."""
    client = aiohttp.ClientSession()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="function")
async def provider_http() -> AsyncIterator[HttpClient]:
    """The adapters' client, shared by every adapter a test makes (as in a worker)."""
    client = create_http_client()
    yield client
    await client.close()


@pytest_asyncio.fixture(loop_scope="function")
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", state.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    state.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield state
    await runner.cleanup()


MakeProvider = Callable[..., Provider]


@pytest.fixture
def make_provider(sandbox: RunningSandbox, provider_http: HttpClient) -> MakeProvider:
    """The real adapter ("twilio" or "telnyx") pointed at the sandbox, over the shared session."""

    def make(kind: str, *, timeout_s: float = 5.0) -> Provider:
        return build_provider(
            "sandbox" if kind == "twilio" else "telnyx",
            base_url=sandbox.base_url,
            twilio_account_sid=TWILIO_SID,
            twilio_auth_token=TWILIO_TOKEN,
            telnyx_api_key=TELNYX_KEY,
            timeout_s=timeout_s,
            http=provider_http,
        )

    return make
