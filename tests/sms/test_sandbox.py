"""The sandbox itself: its rate limit, text-in, inspection and control endpoints, its CLI entry."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest

import koinonia
from koinonia.sms import OutboundSms, Provider, SendResult
from koinonia.sms.signatures import (
    TELNYX_SIGNATURE_HEADER,
    TELNYX_TIMESTAMP_HEADER,
    TWILIO_SIGNATURE_HEADER,
    verify_telnyx,
    verify_twilio,
)
from koinonia_sandbox import RunningSandbox

MakeProvider = Callable[..., Provider]  # the conftest fixture: (kind, *, timeout_s=...)
Receiver = Any  # the conftest fixture recording webhook posts

CHURCH = "+15550100000"


async def flood(provider: Any, from_: str, seconds: float, workers: int = 8) -> list[SendResult]:
    """Send as fast as the workers can for `seconds`, never waiting on Retry-After."""
    results: list[SendResult] = []
    deadline = time.monotonic() + seconds

    async def worker(n: int) -> None:
        i = 0
        while time.monotonic() < deadline:
            results.append(
                await provider.send(OutboundSms(f"+1555020{n:04d}", from_, f"{i}", None))
            )
            i += 1

    await asyncio.gather(*(worker(n) for n in range(workers)))
    return results


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("kind", ["twilio", "telnyx"])
async def test_the_rate_limit_holds_per_sending_number(
    kind: str, make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    rate = 20
    sandbox.carrier.update_config({"rate_limit_mps": rate, "rate_limit_burst": 1})
    provider = make_provider(kind)

    results, other = await asyncio.gather(
        flood(provider, CHURCH, seconds=1.5), flood(provider, "+15550109999", 0.2, workers=1)
    )

    accepted = [
        datetime.fromisoformat(m["accepted_at"]).timestamp()
        for m in (m.as_json() for m in sandbox.carrier.messages)
        if m["from"] == CHURCH
    ]
    # A token bucket of size b allows at most b + rate * T sends in any window of T seconds;
    # +1 covers the sandbox reading a wall clock while its bucket runs on the monotonic one.
    for start in accepted:
        in_window = sum(1 for t in accepted if start <= t < start + 1.0)
        assert in_window <= rate + 1 + 1
    refused = [r for r in results if not r.ok]
    assert refused
    assert all(r.transient and r.retry_after and r.retry_after >= 1 for r in refused)
    assert len(accepted) >= rate  # generous sanity: the limit throttles, it does not block
    assert any(r.ok for r in other)  # another church's number has its own bucket


@pytest.mark.asyncio(loop_scope="function")
async def test_text_in_posts_a_signed_twilio_webhook_and_returns_its_answer(
    sandbox: RunningSandbox, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    url = receiver.url("/webhooks/twilio/inbound")
    sandbox.carrier.update_config({"twilio_inbound_url": url})
    receiver.reply_body = "<Response/>"
    receiver.reply_content_type = "text/xml"

    async with http.post(
        f"{sandbox.base_url}/sandbox/inbound",
        json={"provider": "twilio", "from": "+15550100001", "to": CHURCH, "body": "Amen"},
    ) as response:
        answer = await response.json()

    post = receiver.on("/webhooks/twilio/inbound")[0]
    params = parse_qsl(post.body.decode())
    assert verify_twilio(
        url, params, post.headers[TWILIO_SIGNATURE_HEADER], sandbox.config.twilio_auth_token
    )
    form = dict(params)
    assert (form["From"], form["To"], form["Body"], form["NumMedia"]) == (
        "+15550100001",
        CHURCH,
        "Amen",
        "0",
    )
    assert form["AccountSid"] == sandbox.config.twilio_account_sid
    assert form["MessageSid"].startswith("SM")
    assert form["MessageSid"] == answer["provider_id"]
    assert (answer["status"], answer["body"], answer["content_type"]) == (
        200,
        "<Response/>",
        "text/xml",
    )


@pytest.mark.asyncio(loop_scope="function")
async def test_text_in_posts_a_signed_telnyx_event(
    sandbox: RunningSandbox, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    sandbox.carrier.update_config({"telnyx_inbound_url": receiver.url("/telnyx/inbound")})
    receiver.reply_status = 204
    receiver.reply_body = ""

    async with http.post(
        f"{sandbox.base_url}/sandbox/inbound",
        json={
            "provider": "telnyx",
            "from": "+15550100001",
            "to": CHURCH,
            "body": "STOP",
            "provider_id": "b0b5e1f0-0000-4000-8000-000000000001",
        },
    ) as response:
        answer = await response.json()

    post = receiver.on("/telnyx/inbound")[0]
    assert verify_telnyx(
        sandbox.public_key_b64,
        post.headers[TELNYX_SIGNATURE_HEADER],
        post.headers[TELNYX_TIMESTAMP_HEADER],
        post.body,
    )
    event = json.loads(post.body)["data"]
    assert event["event_type"] == "message.received"
    payload = event["payload"]
    assert payload["id"] == "b0b5e1f0-0000-4000-8000-000000000001"
    assert (payload["from"]["phone_number"], payload["to"][0]["phone_number"]) == (
        "+15550100001",
        CHURCH,
    )
    assert (payload["text"], payload["direction"]) == ("STOP", "inbound")
    assert answer["status"] == 204


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"provider": "twilio", "from": "+15550100001", "to": CHURCH, "body": "hi"}, 409),
        ({"provider": "pigeon", "from": "+15550100001", "to": CHURCH, "body": "hi"}, 400),
        ({"provider": "twilio", "from": "+15550100001", "to": CHURCH}, 400),
        ([1, 2], 400),
    ],
    ids=["not-configured", "unknown-provider", "missing-body", "not-an-object"],
)
async def test_text_in_refuses_what_it_cannot_send(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, body: object, status: int
) -> None:
    async with http.post(f"{sandbox.base_url}/sandbox/inbound", json=body) as response:
        assert response.status == status
        assert "error" in await response.json()


@pytest.mark.asyncio(loop_scope="function")
async def test_text_in_reports_an_unreachable_webhook(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sandbox.carrier.update_config({"twilio_inbound_url": f"http://127.0.0.1:{port}/in"})
    message = {"provider": "twilio", "from": "+15550100001", "to": CHURCH, "body": "hi"}

    async with http.post(f"{sandbox.base_url}/sandbox/inbound", json=message) as response:
        assert response.status == 502


@pytest.mark.asyncio(loop_scope="function")
async def test_config_is_patched_at_run_time_and_validated(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    url = f"{sandbox.base_url}/sandbox/config"
    async with http.patch(
        url, json={"latency_ms": 5, "rate_limit_mps": 3, "opted_out_numbers": ["+15550100001"]}
    ) as response:
        assert response.status == 200
    async with http.get(url) as response:
        shown = await response.json()
    assert (shown["latency_ms"], shown["rate_limit_mps"], shown["opted_out_numbers"]) == (
        5.0,
        3.0,
        ["+15550100001"],
    )
    assert shown["telnyx_public_key_b64"] == sandbox.public_key_b64
    assert "telnyx_signing_key_b64" not in shown  # the private key never leaves

    for bad in (
        {"transient_failure_rate": 1.5},
        {"latency_ms": "fast"},
        {"rate_limit_mps": 0},
        {"seed": True},
        {"no_such_knob": 1},
        {"telnyx_signing_key_b64": "short"},
    ):
        async with http.patch(url, json=bad) as response:
            assert response.status == 400, bad
            assert "error" in await response.json()
    assert sandbox.config.transient_failure_rate == 0.0
    async with http.patch(url, json={"rate_limit_mps": None}) as response:
        assert (await response.json())["rate_limit_mps"] is None


@pytest.mark.asyncio(loop_scope="function")
async def test_stats_count_by_kind_and_reset_clears_them(
    make_provider: MakeProvider, sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    sandbox.carrier.update_config({"opted_out_numbers": ["+15550100002"]})
    provider = make_provider("twilio")
    for to in ("+15550100001", "+15550100002", "+15550100003", "bad"):
        await provider.send(OutboundSms(to, CHURCH, "hi", None))

    async with http.get(f"{sandbox.base_url}/sandbox/stats") as response:
        stats = await response.json()
    assert stats["accepted"] == 2
    assert stats["rejected"] == {
        "unauthorized": 0,
        "invalid": 1,
        "rate_limited": 0,
        "opted_out": 1,
        "transient": 0,
        "permanent": 0,
    }
    async with http.post(f"{sandbox.base_url}/sandbox/reset") as response:
        assert (await response.json())["accepted"] == 0
    async with http.get(f"{sandbox.base_url}/sandbox/messages") as response:
        assert (await response.json())["count"] == 0


@pytest.mark.asyncio(loop_scope="function")
async def test_a_seed_makes_failures_reproducible(
    make_provider: MakeProvider, sandbox: RunningSandbox
) -> None:
    sandbox.carrier.update_config({"transient_failure_rate": 0.5, "seed": 7})
    provider = make_provider("telnyx")

    async def outcomes() -> list[bool]:
        return [
            (await provider.send(OutboundSms("+15550100001", CHURCH, "hi", None))).ok
            for _ in range(12)
        ]

    first = await outcomes()
    sandbox.carrier.reset()
    assert await outcomes() == first
    assert True in first
    assert False in first


def test_run_sandbox_serves_until_stopped() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(koinonia.__file__).parents[1])}
    code = f"from koinonia_sandbox import run_sandbox; run_sandbox(port={port})"
    process = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as connection:
                    connection.sendall(b"GET /sandbox/stats HTTP/1.0\r\n\r\n")
                    reply = connection.recv(4096)
                break
            except OSError:
                assert process.poll() is None
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert reply.split(b"\r\n", 1)[0].endswith(b" 200 OK")
    finally:
        process.terminate()
        process.wait(timeout=10)
