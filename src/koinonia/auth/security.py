"""Password hashing (argon2, off the event loop) and JWT access / refresh tokens."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from koinonia.config import Settings
from koinonia.kit.errors import Unauthorized


@dataclass(frozen=True)
class _Hashing:
    hasher: PasswordHasher
    # Verifying against this keeps the time of a login for an unknown email equal to a wrong
    # password's.
    dummy_hash: str


def _hashing(hasher: PasswordHasher) -> _Hashing:
    return _Hashing(hasher, hasher.hash("not-a-real-password"))


_hashing_now = _hashing(PasswordHasher())


def use_password_hasher(hasher: PasswordHasher) -> PasswordHasher:
    """Hash and verify passwords with `hasher` from now on (argon2's production parameters
    unless changed: a test whose subject is not the cost may lower it); returns the one it
    replaces."""
    global _hashing_now
    previous, _hashing_now = _hashing_now.hasher, _hashing(hasher)
    return previous


async def hash_password(password: str) -> str:
    return await anyio.to_thread.run_sync(_hashing_now.hasher.hash, password)


async def verify_password(password_hash: str | None, password: str) -> bool:
    hashing = _hashing_now

    def _verify() -> bool:
        try:
            valid = hashing.hasher.verify(password_hash or hashing.dummy_hash, password)
            return valid and bool(password_hash)
        except (VerificationError, InvalidHashError):
            return False

    return await anyio.to_thread.run_sync(_verify)


def new_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class AccessClaims:
    admin_id: int
    church_id: int
    session_id: str
    expires_at: float  # the token's `exp`, Unix seconds


def _encode(settings: Settings, claims: dict[str, Any], ttl_s: int) -> str:
    now = datetime.now(UTC)
    payload = {**claims, "iat": now, "exp": now + timedelta(seconds=ttl_s)}
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm="HS256")


def access_token(settings: Settings, *, admin_id: int, church_id: int, session_id: str) -> str:
    claims = {"typ": "access", "sub": str(admin_id), "cid": church_id, "sid": session_id}
    return _encode(settings, claims, settings.access_token_ttl_s)


def refresh_token(settings: Settings, *, session_id: str, jti: str) -> str:
    claims = {"typ": "refresh", "sid": session_id, "jti": jti}
    return _encode(settings, claims, settings.refresh_token_ttl_s)


def _decode(settings: Settings, token: str, typ: str) -> dict[str, Any]:
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            options={"require": ["exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired", code="token_expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token", code="invalid_token") from None
    if payload.get("typ") != typ:
        raise Unauthorized(f"not an {typ} token", code="invalid_token")
    return payload


def decode_access(settings: Settings, token: str) -> AccessClaims:
    p = _decode(settings, token, "access")
    try:
        return AccessClaims(int(p["sub"]), int(p["cid"]), str(p["sid"]), float(p["exp"]))
    except (KeyError, ValueError, TypeError):
        raise Unauthorized("invalid token", code="invalid_token") from None


def decode_refresh(settings: Settings, token: str) -> tuple[str, str]:
    p = _decode(settings, token, "refresh")
    try:
        return str(uuid.UUID(str(p["sid"]))), str(uuid.UUID(str(p["jti"])))
    except (KeyError, ValueError):
        raise Unauthorized("invalid token", code="invalid_token") from None
