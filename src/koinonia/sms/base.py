"""The provider contract: what a send looks like, what comes back, and what adapters share.

Adapters never raise for provider or network trouble: every outcome is a `SendResult`, so the
dispatcher records results in one set-based write instead of juggling exceptions per recipient.
The adapters (`twilio.py`, `telnyx.py`) import this module and it imports none of them;
`providers.build_provider` picks one by name.
"""

from __future__ import annotations

import email.utils
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from koinonia.sms.http import HttpClient, HttpError, Prepared

ProviderName = Literal["twilio", "telnyx", "sandbox"]

TWILIO_API_URL = "https://api.twilio.com"
TELNYX_API_URL = "https://api.telnyx.com"
DEFAULT_CONNECTION_LIMIT = 200
DEFAULT_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class OutboundSms:
    to: str  # E.164
    from_: str  # E.164, the church's number
    body: str
    status_callback: str | None  # our status webhook URL


@dataclass(frozen=True, slots=True)
class SendResult:
    provider_id: str | None  # set when accepted
    error_code: str | None = None  # the provider's code ("21610", "40300"), else the HTTP status
    error_text: str | None = None
    transient: bool = False  # worth retrying later
    opted_out: bool = False  # the recipient unsubscribed (Twilio 21610, Telnyx 40300)
    retry_after: float | None = None  # seconds, from Retry-After when given
    # The provider answered with an error: it did not take the text (unlike a timeout, a broken
    # connection or a 2xx without an id, after which it may have).
    rejected: bool = False

    @property
    def ok(self) -> bool:
        return self.provider_id is not None and self.error_code is None


class Provider(Protocol):
    name: str

    async def send(self, sms: OutboundSms) -> SendResult: ...

    async def close(self) -> None: ...


def create_http_client(
    *, connection_limit: int = DEFAULT_CONNECTION_LIMIT, keepalive_s: float = 30.0
) -> HttpClient:
    """The one HTTP client a process shares between its adapters (koinonia.sms.http).

    Keep-alive matters: a TLS handshake per text would cost more than the request itself.
    `connection_limit` caps the open connections per provider host.
    """
    return HttpClient(limit=connection_limit, keepalive_s=keepalive_s)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def is_transient_status(status: int) -> bool:
    return status in (408, 429) or status >= 500


@dataclass(frozen=True, slots=True)
class HttpAnswer:
    status: int
    payload: Any  # parsed JSON, or None when the body was not JSON
    retry_after: float | None


class HttpAdapter:
    """Client ownership and transport failures, shared by the Twilio and Telnyx adapters."""

    name: str

    def __init__(self, *, timeout_s: float, http: HttpClient | None) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self._timeout_s = timeout_s
        self._http = http
        # A shared client belongs to whoever created it; only a client we made is ours to close.
        self._owns_http = http is None

    def _client(self) -> HttpClient:
        if self._http is None:
            self._http = create_http_client()
        return self._http

    async def close(self) -> None:
        if self._owns_http and self._http is not None:
            await self._http.close()
            self._http = None

    async def _post(self, request: Prepared, body: bytes) -> HttpAnswer | SendResult:
        """POST and read the answer; a transport failure comes back as a transient result."""
        try:
            response = await self._client().post(request, body, within_s=self._timeout_s)
        except TimeoutError:
            return SendResult(None, "timeout", f"{self.name}: no answer in time", transient=True)
        except (HttpError, OSError) as exc:
            return SendResult(
                None, "connection", f"{self.name}: {type(exc).__name__}: {exc}", transient=True
            )
        try:
            payload: Any = orjson.loads(response.body) if response.body else None
        except orjson.JSONDecodeError:
            payload = None
        return HttpAnswer(response.status, payload, parse_retry_after(response.retry_after))
