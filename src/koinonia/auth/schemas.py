from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from koinonia.kit.schemas import Email, In, Name, OptionalName, Out, Phone, TimeZone, Title

Password = Annotated[str, StringConstraints(min_length=10, max_length=128)]


class RegisterIn(In):
    church_name: Title
    contact_email: Email | None = Field(None, description="Defaults to the admin's email.")
    timezone: TimeZone = "America/New_York"
    sms_number: Phone | None = Field(None, description="The church's texting number (E.164).")
    email: Email = Field(description="The PRIMARY admin's login.")
    password: Password
    first_name: Name
    last_name: OptionalName = ""


class LoginIn(In):
    email: Email
    password: Annotated[str, StringConstraints(min_length=1, max_length=128)]


class RefreshIn(In):
    refresh_token: str | None = Field(
        None, description="Or send it as `Authorization: Bearer <refresh token>`."
    )


class TokenPair(Out):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class MeOut(Out):
    admin_id: int
    church_id: int
    email: str
    role: str
    church_name: str
    plan: str
    subscription_status: str
