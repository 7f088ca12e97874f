"""Webhook fixtures: signed Twilio / Telnyx requests, and the rows the webhooks act on."""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.config import get_settings
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    private_key_from_b64,
    telnyx_sign,
    twilio_signature,
)
from koinonia_sandbox import DEFAULT_TELNYX_SIGNING_KEY_B64

TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
TWILIO_INBOUND = "/api/v1/webhooks/twilio/inbound"
TELNYX = "/api/v1/webhooks/telnyx"
FORM = "application/x-www-form-urlencoded"
# The key the app trusts in dev and test (settings.telnyx_verify_key): the sandbox's.
SANDBOX_TELNYX_KEY = private_key_from_b64(DEFAULT_TELNYX_SIGNING_KEY_B64)

_ids = itertools.count(1)


def public_url(path: str) -> str:
    return get_settings().public_url + path


@dataclass
class Webhooks:
    """Posts provider webhooks at the app, signed as the provider would (or not, when told)."""

    client: httpx.AsyncClient

    async def twilio(
        self,
        params: Mapping[str, str],
        *,
        path: str = TWILIO_STATUS,
        signed_url: str | None = None,
        token: str | None = None,
        signature: str | None = None,
        sign: bool = True,
        content_type: str = FORM,
        body: bytes | None = None,
    ) -> httpx.Response:
        headers = {"Content-Type": content_type}
        if sign:
            headers[TWILIO_SIGNATURE_HEADER] = (
                signature
                if signature is not None
                else twilio_signature(
                    signed_url or public_url(path),
                    params,
                    token or get_settings().twilio_auth_token.get_secret_value(),
                )
            )
        raw = body if body is not None else urllib.parse.urlencode(params).encode()
        return await self.client.post(path, content=raw, headers=headers)

    async def twilio_status(self, sid: str, status: str, **extra: str) -> httpx.Response:
        params = {
            "AccountSid": get_settings().twilio_account_sid,
            "ApiVersion": "2010-04-01",
            "From": "+15550100000",
            "To": "+15550100001",
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            **extra,
        }
        return await self.twilio(params)

    async def telnyx(
        self,
        event: Any = None,
        *,
        body: bytes | None = None,
        key: Ed25519PrivateKey = SANDBOX_TELNYX_KEY,
        timestamp: int | None = None,
        sign: bool = True,
        signed_body: bytes | None = None,
        signed_timestamp: int | None = None,
        signature: str | None = None,
    ) -> httpx.Response:
        """Post `event` (or raw `body`) signed with `key`; the `signed_*` arguments sign
        something other than what is sent, `signature` replaces the signature outright."""
        raw = body if body is not None else orjson.dumps(event)
        headers = {"Content-Type": "application/json"}
        if sign:
            ts = int(time.time()) if timestamp is None else timestamp
            signed_ts = ts if signed_timestamp is None else signed_timestamp
            headers[TELNYX_SIGNATURE_HEADER] = (
                signature
                if signature is not None
                else telnyx_sign(key, str(signed_ts), raw if signed_body is None else signed_body)
            )
            headers[TELNYX_TIMESTAMP_HEADER] = str(ts)
        return await self.client.post(TELNYX, content=raw, headers=headers)

    @staticmethod
    def telnyx_event(
        message_id: str, status: str, errors: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return telnyx_event(message_id, status, errors)

    async def telnyx_status(
        self, message_id: str, status: str, errors: list[dict[str, Any]] | None = None
    ) -> httpx.Response:
        return await self.telnyx(telnyx_event(message_id, status, errors))


def telnyx_event(
    message_id: str, status: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A delivery event as Telnyx (and the sandbox) posts it."""
    return {
        "data": {
            "event_type": "message.sent" if status == "sent" else "message.finalized",
            "id": f"evt-{next(_ids)}",
            "occurred_at": "2026-11-25T12:00:00.000+00:00",
            "payload": {
                "record_type": "message",
                "direction": "outbound",
                "id": message_id,
                "type": "SMS",
                "from": {"phone_number": "+15550100000", "carrier": "Sandbox"},
                "to": [{"phone_number": "+15550100001", "status": status, "carrier": "Sandbox"}],
                "text": "Hello",
                "parts": 1,
                "errors": errors or [],
            },
            "record_type": "event",
        },
        "meta": {"attempt": 1, "delivered_to": public_url(TELNYX)},
    }


@pytest.fixture
def webhooks(client: httpx.AsyncClient) -> Webhooks:
    return Webhooks(client)


@dataclass
class WebhookDb:
    """Rows the webhooks act on, read straight through SQL (written by the suite's seeder:
    `seed(tenant).sent_message(...)`, fixtures/factories.py)."""

    session: AsyncSession

    async def record_provider_id(self, message_id: int, member_id: int, provider_id: str) -> None:
        """What the dispatcher's write-back does for one recipient."""
        await self.session.execute(
            text(
                "UPDATE message_recipients SET provider_message_id = :p"
                " WHERE message_id = :m AND member_id = :i"
            ),
            {"p": provider_id, "m": message_id, "i": member_id},
        )
        await self.session.commit()

    async def recipient(self, message_id: int, member_id: int = 1) -> Any:
        return (
            await self.session.execute(
                text(
                    "SELECT status, error_code, error_text, delivered_at, updated_at,"
                    " provider_message_id FROM message_recipients"
                    " WHERE message_id = :m AND member_id = :i"
                ),
                {"m": message_id, "i": member_id},
            )
        ).one()

    async def status_counts(self, message_id: int) -> dict[str, int]:
        """Recipients per status as dashboards read them: shards summed, zeros left out."""
        rows = await self.session.execute(
            text(
                "SELECT status, sum(n)::int FROM message_status_counts WHERE message_id = :m"
                " GROUP BY status HAVING sum(n) <> 0"
            ),
            {"m": message_id},
        )
        return {status: n for status, n in rows}

    async def pending(self, provider_id: str) -> Any:
        return (
            await self.session.execute(
                text(
                    "SELECT status, error_code, error_text, received_at"
                    " FROM pending_status_reports WHERE provider_message_id = :p"
                ),
                {"p": provider_id},
            )
        ).one_or_none()

    async def pending_count(self) -> int:
        return int(
            (
                await self.session.execute(text("SELECT count(*) FROM pending_status_reports"))
            ).scalar_one()
        )


@pytest.fixture
async def db(session: AsyncSession) -> WebhookDb:
    # Tests that commit for real (elsewhere in the suite) may leave pending reports behind; this
    # test's transaction starts from none, and its rollback puts them back.
    await session.execute(text("DELETE FROM pending_status_reports"))
    await session.commit()
    return WebhookDb(session)
