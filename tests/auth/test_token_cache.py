"""auth.deps.verified_claims: a verified token is not verified again, but never outlives its
expiry or the secret that signed it."""

from __future__ import annotations

import asyncio

import jwt
import pytest
from pydantic import SecretStr

from koinonia.auth import deps, security
from koinonia.config import get_settings
from koinonia.kit.errors import Unauthorized


def _token(ttl_s: int = 900, secret: str | None = None) -> str:
    settings = get_settings()
    if secret is not None:
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secret)})
    return security.access_token(
        settings.model_copy(update={"access_token_ttl_s": ttl_s}),
        admin_id=7,
        church_id=3,
        session_id="00000000-0000-0000-0000-000000000001",
    )


def test_a_verified_token_is_not_decoded_again(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = get_settings()
    token = _token()
    first = deps.verified_claims(settings, token)
    assert (first.admin_id, first.church_id, first.session_id) == (
        7,
        3,
        "00000000-0000-0000-0000-000000000001",
    )

    def no_decode(*args: object) -> None:
        raise AssertionError("decoded again")

    monkeypatch.setattr(security, "decode_access", no_decode)
    assert deps.verified_claims(settings, token) is first


async def test_a_cached_token_still_expires() -> None:
    settings = get_settings()
    token = _token(ttl_s=1)
    deps.verified_claims(settings, token)
    await asyncio.sleep(1.1)
    with pytest.raises(Unauthorized) as err:
        deps.verified_claims(settings, token)
    assert err.value.code == "token_expired"


def test_a_token_of_another_secret_is_refused_even_when_cached() -> None:
    settings = get_settings()
    token = _token()
    deps.verified_claims(settings, token)
    rotated = settings.model_copy(
        update={"jwt_secret": SecretStr("another-secret-of-at-least-32-bytes!!")}
    )
    with pytest.raises(Unauthorized) as err:
        deps.verified_claims(rotated, token)
    assert err.value.code == "invalid_token"


def test_forged_and_garbage_tokens_are_never_cached() -> None:
    settings = get_settings()
    forged = _token(secret="not-our-secret-but-32-bytes-long!!!!")
    for bad in (
        forged,
        "garbage",
        jwt.encode({"typ": "access"}, settings.jwt_secret.get_secret_value()),
    ):
        with pytest.raises(Unauthorized):
            deps.verified_claims(settings, bad)
        assert bad not in deps._verified
