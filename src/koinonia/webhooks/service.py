"""Provider webhooks: verify, parse, map statuses, store delivery reports, hand inbound texts on.

Order of checks for every webhook: signature first (403 and nothing read further when it fails),
then the body's shape (400), then storage. Nothing here raises anything but `Forbidden` or
`BadRequest` for bad input, so a forged or garbled request never becomes a 500.

Inbound texts (Twilio's inbound URL, Telnyx `message.received`) are verified and parsed here and
then handed to `handle_inbound`, the one plug-in point for conversations (SPEC §4.3–4.4).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.config import Settings
from koinonia.conversations.inbound import handle_inbound_text
from koinonia.kit.errors import BadRequest, Forbidden
from koinonia.kit.logging import log
from koinonia.kit.metrics import WEBHOOKS
from koinonia.sms import telnyx as telnyx_adapter
from koinonia.sms import twilio as twilio_adapter
from koinonia.sms.signatures import verify_telnyx, verify_twilio
from koinonia.webhooks.batching import ReportWriter
from koinonia.webhooks.schemas import (
    ERROR_CODE_MAX,
    ERROR_TEXT_MAX,
    PROVIDER_ID_MAX,
    DeliveryReport,
    InboundText,
    Provider,
    ReportedStatus,
    ReportOutcome,
)

# Provider status -> ours. Anything else (Twilio queued/accepted/scheduled/sending/read...,
# Telnyx queued/sending/delivery_unconfirmed...) is acknowledged and ignored: the recipient is
# already at `sending` or beyond once the provider has its id, so those carry nothing new.
TWILIO_STATUSES: Mapping[str, ReportedStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
}
TELNYX_STATUSES: Mapping[str, ReportedStatus] = {
    "sent": "sent",
    "delivered": "delivered",
    "delivery_failed": "undelivered",  # the carrier took it, the handset never got it
    "sending_failed": "failed",  # Telnyx could not hand it to a carrier
    "expired": "failed",  # never sent within its validity period: final, like sending_failed
}
TELNYX_DELIVERY_EVENTS = frozenset({"message.sent", "message.finalized"})
TELNYX_INBOUND_EVENT = "message.received"
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_FORM_FIELDS = 1000  # an inbound MMS carries ~50; far more is not Twilio


# --- the inbound plug-in point ----------------------------------------------------------------


async def handle_inbound(session: AsyncSession, text: InboundText) -> None:
    """Receive one verified inbound text (either provider) inside the request's transaction.

    The request session commits after this returns and only then is the provider answered 200,
    so whatever this stores is durable before the text is acknowledged (SPEC §6). Raise a
    `KoinoniaError` to refuse it; anything else is a 500 and the provider retries.

    What happens to it (opt-out keywords, conversations, relays: SPEC §4.3–4.4) is decided by
    `conversations.inbound`.
    """
    result = await handle_inbound_text(
        session,
        provider=text.provider,
        provider_message_id=text.provider_message_id,
        from_number=text.from_,
        to_number=text.to,
        body=text.body,
    )
    log.info(
        "inbound_text",
        provider=text.provider,
        provider_message_id=text.provider_message_id,
        outcome=str(result.outcome),
        church_id=result.church_id,
    )
    WEBHOOKS.labels(text.provider, "inbound", str(result.outcome)).inc()


# --- delivery reports -------------------------------------------------------------------------


async def record_delivery_report(reports: ReportWriter, report: DeliveryReport) -> ReportOutcome:
    """Store one report through the app's writer, committed when this returns (batched with the
    reports of concurrent requests: webhooks.batching); counts and logs what it did."""
    outcome = await reports.record(report)
    WEBHOOKS.labels(report.provider, "status", outcome.value).inc()
    if outcome is ReportOutcome.PENDING:
        # Normal when the report beats the dispatcher's write-back; an id that stays pending was
        # never ours and expires (purge_stale_pending_reports).
        log.info(
            "status_report_pending",
            provider=report.provider,
            provider_message_id=report.provider_message_id,
            status=report.status,
        )
    return outcome


# --- Twilio -----------------------------------------------------------------------------------


async def receive_twilio_status(
    settings: Settings,
    reports: ReportWriter,
    *,
    url: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
) -> ReportOutcome | None:
    """A Twilio status callback: verified, mapped, stored (committed when this returns). None
    when the status is ignored."""
    params = _verified_twilio_params(settings, url, body, content_type, signature, kind="status")
    report = twilio_delivery_report(params)
    if report is None:
        WEBHOOKS.labels("twilio", "status", "ignored").inc()
        return None
    return await record_delivery_report(reports, report)


async def receive_twilio_inbound(
    session: AsyncSession,
    settings: Settings,
    *,
    url: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
) -> None:
    """A text a member sent to a church's Twilio number: verified, parsed, handed on."""
    params = _verified_twilio_params(settings, url, body, content_type, signature, kind="inbound")
    await handle_inbound(session, twilio_inbound_text(params))


