"""Who is calling: the authenticated admin and what we know of their church, loaded once."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from koinonia.billing.plans import Plan, effective_plan


@dataclass(frozen=True, slots=True)
class AuthContext:
    admin_id: int
    church_id: int
    session_id: str
    role: str
    email: str
    church_name: str
    plan_name: str
    subscription_status: str
    trial_ends_at: datetime | None

    @property
    def is_primary(self) -> bool:
        return self.role == "PRIMARY"

    @property
    def plan(self) -> Plan:
        return effective_plan(self.plan_name, self.subscription_status)
