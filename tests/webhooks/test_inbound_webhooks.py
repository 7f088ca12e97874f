"""Inbound texts: verified like delivery reports, then handed to the pluggable `handle_inbound`."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.config import get_settings
from koinonia.kit.errors import Conflict
from koinonia.webhooks import service
from koinonia.webhooks.schemas import InboundText

Webhooks = Any  # conftest: posts signed provider webhooks
WebhookDb = Any  # conftest: rows through SQL

TWILIO_INBOUND = "/api/v1/webhooks/twilio/inbound"
TWILIO_STATUS = "/api/v1/webhooks/twilio/status"


def twilio_inbound_form(**changes: str) -> dict[str, str]:
    form = {
        "AccountSid": get_settings().twilio_account_sid,
        "ApiVersion": "2010-04-01",
        "Body": "Praying for you all",
        "From": "+15550100001",
        "MessageSid": "SMinbound0001",
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsMessageSid": "SMinbound0001",
        "SmsSid": "SMinbound0001",
        "SmsStatus": "received",
        "To": "+13035550000",
    }
    return form | changes


def telnyx_received(**payload_changes: Any) -> dict[str, Any]:
    payload = {
        "id": "b0e1c7f4-5a43-4a57-9d5b-0f5c0e0f1a11",
        "record_type": "message",
        "direction": "inbound",
        "type": "SMS",
        "from": {"phone_number": "+15550100001", "carrier": "Sandbox"},
        "to": [{"phone_number": "+13035550000", "status": "webhook_delivered"}],
        "text": "STOP",
        "received_at": "2026-11-25T12:00:00.000+00:00",
        "parts": 1,
        "errors": [],
    }
    return {
        "data": {
            "event_type": "message.received",
            "id": "evt-inbound-1",
            "occurred_at": "2026-11-25T12:00:00.000+00:00",
            "payload": payload | payload_changes,
            "record_type": "event",
        },
        "meta": {"attempt": 1},
    }


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[InboundText]:
    """Replaces the inbound hook, as the conversations module will, recording what it gets."""
    texts: list[InboundText] = []

    async def handle_inbound(session: AsyncSession, inbound: InboundText) -> None:
        texts.append(inbound)

    monkeypatch.setattr(service, "handle_inbound", handle_inbound)
    return texts


def inbound_outcome(provider: str, outcome: str) -> float:
    labels = {"provider": provider, "kind": "inbound", "outcome": outcome}
    return REGISTRY.get_sample_value("koinonia_webhooks_total", labels) or 0.0


async def test_a_text_to_no_church_is_acknowledged_and_counted(
    webhooks: Webhooks, db: WebhookDb, count_statements: Any
) -> None:
    before = (
        inbound_outcome("twilio", "unknown_number"),
        inbound_outcome("telnyx", "unknown_number"),
    )
    with count_statements() as log:
        twilio = await webhooks.twilio(twilio_inbound_form(To="+13039999999"), path=TWILIO_INBOUND)
        telnyx = await webhooks.telnyx(
            telnyx_received(to=[{"phone_number": "+13039999999", "status": "webhook_delivered"}])
        )
    assert twilio.status_code == 200 and "<Response/>" in twilio.text
    assert twilio.headers["content-type"].startswith("text/xml")
    assert (telnyx.status_code, telnyx.content) == (200, b"")
    assert log.count == 2  # one lookup of the destination number each
    assert await db.pending_count() == 0
    after = (
        inbound_outcome("twilio", "unknown_number"),
        inbound_outcome("telnyx", "unknown_number"),
    )
    assert after == (before[0] + 1, before[1] + 1)


async def test_a_member_text_through_the_webhook_lands_in_a_conversation(
    webhooks: Webhooks, session: AsyncSession, tenant: Any
) -> None:
    from fixtures.factories import make_members

    church = await session.execute(
        text("SELECT sms_number FROM churches WHERE id = :c"), {"c": tenant.church_id}
    )
    number = church.scalar_one()
    sender, *_ = await make_members(session, tenant.church_id, 3)
    phone = (
        await session.execute(text("SELECT phone FROM members WHERE id = :m"), {"m": sender})
    ).scalar_one()
    r = await webhooks.twilio(
        twilio_inbound_form(From=phone, To=number, Body="Thank you all!"), path=TWILIO_INBOUND
    )
    assert r.status_code == 200
    thread = await session.execute(
        text(
            "SELECT c.unread_count, cm.body FROM conversations c JOIN conversation_messages cm"
            " ON cm.conversation_id = c.id WHERE c.church_id = :c AND c.member_id = :m"
        ),
        {"c": tenant.church_id, "m": sender},
    )
    assert thread.one() == (1, "Thank you all!")
    relay = await session.execute(
        text("SELECT recipient_count FROM messages WHERE church_id = :c AND kind = 'relay'"),
        {"c": tenant.church_id},
    )
    assert relay.scalar_one() == 2  # everyone but the sender


@pytest.mark.parametrize("sender", ["GRACE", "12345", "+15550100001"])
async def test_a_sender_that_is_no_valid_number_is_acknowledged_without_a_reply(
    webhooks: Webhooks, session: AsyncSession, tenant: Any, sender: str
) -> None:
    # A reply to it would be refused by the carrier (Twilio 21211) and counted as usage.
    number = (
        await session.execute(
            text("SELECT sms_number FROM churches WHERE id = :c"), {"c": tenant.church_id}
        )
    ).scalar_one()
    before = inbound_outcome("twilio", "unknown_sender")
    r = await webhooks.twilio(
        twilio_inbound_form(From=sender, To=number, Body="hello"), path=TWILIO_INBOUND
    )
    assert r.status_code == 200 and "<Response/>" in r.text
    assert inbound_outcome("twilio", "unknown_sender") == before + 1
    replies = await session.scalar(
        text("SELECT count(*) FROM messages WHERE church_id = :c"), {"c": tenant.church_id}
    )
    assert replies == 0


async def test_a_twilio_inbound_text_reaches_the_hook(
    webhooks: Webhooks, received: list[InboundText]
) -> None:
    r = await webhooks.twilio(
        twilio_inbound_form(Body="Amen 🙏", MediaUrl0="https://x"), path=TWILIO_INBOUND
    )
    assert r.status_code == 200
    [inbound] = received
    assert (inbound.provider, inbound.provider_message_id) == ("twilio", "SMinbound0001")
    assert (inbound.from_, inbound.to, inbound.body) == ("+15550100001", "+13035550000", "Amen 🙏")
    assert inbound.raw["MediaUrl0"] == "https://x"


async def test_a_telnyx_message_received_event_reaches_the_hook(
    webhooks: Webhooks, received: list[InboundText]
) -> None:
    r = await webhooks.telnyx(telnyx_received())
    assert r.status_code == 200
    [inbound] = received
    assert inbound.provider == "telnyx"
    assert inbound.provider_message_id == "b0e1c7f4-5a43-4a57-9d5b-0f5c0e0f1a11"
    assert (inbound.from_, inbound.to, inbound.body) == ("+15550100001", "+13035550000", "STOP")
    assert inbound.raw["direction"] == "inbound"

    # An MMS without text still reaches it, with an empty body.
    await webhooks.telnyx(telnyx_received(text=None, id="mms-1"))
    assert received[1].body == ""


async def test_unsigned_or_misdirected_inbound_texts_are_refused(
    webhooks: Webhooks, received: list[InboundText]
) -> None:
    form = twilio_inbound_form()
    base = get_settings().public_url
    responses = [
        await webhooks.twilio(form, path=TWILIO_INBOUND, sign=False),
        await webhooks.twilio(form, path=TWILIO_INBOUND, token="wrong"),
        # Signed for the status URL, replayed at the inbound one.
        await webhooks.twilio(form, path=TWILIO_INBOUND, signed_url=base + TWILIO_STATUS),
        await webhooks.telnyx(telnyx_received(), sign=False),
        await webhooks.telnyx(telnyx_received(), timestamp=1),
    ]
    assert [r.status_code for r in responses] == [403] * 5
    assert received == []


async def test_malformed_inbound_texts_are_a_400(
    webhooks: Webhooks, received: list[InboundText]
) -> None:
    form = twilio_inbound_form()
    no_from = {k: v for k, v in form.items() if k != "From"}
    no_sid = {k: v for k, v in form.items() if "Sid" not in k or k == "AccountSid"}
    responses = [
        await webhooks.twilio(no_from, path=TWILIO_INBOUND),
        await webhooks.twilio(no_sid, path=TWILIO_INBOUND),
        await webhooks.twilio(form | {"To": ""}, path=TWILIO_INBOUND),
        await webhooks.telnyx(telnyx_received(**{"from": None})),
        await webhooks.telnyx(telnyx_received(to=[])),
        await webhooks.telnyx(telnyx_received(text=7)),
        await webhooks.telnyx(telnyx_received(id="")),
    ]
    assert [r.status_code for r in responses] == [400] * len(responses)
    assert received == []


async def test_the_hook_runs_in_the_request_transaction(
    webhooks: Webhooks, db: WebhookDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the hook writes is committed before the 200; a refusal rolls all of it back."""

    async def storing_hook(session: AsyncSession, inbound: InboundText) -> None:
        # Stand-in for the conversations module's insert.
        await session.execute(
            text(
                "INSERT INTO pending_status_reports (provider_message_id, status)"
                " VALUES (:p, 'queued')"
            ),
            {"p": inbound.provider_message_id},
        )
        if inbound.body == "refuse":
            raise Conflict("refused by the hook")

    monkeypatch.setattr(service, "handle_inbound", storing_hook)
    ok = await webhooks.twilio(twilio_inbound_form(MessageSid="SMkept"), path=TWILIO_INBOUND)
    refused = await webhooks.twilio(
        twilio_inbound_form(MessageSid="SMrefused", Body="refuse"), path=TWILIO_INBOUND
    )
    assert (ok.status_code, refused.status_code) == (200, 409)
    assert await db.pending("SMkept") is not None
    assert await db.pending("SMrefused") is None


