from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from koinonia.kit.schemas import In, Out, Phone, Title, not_null

Address = Annotated[str, StringConstraints(max_length=500)]
Description = Annotated[str, StringConstraints(max_length=5000)]


class BranchIn(In):
    name: Title
    address: Address | None = None
    phone: Phone | None = None
    description: Description | None = None
    is_active: bool = True


class BranchPatch(In):
    name: Title | None = None
    address: Address | None = None
    phone: Phone | None = None
    description: Description | None = None
    is_active: bool | None = None

    _not_null = not_null("name", "is_active")


class BranchOut(Out):
    id: int
    name: str
    address: str | None
    phone: str | None
    description: str | None
    is_active: bool
    created_at: datetime
    group_count: int = Field(0, description="Groups in this branch.")
    member_count: int = Field(
        0, description="Distinct members belonging to at least one group of this branch."
    )
