"""Query and path parameters shared by routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from koinonia.kit.pagination import MAX_LIMIT

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")]
# A search cursor holds a folded full name (up to ~200 characters, 4 UTF-8 bytes each at worst,
# then base64): 2,000 fits every cursor we issue.
Cursor = Annotated[
    str | None, Query(max_length=2000, description="`next_cursor` of the previous page.")
]
# Ids are bigint: anything outside that range cannot exist, and must not reach PostgreSQL.
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
