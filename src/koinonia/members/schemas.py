from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from koinonia.kit.schemas import Email, In, Name, OptionalName, Out, Phone, not_null

Consent = Literal["opted_in", "opted_out"]


class MemberIn(In):
    first_name: Name
    last_name: OptionalName = ""
    phone: Phone = Field(description="Any common format; stored as E.164. Unique in the church.")
    email: Email | None = None


class MemberCreate(MemberIn):
    consent: Consent = Field("opted_in", description="Recorded with the time and source `admin`.")


class MemberPatch(In):
    first_name: Name | None = None
    last_name: OptionalName | None = None
    phone: Phone | None = Field(None, description="Re-normalised to E.164; unique in the church.")
    email: Email | None = Field(None, description="null clears it.")
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


class ImportRowError(Out):
    row: int = Field(description="Row number as a spreadsheet shows it (the header is row 1).")
    column: str | None
    value: str | None
    reason: str
    severity: Literal["error", "warning"] = Field(
        description="error: the row was not imported; warning: imported without that value."
    )


class ImportResult(Out):
    total_rows: int = Field(description="Data rows in the file (blank lines excluded).")
    valid_rows: int
    created: int = Field(description="New members created.")
    already_members: int = Field(description="Rows whose phone was already a member: reused.")
    added_to_group: int
    already_in_group: int
    rejected: int = Field(description="Rows not imported; see `errors`.")
    warnings: int
    encoding: str = Field(description="Detected file encoding.")
    errors: list[ImportRowError]