async def test_nul_characters_in_an_inbound_text_are_dropped_not_a_500(
    webhooks: Webhooks, session: AsyncSession, tenant: Any
) -> None:
    # PostgreSQL text cannot hold U+0000: a text carrying one must still be stored, else the
    # webhook fails and the provider retries it forever.
    from fixtures.factories import make_members

    number = (
        await session.execute(
            text("SELECT sms_number FROM churches WHERE id = :c"), {"c": tenant.church_id}
        )
    ).scalar_one()
    sender, *_ = await make_members(session, tenant.church_id, 2)
    phone = (
        await session.execute(text("SELECT phone FROM members WHERE id = :m"), {"m": sender})
    ).scalar_one()
    twilio = await webhooks.twilio(
        twilio_inbound_form(From=phone, To=number, Body="Amen\x00!"), path=TWILIO_INBOUND
    )
    telnyx = await webhooks.telnyx(
        telnyx_received(
            id="nul-1",
            text="Hi\x00",
            **{"from": {"phone_number": "+1555\x000100002"}},
        )
    )
    assert (twilio.status_code, telnyx.status_code) == (200, 200)
    body = await session.execute(
        text(
            "SELECT cm.body FROM conversations c JOIN conversation_messages cm"
            " ON cm.conversation_id = c.id WHERE c.church_id = :c AND c.member_id = :m"
        ),
        {"c": tenant.church_id, "m": sender},
    )
    assert body.scalar_one() == "Amen!"
