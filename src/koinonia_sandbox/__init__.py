"""The SMS sandbox: a loopback fake carrier speaking the Twilio and Telnyx send APIs.

It answers like the real services (same paths, auth, id shapes and error bodies), can be made
slow, flaky, rate-limited or picky through `SandboxConfig`, and posts signed delivery reports
and inbound texts back to our webhooks, so the adapters, signatures and webhook handlers run
exactly as in production. Inspection and control live under /sandbox/.

Development and test tooling, not part of the product: it lives beside `koinonia` in `src/`
and is left out of the `koinonia` distribution (pyproject.toml), so a production install
carries no fake carrier and no aiohttp (a dev extra). It may import `koinonia`; `koinonia`
imports it only where `koinonia dev` and `koinonia sms-sandbox` start it. Modules: `config`
(the knobs), `wire` (the carriers' request and answer formats), `carrier` (state and
handlers), `server` (serving it).
"""

from koinonia_sandbox.carrier import FakeCarrier
from koinonia_sandbox.config import (
    DEFAULT_TELNYX_SIGNING_KEY_B64,
    SandboxConfig,
    patched_config,
    sandbox_config,
)
from koinonia_sandbox.server import DEFAULT_PORT, RunningSandbox, run_sandbox, start_sandbox
from koinonia_sandbox.wire import SentMessage

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_TELNYX_SIGNING_KEY_B64",
    "FakeCarrier",
    "RunningSandbox",
    "SandboxConfig",
    "SentMessage",
    "patched_config",
    "run_sandbox",
    "sandbox_config",
    "start_sandbox",
]
