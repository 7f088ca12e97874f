from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth.context import AuthContext
from koinonia.models import Admin, AuthSession, Church


class AuthRepository:
    """Authentication reads are cross-church by nature (a login names no church): they look
    up one admin by email or one session by id, never a list."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def find_admin_by_email(self, email: str) -> Admin | None:
        stmt = select(Admin).where(func.lower(Admin.email) == email.lower())
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def create_session(
        self, *, session_id: str, admin_id: int, church_id: int, jti: str, expires_at: datetime
    ) -> None:
        await self.session.execute(
            insert(AuthSession).values(
                id=session_id,
                admin_id=admin_id,
                church_id=church_id,
                current_refresh_jti=jti,
                expires_at=expires_at,
            )
        )

    async def rotate(
        self, *, session_id: str, old_jti: str, new_jti: str, expires_at: datetime
    ) -> tuple[int, int] | None:
        """Swap the family's refresh token if `old_jti` is its current one; (admin, church)."""
        stmt = (
            update(AuthSession)
            .where(
                AuthSession.id == session_id,
                AuthSession.current_refresh_jti == old_jti,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > func.now(),
            )
            .values(current_refresh_jti=new_jti, expires_at=expires_at)
            .returning(AuthSession.admin_id, AuthSession.church_id)
        )
        row = (await self.session.execute(stmt)).one_or_none()
        return (row[0], row[1]) if row else None

    async def revoke(self, session_id: str, reason: str) -> bool:
        stmt = (
            update(AuthSession)
            .where(AuthSession.id == session_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=func.now(), revoked_reason=reason)
            .returning(AuthSession.id)
        )
        return (await self.session.execute(stmt)).first() is not None

    async def load_context(self, *, session_id: str, admin_id: int) -> AuthContext | None:
        """One statement per authenticated request: the session is live and the admin exists."""
        stmt = (
            select(
                Admin.id,
                Admin.church_id,
                Admin.role,
                Admin.email,
                Church.name,
                Church.plan,
                Church.subscription_status,
                Church.trial_ends_at,
            )
            .join(AuthSession, AuthSession.admin_id == Admin.id)
            .join(Church, Church.id == Admin.church_id)
            .where(
                AuthSession.id == session_id,
                Admin.id == admin_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > text("now()"),
            )
        )
        row = (await self.session.execute(stmt)).one_or_none()
        if row is None:
            return None
        return AuthContext(
            admin_id=row[0],
            church_id=row[1],
            session_id=session_id,
            role=row[2],
            email=row[3],
            church_name=row[4],
            plan_name=row[5],
            subscription_status=row[6],
            trial_ends_at=row[7],
        )
