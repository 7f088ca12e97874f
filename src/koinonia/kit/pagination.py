"""Keyset cursors: opaque, URL-safe tokens holding the sort key of the last row of a page.

Every cursor-paginated list declares a `CursorSpec`: which list it pages (its scope, plus the
query it pages for, e.g. a search's `q` or the message whose recipients are listed) and the
typed fields of its sort key. `CursorSpec.decode` is the one validator: a cursor is accepted
only when it is byte for byte what `CursorSpec.encode` would issue for this list and query,
and every field is in range for the column it is compared with. Anything else (not base64,
not canonical JSON, a trailing NUL, wrong arity or types, a NUL inside a string, an id beyond
bigint, a time PostgreSQL or Python cannot represent, a cursor of another list or another
query) is a 422 on `cursor`, never a 500 and never a silently misread page.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from koinonia.kit.errors import ValidationFailed

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
BIGINT_MAX = 2**63 - 1
MALFORMED = "malformed cursor"


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- fields ------------------------------------------------------------------------------------


class CursorField(Protocol):
    def parse(self, value: object) -> Any:
        """`value` as read from the cursor's JSON, converted for the query; ValueError if it
        is not what this field's encoder writes or cannot be compared with its column."""


@dataclass(frozen=True, slots=True)
class IntField:
    """An integer within [low, high] (a bigint column: anything beyond cannot be bound)."""

    low: int = 1
    high: int = BIGINT_MAX

    def parse(self, value: object) -> int:
        if type(value) is not int or not self.low <= value <= self.high:
            raise ValueError
        return value


@dataclass(frozen=True, slots=True)
class OneOf:
    """One of a set of integers (e.g. the search tiers that exist for this query)."""

    values: frozenset[int]

    def parse(self, value: object) -> int:
        if type(value) is not int or value not in self.values:
            raise ValueError
        return value


@dataclass(frozen=True, slots=True)
class TextField:
    """A string PostgreSQL can compare: no NUL (text cannot hold it), bounded length."""

    max_length: int = 400

    def parse(self, value: object) -> str:
        if type(value) is not str or len(value) > self.max_length or "\x00" in value:
            raise ValueError
        return value


@dataclass(frozen=True, slots=True)
class TimestampField:
    """A UTC datetime written by `datetime.isoformat()` (the database hands timestamps out in
    UTC, so every cursor we issue says +00:00; another offset names a cursor we never wrote)."""

    def parse(self, value: object) -> datetime:
        if type(value) is not str:
            raise ValueError
        parsed = datetime.fromisoformat(value)
        # fromisoformat is lenient (it takes any separator, NUL included): only the exact text
        # the encoder writes is a cursor's time.
        if parsed.utcoffset() != timedelta(0) or parsed.isoformat() != value:
            raise ValueError
        return parsed.astimezone(UTC)


ID = IntField()
TIMESTAMP = TimestampField()


# --- cursors -----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class CursorSpec:
    """The cursor of one list: `scope` names the list, `fields` type its sort key."""

    scope: str
    fields: tuple[CursorField, ...]

    def _tag(self, query: str) -> int:
        # Not a secret (a forged cursor is still validated field by field): it only makes a
        # cursor of another list, or of the same list for another query, a clear 422 instead
        # of a page that starts somewhere meaningless.
        digest = hashlib.blake2b(f"{self.scope}\x00{query}".encode(), digest_size=4).digest()
        return int.from_bytes(digest, "big")

    def encode(self, key: Sequence[Any], *, query: str = "") -> str:
        return _b64(orjson.dumps([self._tag(query), *(_plain(k) for k in key)]))

    def decode(self, cursor: str | None, *, query: str = "") -> tuple[Any, ...] | None:
        """The sort key inside `cursor`, or None for the first page (no cursor)."""
        if not cursor:
            return None
        try:
            raw = base64.urlsafe_b64decode(cursor.encode("ascii") + b"=" * (-len(cursor) % 4))
            # Canonical only: the b64 decoder skips stray characters and JSON allows
            # whitespace, so re-encoding must give back exactly the cursor received.
            if _b64(raw) != cursor:
                raise ValueError
            key = orjson.loads(raw)
            if not isinstance(key, list) or orjson.dumps(key) != raw:
                raise ValueError
            if len(key) != len(self.fields) + 1 or key[0] != self._tag(query):
                raise ValueError
            return tuple(f.parse(v) for f, v in zip(self.fields, key[1:], strict=True))
        except (ValueError, TypeError, OverflowError):  # JSONDecodeError is a ValueError
            raise ValidationFailed.field("cursor", MALFORMED) from None

    def page(
        self,
        rows: Sequence[T],
        limit: int,
        key: Callable[[T], Sequence[Any]],
        *,
        query: str = "",
    ) -> tuple[list[T], str | None]:
        """Rows were fetched with LIMIT limit+1: trim the extra one and make the next cursor."""
        if len(rows) > limit:
            items = list(rows[:limit])
            return items, self.encode(key(items[-1]), query=query)
        return list(rows), None


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A page serialised as read from the database, for hot lists: the route's response_model
    documents it, and for database types (ints, strings, UTC datetimes, nulls) orjson writes
    what pydantic would (UTC as `Z`), without validating rows the database already typed."""
    body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)
    return Response(content=body, media_type="application/json")
