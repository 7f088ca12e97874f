"""Telnyx Messaging API v2: send a message over REST."""

from __future__ import annotations

from typing import Any

import orjson

from koinonia.sms.base import (
    DEFAULT_TIMEOUT_S,
    TELNYX_API_URL,
    HttpAdapter,
    OutboundSms,
    SendResult,
    is_transient_status,
)
from koinonia.sms.http import HttpClient

OPTED_OUT_CODE = "40300"  # "Blocked due to STOP message"
# The most parts one SMS may take (1,530 GSM-7 or 670 UCS-2 characters); beyond it Telnyx
# answers 40302 "Message too large" unless the messaging profile auto-chunks long messages.
MAX_PARTS = 10
# 10007 unexpected error, 10008 request timeout, 10011 too many requests; and the delivery
# errors a message.finalized webhook carries that Telnyx says to retry after a delay: 40004
# rejected by the destination for an unknown reason, 40006 recipient's carrier down, 40011
# rate limited by the carrier.
TRANSIENT_CODES = frozenset({"10007", "10008", "10011", "40004", "40006", "40011"})


def messages_url(base_url: str) -> str:
    return f"{base_url.rstrip('/')}/v2/messages"


class TelnyxProvider(HttpAdapter):
    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = TELNYX_API_URL,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        http: HttpClient | None = None,
        name: str = "telnyx",
    ) -> None:
        super().__init__(timeout_s=timeout_s, http=http)
        self.name = name
        self._request = HttpClient.prepare(
            messages_url(base_url),
            {
                "Authorization": f"Bearer {api_key}",
                "Accept": "application/json",
                "Content-Type": "application/json",
            },
        )

    async def send(self, sms: OutboundSms) -> SendResult:
        body = {"from": sms.from_, "to": sms.to, "text": sms.body}
        if sms.status_callback:
            body["webhook_url"] = sms.status_callback
        answer = await self._post(self._request, orjson.dumps(body))
        if isinstance(answer, SendResult):
            return answer
        return classify(answer.status, answer.payload, answer.retry_after)


def classify(status: int, payload: Any, retry_after: float | None) -> SendResult:
    """Map Telnyx's answer to a result: accepted, opted out, retry later, or failed for good."""
    body = payload if isinstance(payload, dict) else {}
    if 200 <= status < 300:
        data = body.get("data")
        message_id = data.get("id") if isinstance(data, dict) else None
        if isinstance(message_id, str) and message_id:
            return SendResult(message_id)
        # Accepted without an id: retrying could send twice, so it fails instead.
        return SendResult(None, "invalid_response", f"HTTP {status} without a message id")
    errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
    codes = [str(e["code"]) for e in errors if isinstance(e.get("code"), int | str)]
    code = OPTED_OUT_CODE if OPTED_OUT_CODE in codes else (codes[0] if codes else str(status))
    first = errors[0] if errors else {}
    parts = [p for p in (first.get("title"), first.get("detail")) if isinstance(p, str) and p]
    return SendResult(
        None,
        code,
        ": ".join(parts) or f"HTTP {status}",
        transient=is_transient_status(status) or code in TRANSIENT_CODES,
        opted_out=code == OPTED_OUT_CODE,
        retry_after=retry_after,
        rejected=True,
    )
