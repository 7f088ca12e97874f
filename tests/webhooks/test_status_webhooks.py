"""Delivery reports from Twilio and Telnyx: verified, mapped, stored forward-only, one statement."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr

from fixtures.factories import SeedFor, Tenant
from koinonia.auth.deps import settings as settings_dependency
from koinonia.config import get_settings
from koinonia.sms.signatures import generate_ed25519_keypair, twilio_signature

Webhooks = Any  # conftest: posts signed provider webhooks
WebhookDb = Any  # conftest: rows through SQL

TWILIO_STATUS = "/api/v1/webhooks/twilio/status"
TELNYX = "/api/v1/webhooks/telnyx"


def webhooks_total(provider: str, kind: str, outcome: str) -> float:
    labels = {"provider": provider, "kind": kind, "outcome": outcome}
    return REGISTRY.get_sample_value("koinonia_webhooks_total", labels) or 0.0


# --- moving forward ---------------------------------------------------------------------------


async def test_twilio_reports_move_a_recipient_forward_to_delivered(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(status="queued")
    sid = sent.provider_ids[0]

    for provider_status, ours in [
        ("queued", "queued"),  # ignored: not a step forward we record
        ("accepted", "queued"),
        ("sending", "queued"),
        ("sent", "sent"),
        ("delivered", "delivered"),
    ]:
        r = await webhooks.twilio_status(sid, provider_status)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/xml")
        assert "<Response/>" in r.text
        assert (await db.recipient(sent.message_id)).status == ours

    row = await db.recipient(sent.message_id)
    assert row.delivered_at is not None and row.error_code is None
    assert await db.status_counts(sent.message_id) == {"delivered": 1}
    assert await db.pending_count() == 0


async def test_telnyx_reports_move_a_recipient_forward_to_delivered(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    message_id = sent.provider_ids[0]

    for provider_status, ours in [
        ("queued", "sending"),
        ("sending", "sending"),
        ("sent", "sent"),
        ("delivery_unconfirmed", "sent"),  # ignored
        ("delivered", "delivered"),
    ]:
        r = await webhooks.telnyx_status(message_id, provider_status)
        assert r.status_code == 200, r.text
        assert r.content == b""
        assert (await db.recipient(sent.message_id)).status == ours

    assert (await db.recipient(sent.message_id)).delivered_at is not None
    assert await db.status_counts(sent.message_id) == {"delivered": 1}


async def test_failures_keep_the_providers_error(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(4)
    a, b, c, d = sent.provider_ids

    await webhooks.twilio_status(a, "failed", ErrorCode="30008", ErrorMessage="Unknown error")
    await webhooks.twilio_status(b, "undelivered", ErrorCode="30003")
    await webhooks.telnyx_status(
        c, "delivery_failed", [{"code": "40008", "title": "Undeliverable", "detail": "Rejected."}]
    )
    await webhooks.telnyx_status(d, "sending_failed", [{"code": 40002, "title": "Blocked"}])

    rows = [await db.recipient(sent.message_id, i) for i in (1, 2, 3, 4)]
    assert [(r.status, r.error_code, r.error_text) for r in rows] == [
        ("failed", "30008", "Unknown error"),
        ("undelivered", "30003", None),
        ("undelivered", "40008", "Undeliverable: Rejected."),
        ("failed", "40002", "Blocked"),
    ]
    assert all(r.delivered_at is None for r in rows)
    assert await db.status_counts(sent.message_id) == {"failed": 2, "undelivered": 2}


async def test_a_late_report_never_moves_a_recipient_back(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(2)
    twilio_id, telnyx_id = sent.provider_ids

    assert (await webhooks.twilio_status(twilio_id, "delivered")).status_code == 200
    before = await db.recipient(sent.message_id, 1)
    assert (await webhooks.twilio_status(twilio_id, "sent")).status_code == 200
    assert (await webhooks.twilio_status(twilio_id, "failed", ErrorCode="1")).status_code == 200

    await webhooks.telnyx_status(telnyx_id, "delivered")
    await webhooks.telnyx_status(telnyx_id, "sent")

    after = await db.recipient(sent.message_id, 1)
    assert after == before  # status, delivered_at, error and updated_at untouched
    assert (await db.recipient(sent.message_id, 2)).status == "delivered"
    assert await db.status_counts(sent.message_id) == {"delivered": 2}


async def test_duplicate_reports_are_idempotent(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(3)
    stale_before = webhooks_total("twilio", "status", "stale")

    for _ in range(3):
        for sid in sent.provider_ids:
            assert (await webhooks.twilio_status(sid, "sent")).status_code == 200
            assert (await webhooks.twilio_status(sid, "delivered")).status_code == 200
        first_delivered = [(await db.recipient(sent.message_id, i)).delivered_at for i in (1, 2, 3)]
        assert await db.status_counts(sent.message_id) == {"delivered": 3}

    assert [(await db.recipient(sent.message_id, i)).delivered_at for i in (1, 2, 3)] == (
        first_delivered
    )
    assert webhooks_total("twilio", "status", "stale") - stale_before == 12


async def test_counts_follow_every_report(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(6)
    ids = sent.provider_ids
    assert await db.status_counts(sent.message_id) == {"sending": 6}

    for sid in ids[:5]:
        await webhooks.twilio_status(sid, "sent")
    assert await db.status_counts(sent.message_id) == {"sending": 1, "sent": 5}

    for sid in ids[:3]:
        await webhooks.twilio_status(sid, "delivered")
    await webhooks.twilio_status(ids[3], "undelivered", ErrorCode="30003")
    await webhooks.telnyx_status(ids[5], "sending_failed")
    assert await db.status_counts(sent.message_id) == {
        "delivered": 3,
        "undelivered": 1,
        "sent": 1,
        "failed": 1,
    }
    assert sum((await db.status_counts(sent.message_id)).values()) == 6


# --- reports for ids no recipient carries (yet) -----------------------------------------------


async def test_an_unknown_provider_id_is_kept_pending(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant
) -> None:
    pending_before = webhooks_total("twilio", "status", "pending")

    r = await webhooks.twilio_status("SMnobodyknowsthisid", "delivered")
    assert r.status_code == 200
    first = await db.pending("SMnobodyknowsthisid")
    assert (first.status, first.error_code) == ("delivered", None)

    # Lower or equal ranks do not replace what is kept; the highest status wins.
    await webhooks.twilio_status("SMnobodyknowsthisid", "sent")
    await webhooks.twilio_status("SMnobodyknowsthisid", "undelivered", ErrorCode="30003")
    assert (await db.pending("SMnobodyknowsthisid")).status == "delivered"

    await webhooks.telnyx_status("tx-unknown", "sent")
    await webhooks.telnyx_status(
        "tx-unknown", "delivery_failed", [{"code": "40008", "title": "Undeliverable"}]
    )
    kept = await db.pending("tx-unknown")
    assert (kept.status, kept.error_code, kept.error_text) == (
        "undelivered",
        "40008",
        "Undeliverable",
    )
    assert webhooks_total("twilio", "status", "pending") - pending_before == 3


async def test_a_report_that_beats_the_write_back_is_pending_until_the_id_is_recorded(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(2, with_provider_ids=False)

    # The carrier reports before the dispatcher wrote the provider id back.
    await webhooks.twilio_status("SMearly0001", "sent")
    await webhooks.twilio_status(
        "SMearly0001", "failed", ErrorCode="30007", ErrorMessage="Filtered"
    )
    row = await db.recipient(sent.message_id)
    assert (row.status, row.provider_message_id) == ("sending", None)
    kept = await db.pending("SMearly0001")
    assert (kept.status, kept.error_code, kept.error_text) == ("failed", "30007", "Filtered")

    # The write-back records the id; the pending report waits for the dispatcher to apply it.
    await db.record_provider_id(sent.message_id, 1, "SMearly0001")
    assert (await db.pending("SMearly0001")).status == "failed"
    assert await db.status_counts(sent.message_id) == {"sending": 2}

    # From now on reports for that id go straight to the recipient, never to pending.
    await webhooks.twilio_status("SMearly0001", "sent")
    assert (await db.recipient(sent.message_id)).status == "sent"
    assert (await db.pending("SMearly0001")).status == "failed"  # the dispatcher applies it
    await db.record_provider_id(sent.message_id, 2, "SMearly0002")
    await webhooks.twilio_status("SMearly0002", "delivered")
    assert (await db.recipient(sent.message_id, 2)).status == "delivered"
    assert await db.pending("SMearly0002") is None


# --- ignored and inbound ----------------------------------------------------------------------


async def test_statuses_we_do_not_record_change_nothing_and_store_nothing(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, count_statements: Any
) -> None:
    with count_statements() as log:
        for status in ("queued", "accepted", "sending", "scheduled", "read", "Whatever"):
            assert (await webhooks.twilio_status("SMignored", status)).status_code == 200
        for status in ("queued", "sending", "delivery_unconfirmed"):
            assert (await webhooks.telnyx_status("tx-ignored", status)).status_code == 200
        other = {"data": {"event_type": "number_order.complete", "payload": {"id": "x"}}}
        assert (await webhooks.telnyx(other)).status_code == 200
    assert log.count == 0
    assert await db.pending_count() == 0


# --- two statements per report batch ----------------------------------------------------------


@pytest.mark.parametrize("recipients", [1, 2000])
async def test_each_report_is_two_statements_whatever_the_data_size(
    webhooks: Webhooks,
    db: WebhookDb,
    tenant: Tenant,
    seed: SeedFor,
    count_statements: Any,
    recipients: int,
) -> None:
    sent = await seed(tenant).sent_message(recipients)
    sid = sent.provider_ids[-1]
    cases = [
        lambda: webhooks.twilio_status(sid, "sent"),  # applied
        lambda: webhooks.twilio_status(sid, "sent"),  # stale
        lambda: webhooks.telnyx_status(sid, "delivered"),  # applied
        lambda: webhooks.twilio_status("SMnotours", "delivered"),  # pending (insert)
        lambda: webhooks.telnyx_status("SMnotours", "sent"),  # pending (kept)
    ]
    for post in cases:
        with count_statements() as log:
            r = await post()
        assert r.status_code == 200
        # Lock the batch's provider ids, then store it (a snapshot taken after the locks: see
        # webhooks.repository._LOCK_IDS).
        assert log.count == 2, log.statements
    assert await db.status_counts(sent.message_id) == (
        {"delivered": 1} | ({"sending": recipients - 1} if recipients > 1 else {})
    )


# --- refused: signatures ----------------------------------------------------------------------


async def test_forged_twilio_reports_are_refused_and_change_nothing(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, count_statements: Any
) -> None:
    sent = await seed(tenant).sent_message()
    sid = sent.provider_ids[0]
    params = {"MessageSid": sid, "MessageStatus": "delivered"}
    forbidden_before = webhooks_total("twilio", "status", "forbidden")

    with count_statements() as log:
        responses = [
            await webhooks.twilio(params, token="not-the-auth-token"),
            await webhooks.twilio(params, sign=False),
            await webhooks.twilio(params, signature=""),
            await webhooks.twilio(params, signature="bm90IGEgc2lnbmF0dXJl"),
            # Signed, then tampered with: the status is not what was signed.
            await webhooks.twilio(
                params,
                signature=twilio_signature(
                    get_settings().public_url + TWILIO_STATUS,
                    {"MessageSid": sid, "MessageStatus": "sent"},
                    get_settings().twilio_auth_token.get_secret_value(),
                ),
            ),
        ]
    assert [r.status_code for r in responses] == [403] * 5
    assert {r.json()["error"] for r in responses} == {"invalid_signature"}
    assert log.count == 0
    assert (await db.recipient(sent.message_id)).status == "sending"
    assert await db.pending_count() == 0
    assert webhooks_total("twilio", "status", "forbidden") - forbidden_before == 5


async def test_a_twilio_signature_for_another_url_is_refused(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    params = {"MessageSid": sent.provider_ids[0], "MessageStatus": "delivered"}
    base = get_settings().public_url

    for signed_url in [
        base + "/api/v1/webhooks/twilio/inbound",
        "https://evil.example.org" + TWILIO_STATUS,
        base + TWILIO_STATUS + "?church=1",
        base.replace("http://", "https://") + TWILIO_STATUS,
    ]:
        r = await webhooks.twilio(params, signed_url=signed_url)
        assert r.status_code == 403, signed_url
    assert (await db.recipient(sent.message_id)).status == "sending"

    # The query string is part of what is signed.
    path = TWILIO_STATUS + "?church=1"
    r = await webhooks.twilio(params, path=path, signed_url=base + TWILIO_STATUS)
    assert r.status_code == 403
    r = await webhooks.twilio(params, path=path)
    assert r.status_code == 200
    assert (await db.recipient(sent.message_id)).status == "delivered"


async def test_forged_telnyx_events_are_refused_and_change_nothing(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor, count_statements: Any
) -> None:
    sent = await seed(tenant).sent_message()
    event = webhooks.telnyx_event(sent.provider_ids[0], "delivered")
    raw = orjson.dumps(event)
    other_key, _ = generate_ed25519_keypair()
    forbidden_before = webhooks_total("telnyx", "event", "forbidden")

    with count_statements() as log:
        responses = [
            await webhooks.telnyx(event, key=other_key),
            await webhooks.telnyx(event, sign=False),
            # A valid signature, over other bytes than those sent.
            await webhooks.telnyx(
                body=raw.replace(b'"delivered"', b'"delivery_failed"'), signed_body=raw
            ),
            # A valid signature, for another timestamp than the header's.
            await webhooks.telnyx(event, signed_timestamp=int(time.time()) - 1),
            await webhooks.telnyx(event, signature="!!not base64!!"),
            await webhooks.telnyx(event, signature=""),
        ]
    assert [r.status_code for r in responses] == [403] * 6
    assert {r.json()["error"] for r in responses} == {"invalid_signature"}
    assert log.count == 0
    assert (await db.recipient(sent.message_id)).status == "sending"
    assert await db.pending_count() == 0
    assert webhooks_total("telnyx", "event", "forbidden") - forbidden_before == 6


async def test_a_replayed_telnyx_event_with_a_stale_timestamp_is_refused(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    event = webhooks.telnyx_event(sent.provider_ids[0], "delivered")
    now = int(time.time())

    # Correctly signed, but captured 301 s ago (or dated 301 s ahead).
    assert (await webhooks.telnyx(event, timestamp=now - 301)).status_code == 403
    assert (await webhooks.telnyx(event, timestamp=now + 301)).status_code == 403
    assert (await webhooks.telnyx(event, timestamp=0)).status_code == 403
    assert (await db.recipient(sent.message_id)).status == "sending"
    assert await db.pending_count() == 0
    # Inside the 300 s tolerance it is accepted.
    assert (await webhooks.telnyx(event, timestamp=now - 250)).status_code == 200
    assert (await db.recipient(sent.message_id)).status == "delivered"


async def test_a_telnyx_timestamp_of_hundreds_of_digits_is_refused_not_a_500(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    event = webhooks.telnyx_event(sent.provider_ids[0], "delivered")
    for digits in (309, 400):
        r = await webhooks.telnyx(event, timestamp=10 ** (digits - 1))
        assert r.status_code == 403, r.text
        assert r.json()["error"] == "invalid_signature"
    assert (await db.recipient(sent.message_id)).status == "sending"


async def test_without_a_telnyx_key_every_event_is_refused(
    app: Any, webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    production = get_settings().model_copy(update={"env": "production", "telnyx_public_key": None})
    app.dependency_overrides[settings_dependency] = lambda: production
    try:
        r = await webhooks.telnyx_status(sent.provider_ids[0], "delivered")
    finally:
        app.dependency_overrides.pop(settings_dependency)
    assert r.status_code == 403
    assert (await db.recipient(sent.message_id)).status == "sending"


async def test_in_production_the_development_twilio_token_verifies_nothing(
    app: Any, webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    # Production settings that skipped validation (model_copy) still never trust the public
    # development token, and an unset token fails closed: 403, nothing stored.
    sent = await seed(tenant).sent_message()
    for token in ("sandbox-auth-token", ""):
        production = get_settings().model_copy(
            update={"env": "production", "twilio_auth_token": SecretStr(token)}
        )
        app.dependency_overrides[settings_dependency] = lambda s=production: s
        try:
            r = await webhooks.twilio_status(sent.provider_ids[0], "delivered")
        finally:
            app.dependency_overrides.pop(settings_dependency)
        assert r.status_code == 403, token
    assert (await db.recipient(sent.message_id)).status == "sending"
    # With the real token the same report is accepted.
    real = "0123456789abcdef0123456789abcdef"
    production = get_settings().model_copy(
        update={"env": "production", "twilio_auth_token": SecretStr(real)}
    )
    app.dependency_overrides[settings_dependency] = lambda: production
    try:
        r = await webhooks.twilio(
            {
                "MessageSid": sent.provider_ids[0],
                "MessageStatus": "delivered",
                "AccountSid": get_settings().twilio_account_sid,
            },
            token=real,
        )
    finally:
        app.dependency_overrides.pop(settings_dependency)
    assert r.status_code == 200
    assert (await db.recipient(sent.message_id)).status == "delivered"


async def test_a_configured_telnyx_key_replaces_the_sandbox_key(
    app: Any, webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    key, public_b64 = generate_ed25519_keypair()
    configured = get_settings().model_copy(update={"telnyx_public_key": public_b64})
    app.dependency_overrides[settings_dependency] = lambda: configured
    try:
        sandbox_signed = await webhooks.telnyx_status(sent.provider_ids[0], "sent")
        ours = await webhooks.telnyx(
            webhooks.telnyx_event(sent.provider_ids[0], "delivered"), key=key
        )
    finally:
        app.dependency_overrides.pop(settings_dependency)
    assert (sandbox_signed.status_code, ours.status_code) == (403, 200)
    assert (await db.recipient(sent.message_id)).status == "delivered"


# --- refused: malformed -----------------------------------------------------------------------


async def test_malformed_twilio_forms_are_a_400(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    sid = sent.provider_ids[0]
    malformed_before = webhooks_total("twilio", "status", "malformed")

    responses = [
        await webhooks.twilio({"MessageStatus": "delivered"}),  # no MessageSid
        await webhooks.twilio({"MessageSid": sid}),  # no MessageStatus
        await webhooks.twilio({"MessageSid": "", "MessageStatus": "delivered"}),
        await webhooks.twilio({"MessageSid": "SM" + "x" * 70, "MessageStatus": "delivered"}),
        await webhooks.twilio({"MessageSid": "SM\x00bad", "MessageStatus": "delivered"}),
        await webhooks.twilio({"MessageSid": "SMé", "MessageStatus": "delivered"}),
        # Signed, but not a form: JSON, or bytes that are not UTF-8 urlencoding.
        await webhooks.twilio({}, content_type="application/json", body=b'{"MessageSid": "SM1"}'),
        await webhooks.twilio({}, body=b"MessageSid=%ff%fe&MessageStatus=sent"),
        await webhooks.twilio({}, body=b"\xff\xfe"),
        await webhooks.twilio({}, body=b"MessageSid&MessageStatus"),
    ]
    assert [r.status_code for r in responses] == [400] * len(responses)
    assert {r.json()["error"] for r in responses} == {"malformed_webhook"}
    assert (await db.recipient(sent.message_id)).status == "sending"
    assert await db.pending_count() == 0
    assert webhooks_total("twilio", "status", "malformed") - malformed_before == len(responses)


async def test_malformed_telnyx_events_are_a_400(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message()
    good = webhooks.telnyx_event(sent.provider_ids[0], "delivered")
    payload = good["data"]["payload"]

    def with_payload(**changes: Any) -> dict[str, Any]:
        return {"data": {**good["data"], "payload": {**payload, **changes}}}

    bodies: list[bytes] = [
        b"{not json",
        b"",
        b"\xff\xfe",
        b"[1, 2]",
        b"null",
        b'{"data": "x"}',
        b'{"data": {"event_type": "message.finalized"}}',
        b'{"data": {"event_type": 7, "payload": {}}}',
        b'{"data": {"event_type": "message.finalized", "payload": []}}',
        orjson.dumps(with_payload(to=[])),
        orjson.dumps(with_payload(to="+15550100001")),
        orjson.dumps(with_payload(to=[{"phone_number": "+15550100001"}])),
        orjson.dumps(with_payload(to=[{"status": 3}])),
        orjson.dumps(with_payload(id=None)),
        orjson.dumps(with_payload(id="x" * 65)),
    ]
    responses = [await webhooks.telnyx(body=body) for body in bodies]
    assert [r.status_code for r in responses] == [400] * len(bodies)
    assert {r.json()["error"] for r in responses} == {"malformed_webhook"}
    assert (await db.recipient(sent.message_id)).status == "sending"
    assert await db.pending_count() == 0


async def test_odd_but_valid_error_fields_are_clipped_not_refused(
    webhooks: Webhooks, db: WebhookDb, tenant: Tenant, seed: SeedFor
) -> None:
    sent = await seed(tenant).sent_message(2)
    a, b = sent.provider_ids
    r = await webhooks.twilio_status(
        a, "failed", ErrorCode="9" * 50, ErrorMessage="nul\x00byte " + "x" * 5000
    )
    assert r.status_code == 200
    row = await db.recipient(sent.message_id)
    assert row.error_code == "9" * 32
    assert row.error_text.startswith("nulbyte ") and len(row.error_text) == 1000

    r = await webhooks.telnyx_status(b, "delivery_failed", [{"code": None, "title": 5}])
    assert r.status_code == 200
    row = await db.recipient(sent.message_id, 2)
    assert (row.status, row.error_code, row.error_text) == ("undelivered", None, None)


async def test_the_webhooks_are_documented_and_need_no_bearer_token(client: Any) -> None:
    spec = (await client.get("/openapi.json")).json()
    for path in (TWILIO_STATUS, "/api/v1/webhooks/twilio/inbound", TELNYX):
        operation = spec["paths"][path]["post"]
        assert "security" not in operation
        assert "Signature" in operation["description"]
        assert {"200", "400", "403"} <= set(operation["responses"])
        assert operation["requestBody"]["content"]
    twilio = spec["paths"][TWILIO_STATUS]["post"]
    assert "application/x-www-form-urlencoded" in twilio["requestBody"]["content"]
    assert "undelivered" in twilio["description"]
