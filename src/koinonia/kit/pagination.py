"""Keyset cursors: opaque, URL-safe tokens holding the sort key of the last row of a page."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel, Field
from starlette.responses import Response

from koinonia.kit.errors import ValidationFailed

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200
_BIGINT_MIN, _BIGINT_MAX = -(2**63), 2**63 - 1


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def encode_cursor(key: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([_plain(k) for k in key])).decode().rstrip("=")


def decode_cursor(cursor: str | None, *types: type) -> tuple[Any, ...] | None:
    """The sort key inside `cursor` converted to `types`, or None for the first page.

    Anything malformed (not base64, not JSON, wrong arity or types) is a 422 on `cursor`.
    """
    if not cursor:
        return None
    try:
        key = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(key, list) or len(key) != len(types):
            raise ValueError
        out: list[Any] = []
        for value, kind in zip(key, types, strict=True):
            if kind is datetime:
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError
                # In UTC, as the database compares it; OverflowError when it cannot be.
                out.append(parsed.astimezone(UTC))
            elif kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append(float(value))
            elif kind is int and type(value) is int and not _BIGINT_MIN <= value <= _BIGINT_MAX:
                raise ValueError  # out of bigint range: PostgreSQL would reject it with a 500
            elif type(value) is kind:
                out.append(value)
            else:
                raise ValueError
        return tuple(out)
    except (ValueError, TypeError, OverflowError, orjson.JSONDecodeError):
        raise ValidationFailed.field("cursor", "malformed cursor") from None


def page_of(
    rows: Sequence[T], limit: int, key: Callable[[T], Sequence[Any]]
) -> tuple[list[T], str | None]:
    """Rows were fetched with LIMIT limit+1: trim the extra one and make the next cursor."""
    if len(rows) > limit:
        items = list(rows[:limit])
        return items, encode_cursor(key(items[-1]))
    return list(rows), None


def page_response(items: list[dict[str, Any]], next_cursor: str | None) -> Response:
    """A page serialised as read from the database, for hot lists: the route's response_model
    documents it, and for database types (ints, strings, UTC datetimes, nulls) orjson writes
    what pydantic would (UTC as `Z`), without validating rows the database already typed."""
    body = orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)
    return Response(content=body, media_type="application/json")
