"""Both adapters against the sandbox over loopback HTTP: every outcome a send can have."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import ClientSession

from koinonia.sms import OutboundSms, Provider
from koinonia_sandbox import RunningSandbox

pytestmark = pytest.mark.asyncio(loop_scope="function")

MakeProvider = Callable[..., Provider]  # the conftest fixture: (kind, *, timeout_s=...)
KINDS = ["twilio", "telnyx"]
# What each carrier answers, by the kind of refusal the sandbox was told to make.
CODES: dict[str, dict[str, Any]] = {
    "twilio": {
        "unauthorized": "20003",
        "rate_limited": "20429",
        "opted_out": "21610",
        "permanent": "30006",
        "transient": {"20500", "20503"},
        "invalid": "21211",
    },
    "telnyx": {
        "unauthorized": "10009",
        "rate_limited": "10011",
        "opted_out": "40300",
        "permanent": "40001",
        "transient": {"10007"},
        "invalid": "10016",
    },
}
CHURCH = "+15550100000"
MEMBER = "+15550100001"


def sms(to: str = MEMBER, body: str = "Service at 10 tomorrow") -> OutboundSms:
    return OutboundSms(to=to, from_=CHURCH, body=body, status_callback=None)


@pytest.mark.parametrize("kind", KINDS)
async def test_accepted_send_returns_a_provider_shaped_id(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox, http: ClientSession
) -> None:
    result = await make_provider(kind).send(sms())

    assert result.ok
    assert result.provider_id is not None
    assert not result.transient
    assert result.error_code is None
    if kind == "twilio":
        assert re.fullmatch(r"SM[0-9a-f]{32}", result.provider_id)
    else:
        assert uuid.UUID(result.provider_id).version == 4
    async with http.get(f"{sandbox.base_url}/sandbox/messages") as response:
        listed = (await response.json())["messages"]
    assert [(m["id"], m["to"], m["from"], m["body"], m["provider"]) for m in listed] == [
        (result.provider_id, MEMBER, CHURCH, "Service at 10 tomorrow", kind)
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_wrong_credentials_are_a_permanent_401(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"twilio_auth_token": "rotated", "telnyx_api_key": "rotated"})

    result = await make_provider(kind).send(sms())

    assert not result.ok
    assert not result.transient
    assert not result.opted_out
    assert result.error_code == CODES[kind]["unauthorized"]
    assert sandbox.carrier.stats()["rejected"]["unauthorized"] == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_rate_limited_send_is_transient_with_retry_after(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"rate_limit_mps": 1})
    provider = make_provider(kind)

    first = await provider.send(sms())
    second = await provider.send(sms())

    assert first.ok
    assert second.transient
    assert not second.ok
    assert second.error_code == CODES[kind]["rate_limited"]
    assert second.retry_after == 1.0


@pytest.mark.parametrize("kind", KINDS)
async def test_server_errors_are_transient(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"transient_failure_rate": 1.0})
    provider = make_provider(kind)

    results = [await provider.send(sms()) for _ in range(6)]

    assert all(r.transient and not r.ok for r in results)
    assert {r.error_code for r in results} <= CODES[kind]["transient"]
    assert sandbox.carrier.stats()["rejected"]["transient"] == 6


@pytest.mark.parametrize("kind", KINDS)
async def test_no_answer_in_time_is_transient(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"latency_ms": 400})

    result = await make_provider(kind, timeout_s=0.05).send(sms())

    assert (result.ok, result.transient, result.error_code) == (False, True, "timeout")


@pytest.mark.parametrize("kind", KINDS)
async def test_unsubscribed_recipient_is_opted_out_and_final(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"opted_out_numbers": [MEMBER]})
    provider = make_provider(kind)

    refused = await provider.send(sms())
    other = await provider.send(sms(to="+15550100002"))

    assert refused.opted_out
    assert not refused.transient
    assert not refused.ok
    assert refused.error_code == CODES[kind]["opted_out"]
    assert other.ok


@pytest.mark.parametrize("kind", KINDS)
async def test_unreachable_recipient_is_a_permanent_failure(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"permanent_failure_rate": 1.0})

    result = await make_provider(kind).send(sms())

    assert not result.ok
    assert not result.transient
    assert not result.opted_out
    assert result.error_code == CODES[kind]["permanent"]
    assert result.error_text


@pytest.mark.parametrize("kind", KINDS)
async def test_invalid_number_is_a_permanent_failure(
    kind: str, make_provider: MakeProvider
) -> None:
    result = await make_provider(kind).send(sms(to="5550100001"))

    assert not result.ok
    assert not result.transient
    assert result.error_code == CODES[kind]["invalid"]


@pytest.mark.parametrize("kind", KINDS)
async def test_many_concurrent_sends_share_one_session(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    provider = make_provider(kind)
    results = await asyncio.gather(*(provider.send(sms(body=f"text {i}")) for i in range(200)))

    assert all(r.ok for r in results)
    assert len({r.provider_id for r in results}) == 200
    assert sandbox.carrier.stats()["accepted"] == 200
