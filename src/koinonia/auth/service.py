from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth import context_cache, security
from koinonia.auth.repository import AuthRepository
from koinonia.auth.schemas import LoginIn, RegisterIn, TokenPair
from koinonia.churches.repository import AdminRepository, create_church
from koinonia.config import Settings
from koinonia.kit.db import constraint_of
from koinonia.kit.errors import Conflict, RateLimited, Unauthorized
from koinonia.kit.store import StoreUnavailable, get_store, local_store

TRIAL_DAYS = 14


async def _issue(
    repo: AuthRepository, settings: Settings, *, admin_id: int, church_id: int
) -> TokenPair:
    session_id, jti = security.new_id(), security.new_id()
    expires = datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s)
    await repo.create_session(
        session_id=session_id, admin_id=admin_id, church_id=church_id, jti=jti, expires_at=expires
    )
    return TokenPair(
        access_token=security.access_token(
            settings, admin_id=admin_id, church_id=church_id, session_id=session_id
        ),
        refresh_token=security.refresh_token(settings, session_id=session_id, jti=jti),
        expires_in=settings.access_token_ttl_s,
    )


async def register(session: AsyncSession, settings: Settings, data: RegisterIn) -> TokenPair:
    password_hash = await security.hash_password(data.password)
    try:
        church = await create_church(
            session,
            {
                "name": data.church_name,
                "contact_email": str(data.contact_email or data.email),
                "timezone": data.timezone,
                "sms_number": data.sms_number,
                "sms_provider": settings.default_provider,
                "plan": "starter",
                "subscription_status": "trial",
                "trial_ends_at": datetime.now(UTC) + timedelta(days=TRIAL_DAYS),
            },
        )
        admin = await AdminRepository(session, church_id=church.id).create(
            {
                "email": str(data.email),
                "password_hash": password_hash,
                "first_name": data.first_name,
                "last_name": data.last_name,
                "role": "PRIMARY",
            }
        )
    except IntegrityError as exc:
        if constraint_of(exc) == "uq_admins_email_lower":
            raise Conflict("an account with this email exists", fields={"email": "taken"}) from None
        if constraint_of(exc) == "uq_churches_sms_number":
            raise Conflict(
                "this SMS number belongs to another church", fields={"sms_number": "taken"}
            ) from None
        raise
    return await _issue(AuthRepository(session), settings, admin_id=admin.id, church_id=church.id)


# An account attacked from many addresses is also held, at a higher bar so one attacker
# cannot lock a pastor out from everywhere with five guesses.
ACCOUNT_FAILURE_FACTOR = 4


async def login(
    session: AsyncSession, settings: Settings, data: LoginIn, *, address: str
) -> TokenPair:
    """Five failures for one account from one address in 15 minutes lock that pair out for the
    window; twenty for one account from anywhere lock the account out for the window.

    Each attempt is counted before its password is checked, in one atomic step with the check
    (`Store.reserve`): concurrent attempts cannot all pass a check made before any of them
    counted, so at most the limit of passwords is ever checked. A successful login takes its
    attempt back (and clears the address's failures).

    Attempts count in this process too (`local_store()`), always, and a login must pass both:
    across processes the shared store limits; within one process the limit holds whatever the
    shared store does (down, hung, a timeout under load), so the throttle never stops limiting.
    While the shared store is unavailable an attacker gets at most the limit per API process."""
    email = str(data.email).lower()
    pair_key, account_key = f"login-fail:{email}:{address}", f"login-fail:{email}"
    limits = [
        (pair_key, settings.login_max_failures),
        (account_key, settings.login_max_failures * ACCOUNT_FAILURE_FACTOR),
    ]
    keys = [key for key, _ in limits]
    local, shared = local_store(), get_store()
    counted_in = [local]
    refused = await local.reserve(limits, settings.login_window_s)
    if not refused and shared is not local:
        try:
            refused = await shared.reserve(limits, settings.login_window_s)
        except StoreUnavailable:
            pass  # the process's count decides alone
        else:
            if refused:
                await local.release(keys)  # refused attempts count nowhere
            else:
                counted_in.append(shared)
    if refused:
        raise RateLimited(
            "too many failed logins; try again later", retry_after=settings.login_window_s
        )
    repo = AuthRepository(session)
    admin = await repo.find_admin_by_email(str(data.email))
    ok = await security.verify_password(admin.password_hash if admin else None, data.password)
    if admin is None or not ok:
        raise Unauthorized("wrong email or password", code="invalid_credentials")
    for store in counted_in:
        # If the store cannot take it back, the attempt stays counted: a limit errs to holding.
        with contextlib.suppress(StoreUnavailable):
            await store.release([account_key], clear=[pair_key])
    return await _issue(repo, settings, admin_id=admin.id, church_id=admin.church_id)


async def refresh(session: AsyncSession, settings: Settings, token: str) -> TokenPair:
    session_id, jti = security.decode_refresh(settings, token)
    repo = AuthRepository(session)
    new_jti = security.new_id()
    expires = datetime.now(UTC) + timedelta(seconds=settings.refresh_token_ttl_s)
    owner = await repo.rotate(
        session_id=session_id, old_jti=jti, new_jti=new_jti, expires_at=expires
    )
    if owner is None:
        # A valid signature on a token that is no longer current: it was stolen or replayed.
        # Revoke the whole family so neither holder can go on; the revocation must survive the
        # 401, so it is committed by the router before the error is raised.
        if await repo.revoke(session_id, "refresh_reuse"):
            context_cache.end_after_commit(session, [session_id])
            raise RefreshReused()
        raise Unauthorized("session ended; log in again", code="session_revoked")
    admin_id, church_id = owner
    return TokenPair(
        access_token=security.access_token(
            settings, admin_id=admin_id, church_id=church_id, session_id=session_id
        ),
        refresh_token=security.refresh_token(settings, session_id=session_id, jti=new_jti),
        expires_in=settings.access_token_ttl_s,
    )


class RefreshReused(Unauthorized):
    code = "refresh_token_reused"

    def __init__(self) -> None:
        super().__init__("refresh token was already used; every session of this login ended")


async def logout(session: AsyncSession, session_id: str) -> None:
    await AuthRepository(session).revoke(session_id, "logout")
    # Even when it had ended already (a concurrent logout): the mark is idempotent and true.
    context_cache.end_after_commit(session, [session_id])