def _verified_twilio_params(
    settings: Settings,
    url: str,
    body: bytes,
    content_type: str | None,
    signature: str | None,
    *,
    kind: str,
) -> dict[str, str]:
    if not signature:
        raise _forbidden("twilio", kind, "missing X-Twilio-Signature")
    token = settings.twilio_token
    if token is None:
        # Fail closed: without a real token nothing Twilio sends can be told from a forgery.
        log.error("twilio_auth_token_missing", hint="set KOINONIA_TWILIO_AUTH_TOKEN")
        raise _forbidden("twilio", kind, "no Twilio auth token is configured")
    pairs = parse_twilio_form(body, content_type, kind=kind)
    if not verify_twilio(url, pairs, signature, token):
        raise _forbidden("twilio", kind, "X-Twilio-Signature does not match")
    params: dict[str, str] = {}
    for name, value in pairs:
        params.setdefault(name, value)  # a repeated name: the first one counts
    return params


def parse_twilio_form(
    body: bytes, content_type: str | None, *, kind: str = "status"
) -> list[tuple[str, str]]:
    """The form's name/value pairs, in order; BadRequest unless a UTF-8 urlencoded form."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type != FORM_CONTENT_TYPE:
        raise _malformed("twilio", kind, f"expected {FORM_CONTENT_TYPE}")
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            strict_parsing=True,
            errors="strict",
            max_num_fields=MAX_FORM_FIELDS,
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise _malformed("twilio", kind, "the form is not valid UTF-8 urlencoding") from exc


def twilio_delivery_report(params: Mapping[str, str]) -> DeliveryReport | None:
    """The report a status callback carries; None for statuses we do not record."""
    sid = _provider_id("twilio", "status", params.get("MessageSid") or params.get("SmsSid"))
    raw_status = params.get("MessageStatus") or params.get("SmsStatus")
    if not raw_status:
        raise _malformed("twilio", "status", "MessageStatus is required")
    status = TWILIO_STATUSES.get(raw_status.strip().lower())
    if status is None:
        return None
    if status in ("undelivered", "failed"):
        code = _clip(params.get("ErrorCode"), ERROR_CODE_MAX)
        return DeliveryReport(
            "twilio",
            sid,
            status,
            code,
            _clip(params.get("ErrorMessage"), ERROR_TEXT_MAX),
            retry=code is not None and code in twilio_adapter.TRANSIENT_CODES,
            opt_out=code == twilio_adapter.OPTED_OUT_CODE,
        )
    return DeliveryReport("twilio", sid, status)


def twilio_inbound_text(params: Mapping[str, str]) -> InboundText:
    sid = _provider_id("twilio", "inbound", params.get("MessageSid") or params.get("SmsSid"))
    from_, to = params.get("From"), params.get("To")
    if not from_ or not to:
        raise _malformed("twilio", "inbound", "From and To are required")
    return InboundText(
        "twilio", sid, _no_nul(from_), _no_nul(to), _no_nul(params.get("Body", "")), params
    )


# --- Telnyx -----------------------------------------------------------------------------------


async def receive_telnyx_event(
    session: AsyncSession,
    settings: Settings,
    reports: ReportWriter,
    *,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
) -> ReportOutcome | None:
    """A Telnyx messaging event: delivery reports are stored, inbound texts handed on, anything
    else acknowledged. Returns what storing a report did, None otherwise."""
    key = settings.telnyx_verify_key
    if key is None:
        log.error("telnyx_verify_key_missing", hint="set KOINONIA_TELNYX_PUBLIC_KEY")
        raise _forbidden("telnyx", "event", "no Telnyx public key is configured")
    if not verify_telnyx(key, signature, timestamp, body):
        raise _forbidden("telnyx", "event", "signature or timestamp does not verify")
    event = parse_telnyx_event(body)
    event_type = event["event_type"]
    if event_type in TELNYX_DELIVERY_EVENTS:
        report = telnyx_delivery_report(event["payload"])
        if report is None:
            WEBHOOKS.labels("telnyx", "status", "ignored").inc()
            return None
        return await record_delivery_report(reports, report)
    if event_type == TELNYX_INBOUND_EVENT:
        await handle_inbound(session, telnyx_inbound_text(event["payload"]))
        return None
    WEBHOOKS.labels("telnyx", "event", "ignored").inc()
    return None


def parse_telnyx_event(body: bytes) -> dict[str, Any]:
    """`data` of a Telnyx webhook (with a string `event_type` and an object `payload`)."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise _malformed("telnyx", "event", "the body is not valid JSON") from exc
    data = document.get("data") if isinstance(document, dict) else None
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("event_type"), str)
        or not isinstance(data.get("payload"), dict)
    ):
        raise _malformed("telnyx", "event", "expected {data: {event_type, payload: {...}}}")
    return data


