"""SMS providers: the adapter contract, Twilio and Telnyx adapters, their HTTP client, signatures.

The sandbox carrier the tests and `make run` send to is dev tooling outside the product
(`src/koinonia_sandbox`).
"""

from koinonia.sms.base import (
    OutboundSms,
    Provider,
    ProviderName,
    SendResult,
    create_http_client,
)
from koinonia.sms.providers import build_provider

__all__ = [
    "OutboundSms",
    "Provider",
    "ProviderName",
    "SendResult",
    "build_provider",
    "create_http_client",
]
