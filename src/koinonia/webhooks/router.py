"""Provider webhooks (no auth: every request is signature-checked instead).

The bodies are read raw: signatures cover the exact bytes (Telnyx) or the exact form (Twilio),
so no Pydantic body model parses them first. A provider is answered 200 only once what it sent
is stored: delivery reports are committed with those of concurrent requests (webhooks.batching)
before the endpoint returns; inbound texts go through the request session (`DbSession`, function
scope), which commits before the response is sent.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from koinonia.auth.deps import DbSession, SettingsDep
from koinonia.config import Settings
from koinonia.kit.openapi import errors
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
)
from koinonia.webhooks import service
from koinonia.webhooks.batching import ReportWriter

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

_REFUSALS = errors(
    {
        400: "Malformed body (`malformed_webhook`); nothing stored",
        403: "Missing or invalid signature, or stale timestamp (`invalid_signature`); "
        "nothing stored",
    }
)
_TWIML_OK: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Stored (or deliberately ignored); empty TwiML",
        "content": {"text/xml": {"example": EMPTY_TWIML}},
    }
}


def _twilio_form(fields: dict[str, str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {name: {"type": "string"} for name in fields},
                        "required": [name for name, need in fields.items() if need == "required"],
                    }
                }
            },
        }
    }


def _reports(request: Request) -> ReportWriter:
    """The app's delivery-report writer (`create_app` makes it with the app's database)."""
    reports: ReportWriter = request.app.state.report_writer
    return reports


def _signed_url(settings: Settings, request: Request) -> str:
    """The URL Twilio signed: how it reaches us (public_url), this path, the query as sent."""
    query = request.scope.get("query_string", b"").decode("latin-1")
    url = settings.public_url + request.url.path
    return f"{url}?{query}" if query else url


@router.post(
    "/twilio/status",
    response_class=Response,
    responses={**_TWIML_OK, **_REFUSALS},
    openapi_extra=_twilio_form(
        {
            "MessageSid": "required",
            "MessageStatus": "required",
            "ErrorCode": "optional",
            "ErrorMessage": "optional",
            "AccountSid": "optional",
            "From": "optional",
            "To": "optional",
        }
    ),
)
async def twilio_status(request: Request, settings: SettingsDep) -> Response:
    """Twilio status callback (the `StatusCallback` of every text we send).

    **Signature**: `X-Twilio-Signature` must be the base64 HMAC-SHA1, keyed with the Twilio auth
    token, of the full public URL (`KOINONIA_PUBLIC_URL` + this path + the query string, if any)
    followed by every form parameter's name and value sorted by name. Missing or wrong → 403.

    **Statuses**: `sent` → sent, `delivered` → delivered, `undelivered` → undelivered, `failed` →
    failed (`ErrorCode` / `ErrorMessage` are kept on the recipient); `queued`, `accepted`,
    `sending` and anything else are acknowledged and ignored. A recipient only moves forward
    (queued → sending → sent → delivered / undelivered / failed): a late or repeated report
    changes nothing. A report for an id no recipient carries yet is kept as pending and applied
    when the send is recorded (ids never recorded expire after a day).

    Answers 200 with empty TwiML only after the report is stored; a malformed form is a 400.
    """
    await service.receive_twilio_status(
        settings,
        _reports(request),
        url=_signed_url(settings, request),
        body=await request.body(),
        content_type=request.headers.get("content-type"),
        signature=request.headers.get(TWILIO_SIGNATURE_HEADER),
    )
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/twilio/inbound",
    response_class=Response,
    responses={**_TWIML_OK, **_REFUSALS},
    openapi_extra=_twilio_form(
        {"MessageSid": "required", "From": "required", "To": "required", "Body": "optional"}
    ),
)
async def twilio_inbound(request: Request, session: DbSession, settings: SettingsDep) -> Response:
    """Twilio incoming-message webhook (the church number's "A message comes in" URL).

    **Signature**: as for the status callback: `X-Twilio-Signature`, HMAC-SHA1 with the auth
    token over the public URL of this path (+ query) and the sorted form parameters; else 403.

    The text (`MessageSid`, `From`, `To`, `Body`) is handed to inbound handling inside this
    request's transaction and acknowledged with empty TwiML once stored: replies are sent as
    tracked messages, never as TwiML. Missing `MessageSid`, `From` or `To` → 400.
    """
    await service.receive_twilio_inbound(
        session,
        settings,
        url=_signed_url(settings, request),
        body=await request.body(),
        content_type=request.headers.get("content-type"),
        signature=request.headers.get(TWILIO_SIGNATURE_HEADER),
    )
    return Response(EMPTY_TWIML, media_type="text/xml")


@router.post(
    "/telnyx",
    response_class=Response,
    responses={
        200: {"description": "Stored, handed on, or deliberately ignored; empty body"},
        **_REFUSALS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {
                            "data": {
                                "type": "object",
                                "required": ["event_type", "payload"],
                                "properties": {
                                    "event_type": {"type": "string"},
                                    "payload": {"type": "object"},
                                },
                            }
                        },
                    }
                }
            },
        }
    },
)
async def telnyx_events(request: Request, session: DbSession, settings: SettingsDep) -> Response:
    """Telnyx messaging webhook: delivery events and inbound texts share this one URL.

    **Signature**: `telnyx-signature-ed25519` must be the base64 Ed25519 signature of
    `{telnyx-timestamp}|{raw body}` under the messaging profile's public key
    (`KOINONIA_TELNYX_PUBLIC_KEY`), and `telnyx-timestamp` (Unix seconds) within 300 s of now,
    so a captured request cannot be replayed later. Missing, wrong or stale → 403.

    **Events**: `message.sent` / `message.finalized` are delivery reports, mapped by
    `payload.to[0].status`: `sent` → sent, `delivered` → delivered, `delivery_failed` →
    undelivered, `sending_failed` and `expired` → failed (the first of `payload.errors` is kept);
    `queued`, `sending`, `delivery_unconfirmed` are ignored. Recipients only move forward;
    reports for ids not recorded yet are kept as pending, as for Twilio. `message.received` is an
    inbound text, handed to inbound handling. Other event types are acknowledged and ignored.

    Answers 200 with an empty body only after the event is stored; malformed JSON → 400.
    """
    await service.receive_telnyx_event(
        session,
        settings,
        _reports(request),
        body=await request.body(),
        signature=request.headers.get(TELNYX_SIGNATURE_HEADER),
        timestamp=request.headers.get(TELNYX_TIMESTAMP_HEADER),
    )
    return Response(status_code=200)
