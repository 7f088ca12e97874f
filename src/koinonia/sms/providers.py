"""Building an adapter by provider name (the one module that knows every adapter).

It lives apart from `base.py` because the adapters import the contract from there: `base`
imports no adapter, the adapters import `base`, and this module imports them all.
"""

from __future__ import annotations

from koinonia.sms.base import (
    DEFAULT_TIMEOUT_S,
    TELNYX_API_URL,
    TWILIO_API_URL,
    Provider,
    ProviderName,
)
from koinonia.sms.http import HttpClient
from koinonia.sms.telnyx import TelnyxProvider
from koinonia.sms.twilio import TwilioProvider


def build_provider(
    name: ProviderName,
    *,
    base_url: str | None = None,
    twilio_account_sid: str = "",
    twilio_auth_token: str = "",
    telnyx_api_key: str = "",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    http: HttpClient | None = None,
) -> Provider:
    """The adapter for `name`; `base_url` defaults to the real API (required for the sandbox).

    "sandbox" is the Twilio adapter pointed at the sandbox, which speaks Twilio's API (and
    Telnyx's under /v2: build "telnyx" with the sandbox's base URL for that).
    Raises ValueError on missing credentials so misconfiguration fails at start-up.
    """
    if name == "telnyx":
        if not telnyx_api_key:
            raise ValueError("telnyx provider needs an API key")
        return TelnyxProvider(
            telnyx_api_key,
            base_url=base_url or TELNYX_API_URL,
            timeout_s=timeout_s,
            http=http,
        )
    if name not in ("twilio", "sandbox"):
        raise ValueError(f"unknown SMS provider {name!r}")
    if not twilio_account_sid or not twilio_auth_token:
        raise ValueError(f"{name} provider needs a Twilio account SID and auth token")
    if name == "sandbox" and not base_url:
        raise ValueError("sandbox provider needs the sandbox base URL")
    return TwilioProvider(
        twilio_account_sid,
        twilio_auth_token,
        base_url=base_url or TWILIO_API_URL,
        timeout_s=timeout_s,
        http=http,
        name=name,
    )
