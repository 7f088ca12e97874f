"""Twilio Programmable Messaging: create a Message over REST (also what the sandbox speaks)."""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any
from urllib.parse import quote_plus

from koinonia.sms.base import (
    DEFAULT_TIMEOUT_S,
    TWILIO_API_URL,
    HttpAdapter,
    OutboundSms,
    SendResult,
    is_transient_status,
)
from koinonia.sms.http import HttpClient

API_VERSION = "2010-04-01"
OPTED_OUT_CODE = "21610"  # "Attempt to send to unsubscribed recipient"
# The longest Body the Messages resource accepts, in characters (21617 beyond it).
MAX_BODY_CHARS = 1600
# Codes Twilio documents as "slow down / try again" rather than "this text cannot go":
# 20429 too many requests, 20500/20503 server trouble, 21611 sender queue full,
# 30001 queue overflow, 30022 10DLC rate limit, 63017 account rate limit.
TRANSIENT_CODES = frozenset({"20429", "20500", "20503", "21611", "30001", "30022", "63017"})


def messages_url(base_url: str, account_sid: str) -> str:
    return f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@lru_cache(maxsize=1024)
def _quoted(value: str) -> str:
    # A church's number and our callback URL repeat on every text it sends: encode each once.
    return quote_plus(value)


def encode_form(sms: OutboundSms) -> bytes:
    """The form body, as urlencode would write it (To, From, Body[, StatusCallback])."""
    form = f"To={quote_plus(sms.to)}&From={_quoted(sms.from_)}&Body={quote_plus(sms.body)}"
    if sms.status_callback:
        form += f"&StatusCallback={_quoted(sms.status_callback)}"
    return form.encode("ascii")


class TwilioProvider(HttpAdapter):
    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        base_url: str = TWILIO_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: HttpClient | None = None,
        name: str = "twilio",
    ) -> None:
        super().__init__(timeout_s=timeout_s, http=http)
        self.name = name
        self._request = HttpClient.prepare(
            messages_url(base_url, account_sid),
            {
                "Authorization": basic_auth(account_sid, auth_token),
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
        )

    async def send(self, sms: OutboundSms) -> SendResult:
        answer = await self._post(self._request, encode_form(sms))
        if isinstance(answer, SendResult):
            return answer
        return classify(answer.status, answer.payload, answer.retry_after)


def classify(status: int, payload: Any, retry_after: float | None) -> SendResult:
    """Map Twilio's answer to a result: accepted, opted out, retry later, or failed for good."""
    body = payload if isinstance(payload, dict) else {}
    if 200 <= status < 300:
        sid = body.get("sid")
        if isinstance(sid, str) and sid:
            return SendResult(sid)
        # Accepted without an id: retrying could send twice, so it fails instead.
        return SendResult(None, "invalid_response", f"HTTP {status} without a message sid")
    raw_code = body.get("code")
    code = str(raw_code) if isinstance(raw_code, int | str) and raw_code != "" else str(status)
    message = body.get("message")
    text = message if isinstance(message, str) and message else f"HTTP {status}"
    return SendResult(
        None,
        code,
        text,
        transient=is_transient_status(status) or code in TRANSIENT_CODES,
        opted_out=code == OPTED_OUT_CODE,
        retry_after=retry_after,
        rejected=True,
    )
