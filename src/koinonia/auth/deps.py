"""FastAPI dependencies: the app's database, the request's session, settings and authenticated
admin."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.ext.asyncio import AsyncSession

from koinonia.auth import context_cache, security
from koinonia.auth.context import AuthContext
from koinonia.auth.repository import AuthRepository
from koinonia.config import Settings, get_settings
from koinonia.db.database import Database
from koinonia.db.session import SessionSource, given
from koinonia.kit import cache
from koinonia.kit.errors import Forbidden, RateLimited, Unauthorized
from koinonia.kit.store import StoreUnavailable, get_store, local_store

bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


async def settings() -> Settings:
    """Async on purpose: a sync dependency costs a thread-pool hop on every request."""
    return get_settings()


def database_of(app: Any) -> Database:
    """The app's database (`create_app` keeps it on `app.state`)."""
    database: Database = app.state.database
    return database


async def request_session(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (`Database.session()`), ended before the response starts."""
    async with database_of(request.app).session() as session:
        yield session


DbSession = Annotated[AsyncSession, Depends(request_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(settings)]


def read_only(request: Request, session: AsyncSession) -> AsyncSession:
    """The request's session (`DbSession`), its statements run without BEGIN / COMMIT from now
    on (`Database.read_only`): the one way a request asks for reads only, as a dependency
    (`ReadDbSession`) or, when the endpoint decides per request, from the router. For reads
    with no locks and no transaction-local settings; saves two database round trips."""
    return database_of(request.app).read_only(session)


async def read_session(request: Request, session: DbSession) -> AsyncSession:
    """`DbSession`, read only (`read_only`)."""
    return read_only(request, session)


ReadDbSession = Annotated[AsyncSession, Depends(read_session)]


# Verified access tokens: a client sends the same token for up to its whole life (15 minutes), and
# checking its HMAC signature and claims again cost ~25 µs per request. An entry is used only
# before the token's own expiry and under the secret that verified it; it proves only that the
# token is genuine, so revocation (the session lookup below) is checked on every request.
_TOKEN_CACHE_MAX = 10_000
_verified: dict[str, tuple[str, float, security.AccessClaims]] = {}


def verified_claims(settings: Settings, token: str) -> security.AccessClaims:
    secret = settings.jwt_secret.get_secret_value()
    hit = _verified.get(token)
    if hit is not None and hit[0] == secret and time.time() < hit[1]:
        return hit[2]
    claims = security.decode_access(settings, token)  # raises Unauthorized
    if len(_verified) >= _TOKEN_CACHE_MAX:
        _verified.clear()
    _verified[token] = (secret, claims.expires_at, claims)
    return claims


def bearer_token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise Unauthorized("missing bearer token", code="not_authenticated")
    return credentials.credentials


def bearer_token_of(authorization: str | None) -> str | None:
    """The token of an `Authorization` header value, read as `bearer` (HTTPBearer) reads it
    (for the hot reads, which skip building its pydantic credentials model)."""
    scheme, credentials = get_authorization_scheme_param(authorization)
    if not (authorization and scheme and credentials) or scheme.lower() != "bearer":
        return None
    return credentials


async def current_auth(
    request: Request,
    session: DbSession,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> AuthContext:
    ctx = await authenticate(settings, bearer_token(credentials), given(session))
    request.state.church_id = ctx.church_id
    return ctx


async def authenticate(
    settings: Settings, token: str | None, open_session: SessionSource
) -> AuthContext:
    """Who is calling, checked as every authenticated request is (the FastAPI dependency
    `current_auth` and the hot reads of `koinonia.hot_reads` both come here): the token's
    signature and expiry, the session not ended (the session cache's 'ended' marks, else the
    database), the church's request counted against its rate limit, and the church's cache
    version read for the request's cached reads. `open_session` is called only when the
    session cache cannot answer."""
    if not token:
        raise Unauthorized("missing bearer token", code="not_authenticated")
    claims = verified_claims(settings, token)
    # Who the session is, the church's cache version (for cached reads later in the request)
    # and its request count, in one store round trip. (The token's church: a genuine token,
    # even of an ended session, counts for its church.)
    store = get_store()
    window = _church_window_key(claims.church_id)
    try:
        (raw, version), used = await store.get_many_and_incr(
            [context_cache.key(claims.session_id), cache.version_key(claims.church_id)], window, 61
        )
        available = True
    except StoreUnavailable:
        # The limit keeps counting, in this process; the session comes from the database.
        raw = version = None
        used = await local_store().incr(window, 61)
        available = False
    cache.use_request_version(claims.church_id, version, available=available)
    if context_cache.is_ended(raw):
        raise Unauthorized("session ended; log in again", code="session_revoked")
    ctx = context_cache.decode(raw)
    if ctx is not None and not context_cache.trusted(store, settings.auth_cache_ttl_s):
        ctx = None
    if ctx is None or ctx.admin_id != claims.admin_id:
        ctx = await AuthRepository(await open_session()).load_context(
            session_id=claims.session_id, admin_id=claims.admin_id
        )
        if ctx is not None and available:
            await context_cache.put(ctx, settings.auth_cache_ttl_s)
    if ctx is None or ctx.church_id != claims.church_id:
        raise Unauthorized("session ended; log in again", code="session_revoked")
    if used > settings.church_rate_limit_per_min:
        raise RateLimited(
            "too many requests for this church; slow down", retry_after=60 - int(time.time() % 60)
        )
    return ctx


def _church_window_key(church_id: int) -> str:
    """The church's request counter: a fixed one-minute window, shared across processes
    through the store. Counted before it is checked (INCR, then compare), so concurrent requests
    cannot all pass one check. While the store is unavailable each process counts on its own
    against the same limit: a church gets at most its limit per process, never unlimited."""
    return f"rl:church:{church_id}:{int(time.time() // 60)}"


async def primary_admin(auth: Annotated[AuthContext, Depends(current_auth)]) -> AuthContext:
    if not auth.is_primary:
        raise Forbidden("only the church's primary admin can do this", code="primary_only")
    return auth


Auth = Annotated[AuthContext, Depends(current_auth)]
PrimaryAuth = Annotated[AuthContext, Depends(primary_admin)]
