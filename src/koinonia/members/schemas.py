from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import EmailStr, Field

from koinonia.kit.schemas import In, Name, OptionalName, Out, Phone, not_null

Consent = Literal["opted_in", "opted_out"]


class MemberIn(In):
    first_name: Name
    last_name: OptionalName = ""
    phone: Phone = Field(description="Any common format; stored as E.164. Unique in the church.")
    email: EmailStr | None = None


class MemberCreate(MemberIn):
    consent: Consent = Field("opted_in", description="Recorded with the time and source `admin`.")


class MemberPatch(In):
    first_name: Name | None = None
    last_name: OptionalName | None = None
    phone: Phone | None = Field(None, description="Re-normalised to E.164; unique in the church.")
    email: EmailStr | None = Field(None, description="null clears it.")
    consent: Consent | None = Field(
        None, description="A change records the time and source `admin`."
    )

    _not_null = not_null("first_name", "last_name", "phone", "consent")


class MemberOut(Out):
    id: int
    first_name: str
    last_name: str
    phone: str
    email: str | None
    consent: str
    consent_changed_at: datetime | None
    consent_source: str | None = Field(
        description="How consent last changed: admin, import, keyword..."
    )
    created_at: datetime


class MemberGroup(Out):
    id: int
    name: str
    branch_id: int


class MemberDetail(MemberOut):
    groups: list[MemberGroup] = Field(description="Groups the member belongs to, by id.")
