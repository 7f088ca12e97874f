"""What the sandbox is told: credentials it accepts, how it misbehaves, where it posts.

The default credentials are the app's development values (`koinonia.config.DEV_*`), so an
app and a sandbox started with nothing configured trust each other; `sandbox_config` builds
the configuration for given settings (their credentials and webhook URLs).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from koinonia.config import (
    DEV_TELNYX_API_KEY,
    DEV_TWILIO_ACCOUNT_SID,
    DEV_TWILIO_AUTH_TOKEN,
    Settings,
)
from koinonia.sms.signatures import private_key_from_b64, public_key_to_b64

# A fixed, publicly known signing key, so an API process started separately can verify the
# sandbox's Telnyx webhooks with zero configuration: its public half is the app's
# `DEV_TELNYX_PUBLIC_KEY` (a test checks they match). Never trust it outside development.
DEFAULT_TELNYX_SIGNING_KEY_B64 = base64.b64encode(
    hashlib.sha256(b"koinonia sms sandbox telnyx signing key (public, dev only)").digest()
).decode()


@dataclass(slots=True)
class SandboxConfig:
    """Knobs of the fake carrier; change them at run time with PATCH /sandbox/config."""

    # Credentials it accepts (by default the app's development values).
    twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID
    twilio_auth_token: str = DEV_TWILIO_AUTH_TOKEN
    telnyx_api_key: str = DEV_TELNYX_API_KEY
    telnyx_signing_key_b64: str = DEFAULT_TELNYX_SIGNING_KEY_B64  # Ed25519 seed, base64
    # Behaviour of sends.
    latency_ms: float = 0.0  # added to every send before it is answered
    transient_failure_rate: float = 0.0  # answered 500 or 503
    permanent_failure_rate: float = 0.0  # answered 400 "landline or unreachable"
    rate_limit_mps: float | None = None  # per from-number; None means unlimited
    rate_limit_burst: float = 1.0  # token bucket size: sends allowed back to back
    opted_out_numbers: set[str] = field(default_factory=set)  # answered 21610 / 40300
    # Delivery reports: "sent" at half the delay, then "delivered" or "undelivered".
    delivery_delay_ms: float = 500.0
    undelivered_rate: float = 0.0
    seed: int | None = None  # for the failure and delivery draws
    # Where texts from members ("text in") are posted.
    twilio_inbound_url: str | None = None
    telnyx_inbound_url: str | None = None
    # Callback delivery, as a carrier retries a webhook that fails.
    callback_attempts: int = 5
    callback_retry_ms: float = 250.0  # doubled after each failed attempt
    callback_timeout_s: float = 5.0

    @property
    def telnyx_public_key_b64(self) -> str:
        return public_key_to_b64(private_key_from_b64(self.telnyx_signing_key_b64).public_key())

    def validate(self) -> None:
        """Raises ValueError naming the first bad knob."""
        for rate in ("transient_failure_rate", "permanent_failure_rate", "undelivered_rate"):
            if not 0.0 <= getattr(self, rate) <= 1.0:
                raise ValueError(f"{rate} must be between 0 and 1")
        for name in ("latency_ms", "delivery_delay_ms", "callback_retry_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if self.rate_limit_mps is not None and self.rate_limit_mps <= 0:
            raise ValueError("rate_limit_mps must be positive (or null for no limit)")
        if self.rate_limit_burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        if self.callback_attempts < 1:
            raise ValueError("callback_attempts must be at least 1")
        if self.callback_timeout_s <= 0:
            raise ValueError("callback_timeout_s must be positive")
        private_key_from_b64(self.telnyx_signing_key_b64)

    def as_json(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["opted_out_numbers"] = sorted(self.opted_out_numbers)
        del data["telnyx_signing_key_b64"]
        data["telnyx_public_key_b64"] = self.telnyx_public_key_b64
        return data


_KNOB_TYPES: dict[str, tuple[str, bool]] = {  # name -> (JSON type, may be null)
    "twilio_account_sid": ("string", False),
    "twilio_auth_token": ("string", False),
    "telnyx_api_key": ("string", False),
    "telnyx_signing_key_b64": ("string", False),
    "latency_ms": ("number", False),
    "transient_failure_rate": ("number", False),
    "permanent_failure_rate": ("number", False),
    "rate_limit_mps": ("number", True),
    "rate_limit_burst": ("number", False),
    "opted_out_numbers": ("phones", False),
    "delivery_delay_ms": ("number", False),
    "undelivered_rate": ("number", False),
    "seed": ("integer", True),
    "twilio_inbound_url": ("string", True),
    "telnyx_inbound_url": ("string", True),
    "callback_attempts": ("integer", False),
    "callback_retry_ms": ("number", False),
    "callback_timeout_s": ("number", False),
}


def patched_config(config: SandboxConfig, changes: Mapping[str, Any]) -> SandboxConfig:
    """A validated copy of `config` with `changes` (JSON values) applied; ValueError if bad."""
    values: dict[str, Any] = {}
    for name, value in changes.items():
        if name not in _KNOB_TYPES:
            raise ValueError(f"unknown setting {name!r}")
        kind, nullable = _KNOB_TYPES[name]
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        if (
            (value is None and nullable)
            or (kind == "string" and isinstance(value, str))
            or (kind == "integer" and is_integer)
        ):
            values[name] = value
        elif (
            kind == "number"
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
        ):
            values[name] = float(value)
        elif (
            kind == "phones" and isinstance(value, list) and all(isinstance(v, str) for v in value)
        ):
            values[name] = set(value)
        else:
            raise ValueError(
                f"{name} must be {'a list of phone numbers' if kind == 'phones' else kind}"
            )
    updated = dataclasses.replace(config, **values)
    updated.validate()
    return updated


def sandbox_config(settings: Settings) -> SandboxConfig:
    """A sandbox that accepts `settings`' credentials and posts texts in to its webhooks."""
    public = settings.public_url
    return SandboxConfig(
        twilio_account_sid=settings.twilio_account_sid,
        twilio_auth_token=settings.twilio_auth_token.get_secret_value(),
        telnyx_api_key=settings.telnyx_api_key.get_secret_value(),
        twilio_inbound_url=f"{public}/api/v1/webhooks/twilio/inbound",
        telnyx_inbound_url=f"{public}/api/v1/webhooks/telnyx",
    )