def telnyx_delivery_report(payload: Mapping[str, Any]) -> DeliveryReport | None:
    """The report a message.sent / message.finalized event carries; None when not recorded.

    A message to one number has one `to` entry; its status is the message's status.
    """
    message_id = _provider_id("telnyx", "status", payload.get("id"))
    to = payload.get("to")
    first = to[0] if isinstance(to, list) and to else None
    raw_status = first.get("status") if isinstance(first, dict) else None
    if not isinstance(raw_status, str):
        raise _malformed("telnyx", "status", "payload.to[0].status is required")
    status = TELNYX_STATUSES.get(raw_status.strip().lower())
    if status is None:
        return None
    if status in ("undelivered", "failed"):
        code, text = _telnyx_error(payload.get("errors"))
        return DeliveryReport(
            "telnyx",
            message_id,
            status,
            code,
            text,
            retry=code is not None and code in telnyx_adapter.TRANSIENT_CODES,
            opt_out=code == telnyx_adapter.OPTED_OUT_CODE,
        )
    return DeliveryReport("telnyx", message_id, status)


def telnyx_inbound_text(payload: Mapping[str, Any]) -> InboundText:
    message_id = _provider_id("telnyx", "inbound", payload.get("id"))
    sender = payload.get("from")
    to = payload.get("to")
    from_ = sender.get("phone_number") if isinstance(sender, dict) else None
    first = to[0] if isinstance(to, list) and to else None
    to_number = first.get("phone_number") if isinstance(first, dict) else None
    text = payload.get("text")
    if not isinstance(from_, str) or not from_ or not isinstance(to_number, str) or not to_number:
        raise _malformed("telnyx", "inbound", "payload.from and payload.to phone numbers required")
    if text is not None and not isinstance(text, str):
        raise _malformed("telnyx", "inbound", "payload.text must be a string")
    return InboundText(
        "telnyx", message_id, _no_nul(from_), _no_nul(to_number), _no_nul(text or ""), payload
    )


def _telnyx_error(errors: object) -> tuple[str | None, str | None]:
    first = errors[0] if isinstance(errors, Sequence) and errors else None
    if not isinstance(first, dict):
        return None, None
    code = first.get("code")
    parts = [p for p in (first.get("title"), first.get("detail")) if isinstance(p, str) and p]
    return (
        _clip(str(code) if isinstance(code, int | str) else None, ERROR_CODE_MAX),
        _clip(": ".join(parts), ERROR_TEXT_MAX),
    )


# --- helpers ----------------------------------------------------------------------------------


def _provider_id(provider: Provider, kind: str, value: object) -> str:
    # Ids are short ASCII tokens (Twilio SM..., Telnyx UUIDs); anything else would fail the
    # column (length, NUL) and is not a real report.
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= PROVIDER_ID_MAX
        or not (value.isascii() and value.isprintable())
    ):
        raise _malformed(provider, kind, f"a message id of 1–{PROVIDER_ID_MAX} ASCII characters")
    return value


def _no_nul(value: str) -> str:
    return value.replace("\x00", "")  # PostgreSQL text cannot hold NUL


def _clip(value: str | None, limit: int) -> str | None:
    if not value:
        return None
    return _no_nul(value)[:limit] or None


def _forbidden(provider: Provider, kind: str, reason: str) -> Forbidden:
    WEBHOOKS.labels(provider, kind, "forbidden").inc()
    log.warning("webhook_forbidden", provider=provider, kind=kind, reason=reason)
    return Forbidden(f"webhook rejected: {reason}", code="invalid_signature")


def _malformed(provider: Provider, kind: str, reason: str) -> BadRequest:
    WEBHOOKS.labels(provider, kind, "malformed").inc()
    log.warning("webhook_malformed", provider=provider, kind=kind, reason=reason)
    return BadRequest(f"malformed webhook: {reason}", code="malformed_webhook")
