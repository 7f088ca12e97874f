"""SMS providers: the adapter contract, Twilio and Telnyx adapters, signatures, the sandbox."""

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
