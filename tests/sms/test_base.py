"""The provider contract: results, Retry-After, classification of answers, the factory."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from urllib.parse import urlencode

import pytest

from koinonia.kit.loop import new_event_loop
from koinonia.sms import OutboundSms, SendResult, build_provider, telnyx, twilio
from koinonia.sms.base import parse_retry_after


def test_result_is_ok_only_when_accepted() -> None:
    assert SendResult("SM1").ok
    assert not SendResult(None, "21610", opted_out=True).ok
    assert not SendResult(None, "timeout", transient=True).ok


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_retry_after_in_seconds(header: str | None, seconds: float | None) -> None:
    assert parse_retry_after(header) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    header = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(header, now=now.timestamp()) == 30.0
    past = format_datetime(now - timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(past, now=now.timestamp()) == 0.0


@pytest.mark.parametrize(
    ("status", "payload", "code", "transient", "opted_out"),
    [
        (400, {"code": 21610, "message": "unsubscribed"}, "21610", False, True),
        (400, {"code": 21211, "message": "bad To"}, "21211", False, False),
        (429, {"code": 20429, "message": "slow down"}, "20429", True, False),
        (400, {"code": 30001, "message": "queue overflow"}, "30001", True, False),
        (400, {"code": 30022, "message": "10DLC rate"}, "30022", True, False),
        (502, None, "502", True, False),
        (503, {"code": 20503, "message": "unavailable"}, "20503", True, False),
        (401, {"code": 20003, "message": "Authenticate"}, "20003", False, False),
        (201, {"status": "queued"}, "invalid_response", False, False),
    ],
)
def test_twilio_classification(
    status: int, payload: object, code: str, transient: bool, opted_out: bool
) -> None:
    result = twilio.classify(status, payload, None)
    assert (result.error_code, result.transient, result.opted_out) == (code, transient, opted_out)
    assert not result.ok


@pytest.mark.parametrize(
    ("status", "payload", "code", "transient", "opted_out"),
    [
        (
            400,
            {"errors": [{"code": "40300", "title": "Blocked due to STOP message"}]},
            "40300",
            False,
            True,
        ),
        (
            400,
            {"errors": [{"code": "10002", "title": "x"}, {"code": "40300"}]},
            "40300",
            False,
            True,
        ),
        (400, {"errors": [{"code": "40001", "title": "Not routable"}]}, "40001", False, False),
        (429, {"errors": [{"code": "10011", "title": "Too many requests"}]}, "10011", True, False),
        (500, "<html>", "500", True, False),
        (200, {"data": {}}, "invalid_response", False, False),
    ],
)
def test_telnyx_classification(
    status: int, payload: object, code: str, transient: bool, opted_out: bool
) -> None:
    result = telnyx.classify(status, payload, 2.0 if status >= 400 else None)
    assert (result.error_code, result.transient, result.opted_out) == (code, transient, opted_out)
    assert result.retry_after == (2.0 if status >= 400 else None)


def test_factory_builds_each_adapter() -> None:
    sandbox = build_provider(
        "sandbox", base_url="http://127.0.0.1:1", twilio_account_sid="AC1", twilio_auth_token="t"
    )
    assert isinstance(sandbox, twilio.TwilioProvider)
    assert sandbox.name == "sandbox"
    real = build_provider("twilio", twilio_account_sid="AC1", twilio_auth_token="t")
    assert isinstance(real, twilio.TwilioProvider)
    assert real.name == "twilio"
    assert isinstance(build_provider("telnyx", telnyx_api_key="KEY"), telnyx.TelnyxProvider)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"name": "sandbox", "twilio_account_sid": "AC1", "twilio_auth_token": "t"}, "base URL"),
        ({"name": "twilio", "twilio_account_sid": "AC1"}, "auth token"),
        ({"name": "telnyx"}, "API key"),
        ({"name": "carrier-pigeon"}, "unknown"),
        ({"name": "telnyx", "telnyx_api_key": "KEY", "timeout_s": 0}, "timeout_s"),
    ],
)
def test_factory_refuses_misconfiguration(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        build_provider(**kwargs)  # type: ignore[arg-type]


@pytest.mark.asyncio(loop_scope="function")
@pytest.mark.parametrize("kind", ["twilio", "telnyx"])
async def test_connection_refused_is_transient(kind: str) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = build_provider(
        "sandbox" if kind == "twilio" else "telnyx",
        base_url=f"http://127.0.0.1:{port}",
        twilio_account_sid="AC1",
        twilio_auth_token="t",
        telnyx_api_key="KEY",
    )
    try:
        result = await provider.send(OutboundSms("+15550000001", "+15550000002", "hi", None))
    finally:
        await provider.close()
    assert (result.ok, result.transient, result.error_code) == (False, True, "connection")


@pytest.mark.parametrize(
    "sms",
    [
        OutboundSms("+15550000001", "+15550000002", "Hi é {x}&=+ /?%\n", "http://a:9/s?y=1&z"),
        OutboundSms("+15550000001", "+15550000002", "plain", None),
    ],
)
def test_twilio_form_is_what_urlencode_writes(sms: OutboundSms) -> None:
    form = {"To": sms.to, "From": sms.from_, "Body": sms.body}
    if sms.status_callback:
        form["StatusCallback"] = sms.status_callback
    assert twilio.encode_form(sms) == urlencode(form).encode()


def test_workers_and_the_sandbox_run_on_uvloop_when_installed() -> None:
    uvloop = pytest.importorskip("uvloop")
    loop = new_event_loop()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()
