from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import Field, StringConstraints

from koinonia.kit.schemas import In, Out, Title, not_null
from koinonia.members.schemas import MemberIn, MemberOut

BIGINT_MAX = 2**63 - 1
RefId = Annotated[int, Field(ge=1, le=BIGINT_MAX)]
Description = Annotated[str, StringConstraints(max_length=5000)]
# Three GSM-7 segments, so a welcome text stays cheap.
WelcomeText = Annotated[str, StringConstraints(max_length=480)]
MAX_MEMBER_IDS = 1000


class GroupIn(In):
    branch_id: RefId = Field(description="A branch of this church.")
    name: Title = Field(description="Unique within the branch.")
    description: Description | None = None
    welcome_enabled: bool = False
    welcome_text: WelcomeText | None = Field(
        None,
        description='Sent ~60 s after joining; default "Welcome to {group_name}!". With the '
        "group name and each member's names filled in, it must fit the church's provider "
        "(Twilio: 1,600 characters; Telnyx: 10 parts), else 422 on `welcome_text`.",
    )


class GroupPatch(In):
    branch_id: RefId | None = Field(None, description="Move the group to another branch.")
    name: Title | None = None
    description: Description | None = None
    welcome_enabled: bool | None = None
    welcome_text: WelcomeText | None = None

    _not_null = not_null("branch_id", "name", "welcome_enabled")


class GroupOut(Out):
    id: int
    branch_id: int
    name: str
    description: str | None
    welcome_enabled: bool
    welcome_text: str | None
    created_at: datetime
    member_count: int = Field(0, description="Members in this group.")


class GroupMemberOut(MemberOut):
    joined_at: datetime


class GroupMembersAdd(In):
    """Either `member_ids` (existing members) or `member` (found by phone, or created)."""

    member_ids: list[RefId] | None = Field(
        None, min_length=1, max_length=MAX_MEMBER_IDS, description="Up to 1,000 member ids."
    )
    member: MemberIn | None = Field(
        None, description="Reuses the church's member with this phone, or creates one."
    )


class GroupMembersAdded(Out):
    added: int = Field(description="New memberships.")
    already_in_group: int
    unknown_ids: list[int] = Field(description="Ids that are not members of this church.")
    member: MemberOut | None = Field(None, description="With `member`: the member added.")
    member_created: bool | None = Field(
        None, description="With `member`: whether the member was created."
    )
