"""Delivery reports: signed as the real carriers sign them, in order, retried when refused."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import pytest

from koinonia.sms import OutboundSms, Provider
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    verify_telnyx,
    verify_twilio,
)
from koinonia_sandbox import RunningSandbox

pytestmark = pytest.mark.asyncio(loop_scope="function")

MakeProvider = Callable[..., Provider]  # the conftest fixture: (kind, *, timeout_s=...)
Receiver = Any  # the conftest fixture recording webhook posts


def outbound(callback: str) -> OutboundSms:
    return OutboundSms("+15550100001", "+15550100000", "Hello", callback)


def twilio_report(sandbox: RunningSandbox, url: str, body: bytes, signature: str) -> dict[str, str]:
    params = parse_qsl(body.decode(), keep_blank_values=True)
    assert verify_twilio(url, params, signature, sandbox.config.twilio_auth_token)
    return dict(params)


def telnyx_report(sandbox: RunningSandbox, headers: Any, body: bytes) -> dict[str, Any]:
    assert verify_telnyx(
        sandbox.public_key_b64,
        headers[TELNYX_SIGNATURE_HEADER],
        headers[TELNYX_TIMESTAMP_HEADER],
        body,
    )
    event: dict[str, Any] = json.loads(body)["data"]
    return event


async def test_twilio_reports_sent_then_delivered_signed_with_the_auth_token(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    path = "/webhooks/twilio/status?church=7"
    provider: Provider = make_provider("twilio")

    result = await provider.send(outbound(receiver.url(path)))
    posts = await receiver.wait_for(path, 2)

    reports = [
        twilio_report(sandbox, receiver.url(path), p.body, p.headers[TWILIO_SIGNATURE_HEADER])
        for p in posts
    ]
    assert [r["MessageStatus"] for r in reports] == ["sent", "delivered"]
    assert {r["MessageSid"] for r in reports} == {result.provider_id}
    assert reports[1]["To"] == "+15550100001"
    assert reports[1]["From"] == "+15550100000"
    assert reports[1]["AccountSid"] == sandbox.config.twilio_account_sid
    assert "ErrorCode" not in reports[1]
    assert posts[0].headers["Content-Type"] == "application/x-www-form-urlencoded"


async def test_twilio_undelivered_report_carries_the_error_code(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    sandbox.carrier.update_config({"undelivered_rate": 1.0})
    path = "/twilio/status"

    await make_provider("twilio").send(outbound(receiver.url(path)))
    final = (await receiver.wait_for(path, 2))[1]

    report = twilio_report(
        sandbox, receiver.url(path), final.body, final.headers[TWILIO_SIGNATURE_HEADER]
    )
    assert (report["MessageStatus"], report["ErrorCode"]) == ("undelivered", "30003")


async def test_a_forged_twilio_report_does_not_verify(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    path = "/twilio/status"
    await make_provider("twilio").send(outbound(receiver.url(path)))
    post = (await receiver.wait_for(path, 1))[0]

    forged = dict(parse_qsl(post.body.decode())) | {"MessageStatus": "delivered"}
    signature = post.headers[TWILIO_SIGNATURE_HEADER]
    assert not verify_twilio(
        receiver.url(path), forged, signature, sandbox.config.twilio_auth_token
    )


async def test_telnyx_reports_sent_then_finalized_signed_with_ed25519(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    path = "/webhooks/telnyx/status"

    result = await make_provider("telnyx").send(outbound(receiver.url(path)))
    posts = await receiver.wait_for(path, 2)

    events = [telnyx_report(sandbox, p.headers, p.body) for p in posts]
    assert [e["event_type"] for e in events] == ["message.sent", "message.finalized"]
    assert [e["payload"]["to"][0]["status"] for e in events] == ["sent", "delivered"]
    assert {e["payload"]["id"] for e in events} == {result.provider_id}
    assert events[1]["payload"]["to"][0]["phone_number"] == "+15550100001"
    assert events[1]["payload"]["errors"] == []
    assert events[0]["id"] != events[1]["id"]  # each event has its own id


async def test_telnyx_failed_delivery_is_finalized_with_errors(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    sandbox.carrier.update_config({"undelivered_rate": 1.0})
    path = "/telnyx/status"

    await make_provider("telnyx").send(outbound(receiver.url(path)))
    final = (await receiver.wait_for(path, 2))[1]

    payload = telnyx_report(sandbox, final.headers, final.body)["payload"]
    assert payload["to"][0]["status"] == "delivery_failed"
    assert payload["errors"][0]["code"] == "40008"


@pytest.mark.parametrize("kind", ["twilio", "telnyx"])
async def test_a_refused_report_is_retried_until_accepted(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    path = f"/{kind}/status"

    await make_provider(kind).send(outbound(receiver.url(path)))
    posts = await receiver.wait_for(path, 4)  # "sent" three times, then "delivered"

    if kind == "twilio":
        statuses = [dict(parse_qsl(p.body.decode()))["MessageStatus"] for p in posts]
    else:
        # Each retry is signed afresh and counts its attempt, as Telnyx does.
        attempts = [json.loads(p.body)["meta"]["attempt"] for p in posts]
        assert attempts == [1, 2, 3, 1]
        events = [telnyx_report(sandbox, p.headers, p.body) for p in posts]
        statuses = [e["payload"]["to"][0]["status"] for e in events]
    assert statuses == ["sent", "sent", "sent", "delivered"]


async def test_a_report_nobody_accepts_is_given_up_and_counted(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    sandbox.carrier.update_config({"callback_attempts": 2, "delivery_delay_ms": 0})
    receiver.fail_first = 10**6

    await make_provider("twilio").send(outbound(receiver.url("/down")))
    await receiver.wait_for("/down", 4)  # two attempts for "sent", two for "delivered"

    async with asyncio.timeout(5):
        await sandbox.carrier.wait_for_callbacks()
    stats = sandbox.carrier.stats()
    assert stats["callbacks"]["failed"] == 2
    assert stats["callbacks"]["delivered"] == 0
    assert len(receiver.on("/down")) == 4


async def test_the_send_answer_does_not_wait_for_callbacks(
    make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    connected = asyncio.Event()

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connected.set()
        await reader.read()  # until the sandbox gives up the connection
        writer.close()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    sandbox.carrier.update_config({"callback_timeout_s": 30, "delivery_delay_ms": 0})
    try:
        result = await make_provider("twilio", timeout_s=2).send(
            outbound(f"http://127.0.0.1:{port}/hangs")
        )
        await asyncio.wait_for(connected.wait(), 5)
        assert result.ok
        assert sandbox.carrier.stats()["callbacks"]["pending"] == 1
    finally:
        await sandbox.carrier.cancel_callbacks()
        server.close()
        await server.wait_closed()


async def test_reports_wait_in_one_schedule_and_a_shorter_delay_still_comes_first(
    make_provider: MakeProvider, sandbox: RunningSandbox, receiver: Receiver
) -> None:
    # Accepted texts wait for their reports as heap entries, not as a task (and a timer) each.
    sandbox.carrier.update_config({"delivery_delay_ms": 3_600_000})
    provider = make_provider("twilio")
    results = await asyncio.gather(
        *(provider.send(outbound(receiver.url("/late"))) for _ in range(50))
    )
    assert all(r.ok for r in results)
    assert sandbox.carrier.stats()["callbacks"]["pending"] == 50
    assert len(sandbox.carrier._tasks) == 0

    # A text accepted after the delay was shortened is reported first: the schedule wakes up.
    sandbox.carrier.update_config({"delivery_delay_ms": 0})
    await provider.send(outbound(receiver.url("/soon")))
    await receiver.wait_for("/soon", 2)
    for _ in range(500):  # until the "/soon" report task has counted its result
        if sandbox.carrier.stats()["callbacks"]["pending"] == 50:
            break
        await asyncio.sleep(0.01)
    assert sandbox.carrier.stats()["callbacks"]["pending"] == 50
    assert receiver.on("/late") == []
    await sandbox.carrier.cancel_callbacks()
    assert sandbox.carrier.stats()["callbacks"]["pending"] == 0
