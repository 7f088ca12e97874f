"""Shared Pydantic pieces: strict-ish input models and validated field types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator

from koinonia.config import get_settings
from koinonia.kit.phones import PhoneError, normalize_phone


class In(BaseModel):
    """Request bodies: unknown fields are an error, so typos don't silently do nothing."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


def _reject_null(value: object) -> object:
    if value is None:
        raise ValueError("may not be null")
    return value


def not_null(*fields: str) -> Any:
    """For PATCH bodies: omitting a field leaves it alone, but an explicit null on a column
    that cannot be null is a 422 on that field (not a database error)."""
    return field_validator(*fields, mode="before")(_reject_null)


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


def _phone(value: str) -> str:
    try:
        return normalize_phone(value, get_settings().default_region)
    except PhoneError as exc:
        raise ValueError(exc.reason) from None


def _timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("unknown IANA timezone, e.g. America/New_York") from None
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone offset, e.g. 2026-12-24T18:00:00-05:00")
    return value


Phone = Annotated[str, StringConstraints(min_length=3, max_length=40), AfterValidator(_phone)]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
OptionalName = Annotated[str, StringConstraints(max_length=100)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
AwareDatetime = Annotated[datetime, AfterValidator(_aware)]
