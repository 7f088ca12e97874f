"""Webhook signatures: Twilio's published vector, and Ed25519 round trips and rejections."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from koinonia.config import DEV_TELNYX_PUBLIC_KEY
from koinonia.sms.signatures import (
    generate_ed25519_keypair,
    private_key_from_b64,
    private_key_to_b64,
    public_key_from_b64,
    public_key_to_b64,
    telnyx_sign,
    twilio_signature,
    verify_telnyx,
    verify_twilio,
)
from koinonia_sandbox import DEFAULT_TELNYX_SIGNING_KEY_B64, SandboxConfig

# The worked example of Twilio's "Webhooks security" guide.
DOC_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
DOC_TOKEN = "12345"
DOC_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
DOC_SIGNATURE = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_twilio_signature_matches_the_documented_example() -> None:
    assert twilio_signature(DOC_URL, DOC_PARAMS, DOC_TOKEN) == DOC_SIGNATURE
    shuffled = list(reversed(DOC_PARAMS.items()))
    assert twilio_signature(DOC_URL, shuffled, DOC_TOKEN) == DOC_SIGNATURE
    assert verify_twilio(DOC_URL, DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN)


@pytest.mark.parametrize(
    ("url", "params", "signature", "token"),
    [
        (DOC_URL, {**DOC_PARAMS, "Digits": "9999"}, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL, {**DOC_PARAMS, "Extra": "1"}, DOC_SIGNATURE, DOC_TOKEN),
        ("https://mycompany.com/myapp.php?foo=1&bar=3", DOC_PARAMS, DOC_SIGNATURE, DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE, "54321"),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE[:-2], DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, "", DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, None, DOC_TOKEN),
        (DOC_URL, DOC_PARAMS, DOC_SIGNATURE, ""),
    ],
    ids=["param", "extra", "url", "token", "truncated", "empty", "missing", "no-token"],
)
def test_twilio_rejects_anything_tampered(
    url: str, params: dict[str, str], signature: str | None, token: str
) -> None:
    assert not verify_twilio(url, params, signature, token)


# Vectors of twilio-python's RequestValidator tests (token "12345"), each recomputed here
# independently with `printf '%s' "$URL$PARAMS" | openssl dgst -sha1 -hmac 12345 -binary | base64`.
SDK_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
SDK_PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Digits": "1234",
    "From": "+14158675309",
    "To": "+18005551212",
    "Caller": "+14158675309",
}
SIGNED_AS_GIVEN = "RSOYDt4T1cUTdK1PDd93/VVr8B8="  # over SDK_URL
SIGNED_WITH_443 = "kvajT1Ptam85bY51eRf/AJRuM3w="  # over https://mycompany.com:443/...
SIGNED_HTTP_1234 = "Zmvh+3yNM1Phv2jhDCwEM3q5ebU="  # over http://mycompany.com:1234/...
SIGNED_HTTP_80 = "0ZXoZLH/DfblKGATFgpif+LLRf4="  # over http://mycompany.com:80/...
SIGNED_HTTP = "OyGYPqTF6ztdbRNCvuQO/oPvqQ4="  # over http://mycompany.com/...


@pytest.mark.parametrize(
    ("url", "signature", "accepted"),
    [
        # https with a port (a proxy on :1234 or :8443): Twilio may have signed without it.
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNED_AS_GIVEN, True),
        # Without a port: the URL may have been signed with the default port.
        (SDK_URL, SIGNED_WITH_443, True),
        ("http://mycompany.com/myapp.php?foo=1&bar=2", SIGNED_HTTP_80, True),
        # With a port, as given, on http too; and the port removed on http as on https.
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNED_HTTP_1234, True),
        ("http://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNED_HTTP, True),
        ("https://mycompany.com:443/myapp.php?foo=1&bar=2", SIGNED_AS_GIVEN, True),
        # Never another port, nor another scheme's default.
        (SDK_URL, SIGNED_HTTP_1234, False),
        ("https://mycompany.com:1234/myapp.php?foo=1&bar=2", SIGNED_WITH_443, False),
        ("http://mycompany.com/myapp.php?foo=1&bar=2", SIGNED_WITH_443, False),
        ("https://mycompany.com:8443/myapp.php?foo=1&bar=2", SIGNED_HTTP_1234, False),
    ],
)
def test_twilio_port_handling_is_the_official_validators(
    url: str, signature: str, accepted: bool
) -> None:
    assert verify_twilio(url, SDK_PARAMS, signature, "12345") is accepted


def test_a_report_through_an_https_proxy_on_8443_verifies_with_the_portless_signature() -> None:
    # What Twilio sends when KOINONIA_PUBLIC_URL is https://sms.example.org:8443: it signs
    # https://sms.example.org/... (openssl, as above, with this token).
    token = "0123456789abcdef0123456789abcdef"
    params = {"MessageSid": "SM1", "MessageStatus": "delivered"}
    ours = "https://sms.example.org:8443/api/v1/webhooks/twilio/status"
    assert verify_twilio(ours, params, "9KLAnFcp5fQkFVFYSurILX1zjcs=", token)  # portless
    assert verify_twilio(ours, params, "zX9joNXQs5STP3o1c+/uPbi8EPI=", token)  # with :8443


def test_twilio_signs_repeated_form_names_value_by_value() -> None:
    # The SDK's duplicate-parameter vector: names sorted, a name's values sorted, each distinct
    # value kept, an identical pair counted once (its test: "Ensure duplicates are removed").
    pairs = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert twilio_signature(SDK_URL, pairs, "12345") == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert verify_twilio(SDK_URL, pairs, "IK+Dwps556ElfBT0I3Rgjkr1wJU=", "12345")
    # Keeping the identical pair twice is what the SDK does not accept.
    assert not verify_twilio(SDK_URL, pairs, "tM//N+MVWOh7+ol2z8YCNxSY0Eg=", "12345")
    # Dropping a distinct value of a repeated name is not accepted either.
    assert not verify_twilio(SDK_URL, pairs[:3], "IK+Dwps556ElfBT0I3Rgjkr1wJU=", "12345")
    signature = twilio_signature("https://h/p", [("MediaUrl", "b"), ("Body", "x")], "t")
    assert signature == twilio_signature("https://h/pBodyxMediaUrlb", {}, "t")


TS = "1700000000"
BODY = b'{"data":{"event_type":"message.finalized","id":"e1"}}'


@pytest.fixture
def keypair() -> tuple[Ed25519PrivateKey, str]:
    return generate_ed25519_keypair()


def test_telnyx_signature_round_trips(keypair: tuple[Ed25519PrivateKey, str]) -> None:
    private_key, public_b64 = keypair
    signature = telnyx_sign(private_key, TS, BODY)
    assert verify_telnyx(public_b64, signature, TS, BODY, now=int(TS) + 5)
    # What is signed is exactly "timestamp|body", as Telnyx documents.
    private_key.public_key().verify(base64.b64decode(signature), TS.encode() + b"|" + BODY)


@pytest.mark.parametrize(
    ("change", "now_offset"),
    [
        ("body", 0),
        ("timestamp", 0),
        ("none", 301),  # stale
        ("none", -301),  # from the future
        ("key", 0),
        ("signature-base64", 0),
        ("signature-length", 0),
        ("timestamp-format", 0),
        ("public-key-base64", 0),
    ],
)
def test_telnyx_rejects(
    keypair: tuple[Ed25519PrivateKey, str], change: str, now_offset: int
) -> None:
    private_key, public_b64 = keypair
    signature = telnyx_sign(private_key, TS, BODY)
    body, timestamp = BODY, TS
    if change == "body":
        body = BODY.replace(b"e1", b"e2")
    elif change == "timestamp":
        timestamp = str(int(TS) + 1)
    elif change == "key":
        public_b64 = generate_ed25519_keypair()[1]
    elif change == "signature-base64":
        signature = "not base64!"
    elif change == "signature-length":
        signature = base64.b64encode(base64.b64decode(signature)[:32]).decode()
    elif change == "timestamp-format":
        timestamp = "17e8"
    elif change == "public-key-base64":
        public_b64 = "AAAA"
    assert not verify_telnyx(public_b64, signature, timestamp, body, now=int(TS) + now_offset)


def test_telnyx_tolerance_is_inclusive_and_configurable(
    keypair: tuple[Ed25519PrivateKey, str],
) -> None:
    private_key, public_b64 = keypair
    signature = telnyx_sign(private_key, TS, BODY)
    assert verify_telnyx(public_b64, signature, TS, BODY, now=int(TS) + 300)
    assert not verify_telnyx(public_b64, signature, TS, BODY, now=int(TS) + 60, tolerance_s=30)
    assert not verify_telnyx(public_b64, None, TS, BODY, now=int(TS))
    assert not verify_telnyx(public_b64, signature, None, BODY, now=int(TS))


@pytest.mark.parametrize("digits", [13, 309, 400, 5000])
def test_telnyx_refuses_an_absurdly_long_timestamp(
    keypair: tuple[Ed25519PrivateKey, str], digits: int
) -> None:
    # 309+ digits overflowed the float comparison (OverflowError: a 500 before any check).
    private_key, public_b64 = keypair
    timestamp = "9" * digits
    signature = telnyx_sign(private_key, timestamp, BODY)
    assert not verify_telnyx(public_b64, signature, timestamp, BODY, now=int(TS))


def test_keys_serialise_as_raw_32_byte_base64() -> None:
    private_key, public_b64 = generate_ed25519_keypair()
    assert len(base64.b64decode(public_b64)) == 32
    assert public_key_to_b64(public_key_from_b64(public_b64)) == public_b64
    restored = private_key_from_b64(private_key_to_b64(private_key))
    assert public_key_to_b64(restored.public_key()) == public_b64
    with pytest.raises(ValueError, match="32 bytes"):
        public_key_from_b64(base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="base64"):
        public_key_from_b64("%%%")


def test_the_sandbox_signs_with_the_key_the_app_trusts_in_development() -> None:
    # The app holds only the public half (config.DEV_TELNYX_PUBLIC_KEY); the sandbox derives
    # it from its published seed: the two must stay one key pair.
    assert SandboxConfig().telnyx_public_key_b64 == DEV_TELNYX_PUBLIC_KEY
    seed = private_key_from_b64(DEFAULT_TELNYX_SIGNING_KEY_B64)
    assert public_key_to_b64(seed.public_key()) == DEV_TELNYX_PUBLIC_KEY
