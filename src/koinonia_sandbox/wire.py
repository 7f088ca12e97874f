"""The carriers' wire formats: what a send must hold, and the bodies Twilio and Telnyx answer
with (resources, errors, webhook payloads), as their APIs document them."""

from __future__ import annotations

import email.utils
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson
from aiohttp import web

from koinonia.sms.twilio import API_VERSION

E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
TWILIO_MAX_BODY = 1600
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

Carrier = Literal["twilio", "telnyx"]
Refusal = Literal["rate_limited", "opted_out", "transient", "permanent"]


@dataclass(slots=True)
class SentMessage:
    carrier: Carrier
    id: str
    to: str
    from_: str
    body: str
    status_callback: str | None
    accepted_at: datetime
    status: str = "queued"
    error_code: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.carrier,
            "id": self.id,
            "to": self.to,
            "from": self.from_,
            "body": self.body,
            "status_callback": self.status_callback,
            "accepted_at": self.accepted_at.isoformat(),
            "status": self.status,
            "error_code": self.error_code,
        }


@dataclass(frozen=True, slots=True)
class Submission:
    to: str
    from_: str
    body: str
    callback: str | None


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def twilio_sid() -> str:
    # Ids come from the OS, never from the seeded RNG: a restarted sandbox with the same seed
    # must not hand out ids the app already stored.
    return "SM" + uuid.uuid4().hex


def orjson_response(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """web.json_response, encoded by orjson (the send answers are on the hot path)."""
    return web.Response(
        body=orjson.dumps(data), status=status, headers=headers, content_type="application/json"
    )


def twilio_error(
    code: int, message: str, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return orjson_response(body, status, headers)


def telnyx_error(
    code: str, title: str, detail: str, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {"errors": [{"code": code, "title": title, "detail": detail}]}
    return orjson_response(body, status, headers)


def parse_twilio(form: Mapping[str, str]) -> Submission | tuple[int, str]:
    """The submission, or Twilio's error code and message for what is wrong with it."""
    to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
    if not to:
        return 21604, "A 'To' phone number is required."
    if not from_:
        return 21603, "A 'From' phone number is required."
    if not E164.match(to):
        return 21211, f"The 'To' number {to} is not a valid phone number."
    if not E164.match(from_):
        return 21212, f"The 'From' number {from_} is not a valid phone number."
    if not body:
        return 21602, "Message body is required."
    if len(body) > TWILIO_MAX_BODY:
        return 21617, "The concatenated message body exceeds the 1600 character limit."
    return Submission(to, from_, body, form.get("StatusCallback") or None)


def parse_telnyx(payload: Mapping[str, Any]) -> Submission | tuple[str, str, str]:
    """The submission, or Telnyx's error code, title and detail for what is wrong with it."""
    values: dict[str, str] = {}
    for name in ("to", "from", "text"):
        value = payload.get(name)
        if not isinstance(value, str) or not value:
            return "10004", "Missing required parameter", f"The '{name}' parameter is required."
        values[name] = value
    for name in ("to", "from"):
        if not E164.match(values[name]):
            return (
                "10016",
                "Phone number must be in +E.164 format",
                f"The '{name}' parameter must be in +E.164 format.",
            )
    callback = payload.get("webhook_url")
    if callback is not None and not isinstance(callback, str):
        return "10015", "Bad Request", "The 'webhook_url' parameter must be a string."
    return Submission(values["to"], values["from"], values["text"], callback or None)


def twilio_resource(message: SentMessage, account_sid: str) -> dict[str, Any]:
    created = email.utils.format_datetime(message.accepted_at, usegmt=True)
    return {
        "account_sid": account_sid,
        "api_version": API_VERSION,
        "body": message.body,
        "date_created": created,
        "date_sent": None,
        "date_updated": created,
        "direction": "outbound-api",
        "error_code": None,
        "error_message": None,
        "from": message.from_,
        "messaging_service_sid": None,
        "num_media": "0",
        "num_segments": "1",
        "price": None,
        "price_unit": "USD",
        "sid": message.id,
        "status": "queued",
        "to": message.to,
        "uri": f"/{API_VERSION}/Accounts/{account_sid}/Messages/{message.id}.json",
    }


def telnyx_message(message: SentMessage) -> dict[str, Any]:
    errors = (
        [{"code": message.error_code, "title": "Undeliverable", "detail": "Carrier rejected."}]
        if message.error_code
        else []
    )
    return {
        "record_type": "message",
        "direction": "outbound",
        "id": message.id,
        "type": "SMS",
        "from": {"phone_number": message.from_, "carrier": "Sandbox", "line_type": "Wireless"},
        "to": [
            {
                "phone_number": message.to,
                "status": message.status,
                "carrier": "Sandbox",
                "line_type": "Wireless",
            }
        ],
        "text": message.body,
        "webhook_url": message.status_callback,
        "parts": 1,
        "received_at": iso(message.accepted_at),
        "errors": errors,
    }
