from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, status
from fastapi.security import HTTPAuthorizationCredentials

from koinonia.auth import service
from koinonia.auth.deps import Auth, DbSession, SettingsDep, bearer, bearer_token
from koinonia.auth.schemas import LoginIn, MeOut, RefreshIn, RegisterIn, TokenPair
from koinonia.kit.openapi import AUTHENTICATED, errors

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenPair,
    responses=errors({409: "The email, or the SMS number, belongs to an account already."}),
)
async def register(data: RegisterIn, session: DbSession, settings: SettingsDep) -> TokenPair:
    """Create a church (14-day trial, starter limits) and its PRIMARY admin; logs them in."""
    return await service.register(session, settings, data)


@router.post(
    "/login",
    response_model=TokenPair,
    responses=errors(
        {
            401: "Wrong email or password (`invalid_credentials`).",
            429: "Too many failed logins for this email; try again later (`rate_limited`).",
        }
    ),
)
async def login(
    data: LoginIn, request: Request, session: DbSession, settings: SettingsDep
) -> TokenPair:
    """Exchange email + password for an access token (15 min) and a refresh token (7 days).
    Five failures in 15 minutes for one email from one address answer 429 for the window."""
    address = request.client.host if request.client else "unknown"
    return await service.login(session, settings, data, address=address)


@router.post(
    "/refresh",
    response_model=TokenPair,
    responses=errors(
        {
            401: "Not a valid refresh token, its session ended (`session_revoked`), or it was"
            " spent already (`refresh_token_reused`: the whole login is revoked)."
        }
    ),
)
async def refresh(
    session: DbSession,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    data: RefreshIn | None = None,
) -> TokenPair:
    """Rotate: the refresh token is spent and a new pair returned. Presenting a spent refresh
    token again revokes the whole login (every token descended from it)."""
    token = data.refresh_token if data and data.refresh_token else bearer_token(credentials)
    try:
        return await service.refresh(session, settings, token)
    except service.RefreshReused:
        await session.commit()  # the revocation must outlive this failed request
        raise


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=AUTHENTICATED)
async def logout(auth: Auth, session: DbSession) -> None:
    """Revoke this login: its access and refresh tokens stop working at once."""
    await service.logout(session, auth.session_id)


@router.get("/me", response_model=MeOut, responses=AUTHENTICATED)
async def me(auth: Auth) -> MeOut:
    return MeOut(
        admin_id=auth.admin_id,
        church_id=auth.church_id,
        email=auth.email,
        role=auth.role,
        church_name=auth.church_name,
        plan=auth.plan_name,
        subscription_status=auth.subscription_status,
    )
