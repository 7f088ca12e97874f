"""Webhook signatures: Twilio's HMAC-SHA1 and Telnyx's Ed25519, both signing and verifying.

Signing lives here too so the sandbox signs exactly what our webhook handlers verify.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping
from functools import lru_cache
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
TELNYX_SIGNATURE_HEADER = "telnyx-signature-ed25519"
TELNYX_TIMESTAMP_HEADER = "telnyx-timestamp"
TELNYX_TOLERANCE_S = 300
TELNYX_TIMESTAMP_MAX_DIGITS = 12  # Unix seconds have 10 digits until the year 2286

Params = Mapping[str, str] | Iterable[tuple[str, str]]


# --- Twilio ---------------------------------------------------------------------------------


def twilio_signature(url: str, params: Params, auth_token: str) -> str:
    """Base64 HMAC-SHA1 over the full URL followed by each parameter's name and value.

    As Twilio's own SDK computes it: parameters sorted by name, a name's values sorted, every
    distinct value of a repeated name kept, and a pair repeated identically counted once.
    Pass pairs instead of a mapping when a form repeats a name.
    """
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(key + value for key, value in sorted(set(pairs)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio(url: str, params: Params, signature: str | None, auth_token: str) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) signs this request.

    Twilio does not sign ports consistently: behind a proxy on `:8443` it signs the URL without
    the port, and a URL without one may be signed with the scheme's default port. So, as the
    official SDK's `RequestValidator` does, a URL that has a port is also tried without it, and
    one without a port is also tried with 443 (https) or 80 (any other scheme).
    """
    if not signature or not auth_token:
        return False
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    expected = signature.encode()
    return any(
        hmac.compare_digest(twilio_signature(candidate, pairs, auth_token).encode(), expected)
        for candidate in twilio_url_forms(url)
    )


def twilio_url_forms(url: str) -> tuple[str, str]:
    """The two spellings of `url` a Twilio signature may cover: as given and with its port
    removed, or, when it names no port, as given and with the scheme's default port added."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # not a port number: no other spelling
        return (parts.geturl(), parts.geturl())
    userinfo, _, hostport = parts.netloc.rpartition("@")
    prefix = f"{userinfo}@" if userinfo else ""
    if port:
        host = hostport[: hostport.rindex(":")]
        other = parts._replace(netloc=f"{prefix}{host}")
    else:
        default = 443 if parts.scheme == "https" else 80
        other = parts._replace(netloc=f"{prefix}{hostport.rstrip(':')}:{default}")
    return (parts.geturl(), other.geturl())


# --- Telnyx ---------------------------------------------------------------------------------


def generate_ed25519_keypair() -> tuple[Ed25519PrivateKey, str]:
    """A new signing key and its public key as Telnyx shows it (base64 of the raw 32 bytes)."""
    private_key = Ed25519PrivateKey.generate()
    return private_key, public_key_to_b64(private_key.public_key())


def public_key_to_b64(public_key: Ed25519PublicKey) -> str:
    return base64.b64encode(public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def public_key_from_b64(public_key_b64: str) -> Ed25519PublicKey:
    """Raises ValueError on anything but base64 of 32 raw bytes."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("public key is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def private_key_to_b64(private_key: Ed25519PrivateKey) -> str:
    """The 32-byte seed as base64, for configuration (environment variables, files)."""
    raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(raw).decode()


def private_key_from_b64(private_key_b64: str) -> Ed25519PrivateKey:
    """Raises ValueError on anything but base64 of a 32-byte seed."""
    try:
        raw = base64.b64decode(private_key_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError("private key is not valid base64") from exc
    if len(raw) != 32:
        raise ValueError("an Ed25519 private key is a 32-byte seed")
    return Ed25519PrivateKey.from_private_bytes(raw)


def telnyx_sign(private_key: Ed25519PrivateKey, timestamp: str, raw_body: bytes) -> str:
    """Base64 Ed25519 signature over `timestamp|raw_body`, as in telnyx-signature-ed25519."""
    return base64.b64encode(private_key.sign(f"{timestamp}|".encode() + raw_body)).decode()


def verify_telnyx(
    public_key_b64: str,
    signature_b64: str | None,
    timestamp: str | None,
    raw_body: bytes,
    *,
    tolerance_s: float = TELNYX_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether the headers sign `raw_body` (the exact bytes received, never re-serialised).

    A timestamp further than `tolerance_s` from now, in either direction, fails: that bounds
    how long a captured request can be replayed.
    """
    if not signature_b64 or not timestamp or not (timestamp.isascii() and timestamp.isdigit()):
        return False
    if len(timestamp) > TELNYX_TIMESTAMP_MAX_DIGITS:
        # Far outside any tolerance; and a 309-digit number overflows a float (and 4,300+
        # digits exceed int()'s limit), which must be a refusal, not a 500.
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key = _cached_public_key(public_key_b64)
    except (binascii.Error, ValueError):
        return False
    if len(signature) != 64:
        return False
    try:
        public_key.verify(signature, f"{timestamp}|".encode() + raw_body)
    except InvalidSignature:
        return False
    return True


@lru_cache(maxsize=64)
def _cached_public_key(public_key_b64: str) -> Ed25519PublicKey:
    # Every status webhook verifies against the same few keys; decode each once.
    return public_key_from_b64(public_key_b64)
