"""Shared Pydantic pieces: strict input models and validated field types."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time
from functools import lru_cache
from typing import Annotated, Any
from zoneinfo import available_timezones

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    PlainSerializer,
    Strict,
    StringConstraints,
    WithJsonSchema,
    field_validator,
)

from koinonia.config import get_settings
from koinonia.kit.emails import normalize_email
from koinonia.kit.phones import PhoneError, normalize_phone


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


class In(BaseModel):
    """Request bodies: unknown fields are an error, so typos don't silently do nothing.

    Strict: a value must have the JSON type the document gives its field. Lax mode read
    `"dry_run": 0` or `"yes"` as a boolean and `"5"` or `true` as an integer, none of which the
    document allows (and `1` as `true` is how a typo sends a broadcast). FastAPI validates the
    parsed JSON in Python mode, where strict refuses a string for a datetime too: such fields
    are typed with `JsonDatetime` (or `ClockTime`), which take the string form only.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True, strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nul(cls, value: object) -> object:
        # PostgreSQL text cannot hold U+0000: reject it here as a 422 on the field, not a 500.
        if _has_nul(value):
            raise ValueError("may not contain the NUL character (U+0000)")
        return value


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


# Not canonical IANA names although zoneinfo opens them: the machine's local-time alias and
# tzdata's placeholder zone. (available_timezones() already leaves out the posix/ and right/
# copies and posixrules.) PostgreSQL's tz database need not have them: a church saved with one
# failed every local-time statement (stats, inbound texts). tests/churches checks every name
# here against pg_timezone_names; the churches table CHECKs the same (koinonia_is_timezone).
_NOT_CANONICAL = frozenset({"localtime", "Factory"})


@lru_cache(maxsize=1)
def canonical_timezones() -> frozenset[str]:
    """The IANA names a church may use (read once: it walks the tz database)."""
    return frozenset(available_timezones() - _NOT_CANONICAL)


def is_canonical_timezone(value: str) -> bool:
    return value in canonical_timezones()


def _timezone(value: str) -> str:
    if not is_canonical_timezone(value):
        raise ValueError("unknown IANA timezone, e.g. America/New_York")
    return value


_MIN_YEAR, _MAX_YEAR = 1970, 9998


def _json_string(value: object) -> object:
    # Strict mode is off for these fields (it would refuse the ISO string itself): refuse here
    # what lax mode would read besides a string, such as a number of seconds since 1970.
    if not isinstance(value, (str, datetime, time)):
        raise ValueError("must be a string")
    return value


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("must include a timezone offset, e.g. 2026-12-24T18:00:00-05:00")
    # The instant must survive conversion to UTC and to any church's local time (PostgreSQL
    # and zoneinfo both refuse years past 9999): 0001-01-01T00:00+05:00 or 9999-12-31 would
    # otherwise fail deep inside as a 500.
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None
    if not _MIN_YEAR <= utc.year <= _MAX_YEAR:
        raise ValueError(f"must be between the years {_MIN_YEAR} and {_MAX_YEAR}")
    return value


Phone = Annotated[str, StringConstraints(min_length=3, max_length=40), AfterValidator(_phone)]
Email = Annotated[
    str, AfterValidator(normalize_email), WithJsonSchema({"type": "string", "format": "email"})
]
TimeZone = Annotated[str, StringConstraints(max_length=64), AfterValidator(_timezone)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100)]
OptionalName = Annotated[str, StringConstraints(max_length=100)]
Title = Annotated[str, StringConstraints(min_length=1, max_length=200)]
AwareDatetime = Annotated[
    datetime, Strict(False), BeforeValidator(_json_string), AfterValidator(_aware)
]

# Clock times (quiet hours): to the minute, without a UTC offset (a church-local wall time has
# none; an offset used to be dropped silently). Seconds are accepted only as `:00`.
_CLOCK = re.compile(r"([01]?[0-9]|2[0-3]):([0-5][0-9])(?::00)?")
CLOCK_PATTERN = r"^([01]?[0-9]|2[0-3]):[0-5][0-9](:00)?$"
CLOCK_OUT_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


def _clock(value: object) -> object:
    if isinstance(value, time):
        return value
    match = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError("must be a 24-hour local time HH:MM (no seconds, no UTC offset)")
    return time(int(match[1]), int(match[2]))


ClockTime = Annotated[
    time,
    Strict(False),
    BeforeValidator(_clock),
    WithJsonSchema({"type": "string", "pattern": CLOCK_PATTERN, "examples": ["21:00"]}),
]
ClockTimeOut = Annotated[
    time,
    PlainSerializer(lambda t: f"{t.hour:02d}:{t.minute:02d}", return_type=str),
    WithJsonSchema({"type": "string", "pattern": CLOCK_OUT_PATTERN, "examples": ["21:00"]}),
]
