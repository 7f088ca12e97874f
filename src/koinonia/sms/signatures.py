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
from urllib.parse import urlsplit, urlunsplit

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

Params = Mapping[str, str] | Iterable[tuple[str, str]]


# --- Twilio ---------------------------------------------------------------------------------


def twilio_signature(url: str, params: Params, auth_token: str) -> str:
    """Base64 HMAC-SHA1 over the full URL followed by each parameter's name and value.

    Parameters are sorted by name, and repeated names by value, as Twilio's own SDKs do.
    Pass pairs instead of a mapping when a form repeats a name.
    """
    pairs = params.items() if isinstance(params, Mapping) else params
    payload = url + "".join(key + value for key, value in sorted(set(pairs)))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_twilio(url: str, params: Params, signature: str | None, auth_token: str) -> bool:
    """Whether `signature` (the X-Twilio-Signature header) signs this request.

    Behind a proxy the URL we rebuild may gain or lose the default port relative to the one
    Twilio called, so both spellings are accepted, as Twilio's SDKs do.
    """
    if not signature or not auth_token:
        return False
    pairs = list(params.items() if isinstance(params, Mapping) else params)
    expected = signature.encode()
    return any(
        hmac.compare_digest(twilio_signature(candidate, pairs, auth_token).encode(), expected)
        for candidate in _with_and_without_default_port(url)
    )


def _with_and_without_default_port(url: str) -> list[str]:
    parts = urlsplit(url)
    default = {"https": 443, "http": 80}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return [url]
    if default is None or parts.hostname is None or port not in (None, default):
        return [url]
    userinfo = parts.netloc.rpartition("@")[0]
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    prefix = f"{userinfo}@" if userinfo else ""
    with_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default}"))
    without_port = urlunsplit(parts._replace(netloc=f"{prefix}{host}"))
    return [url, with_port if port is None else without_port]


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
