"""All tables; importing this module registers every one with the metadata (Alembic sees all)."""

from koinonia.models.admin import Admin, AuthSession
from koinonia.models.base import Base
from koinonia.models.branch import Branch
from koinonia.models.branch_member import BranchMemberCount
from koinonia.models.church import Church
from koinonia.models.conversation import Conversation, ConversationMessage, InboundAutoReply
from koinonia.models.group import Group, GroupMember
from koinonia.models.member import Member
from koinonia.models.message import (
    Message,
    MessageRecipient,
    MessageStatusCount,
    PendingStatusReport,
)
from koinonia.models.recurring import RecurringMessage
from koinonia.models.template import Template
from koinonia.models.usage import Usage

__all__ = [
    "Admin",
    "AuthSession",
    "Base",
    "Branch",
    "BranchMemberCount",
    "Church",
    "Conversation",
    "ConversationMessage",
    "Group",
    "GroupMember",
    "InboundAutoReply",
    "Member",
    "Message",
    "MessageRecipient",
    "MessageStatusCount",
    "PendingStatusReport",
    "RecurringMessage",
    "Template",
    "Usage",
]
