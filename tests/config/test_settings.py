"""Settings: production refuses development secrets (one line naming the setting), secrets are
never shown, and the public URL is normalised once."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from typer.testing import CliRunner

from koinonia import cli
from koinonia.config import (
    DEV_JWT_SECRET,
    DEV_TELNYX_API_KEY,
    DEV_TELNYX_PUBLIC_KEY,
    DEV_TWILIO_AUTH_TOKEN,
    Settings,
    get_settings,
)
from koinonia.delivery.dispatcher import status_callback_url
from koinonia.sms.signatures import generate_ed25519_keypair

REAL_JWT = "j" * 40
REAL_TWILIO = "0123456789abcdef0123456789abcdef"
REAL_TELNYX = "KEY0123456789ABCDEF0123456789ABCDEF_abcdefghijklmnopqrstuv"


def production(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "env": "production",
        "jwt_secret": REAL_JWT,
        "twilio_auth_token": REAL_TWILIO,
        "telnyx_api_key": REAL_TELNYX,
        "telnyx_public_key": generate_ed25519_keypair()[1],
        **overrides,
    }
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def refusal(**overrides: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        production(**overrides)
    (error,) = caught.value.errors()
    return str(error["msg"])


def test_production_with_real_secrets_starts() -> None:
    settings = production()
    assert settings.twilio_token == REAL_TWILIO
    assert settings.telnyx_key == REAL_TELNYX


@pytest.mark.parametrize(
    ("setting", "dev_value"),
    [
        ("jwt_secret", DEV_JWT_SECRET),
        ("twilio_auth_token", DEV_TWILIO_AUTH_TOKEN),
        ("telnyx_api_key", DEV_TELNYX_API_KEY),
    ],
)
def test_production_refuses_every_development_default(setting: str, dev_value: str) -> None:
    message = refusal(**{setting: dev_value})
    assert f"KOINONIA_{setting.upper()} is the public development default" in message


def test_production_refuses_the_defaults_when_nothing_is_configured() -> None:
    with pytest.raises(ValidationError, match="KOINONIA_JWT_SECRET"):
        Settings(_env_file=None, env="production", jwt_secret=DEV_JWT_SECRET)  # type: ignore[call-arg]


@pytest.mark.parametrize("setting", ["jwt_secret", "twilio_auth_token", "telnyx_api_key"])
def test_production_refuses_short_secrets(setting: str) -> None:
    assert f"KOINONIA_{setting.upper()} is shorter than 32" in refusal(**{setting: "x" * 31})


def test_an_empty_jwt_secret_is_refused_but_an_unused_provider_may_be_empty() -> None:
    assert "KOINONIA_JWT_SECRET is shorter" in refusal(jwt_secret="")
    settings = production(twilio_auth_token="", telnyx_api_key="")
    # Not configured: nothing is sent through it and its webhooks trust nothing.
    assert settings.twilio_token is None
    assert settings.telnyx_key is None


def test_production_refuses_the_sandbox_telnyx_public_key() -> None:
    message = refusal(telnyx_public_key=DEV_TELNYX_PUBLIC_KEY)
    assert "KOINONIA_TELNYX_PUBLIC_KEY is the sandbox's development key" in message


def test_development_keeps_its_defaults() -> None:
    settings = Settings(_env_file=None, env="dev", jwt_secret=DEV_JWT_SECRET)  # type: ignore[call-arg]
    assert settings.twilio_token == DEV_TWILIO_AUTH_TOKEN
    assert settings.telnyx_key == DEV_TELNYX_API_KEY
    assert settings.telnyx_verify_key == DEV_TELNYX_PUBLIC_KEY


def test_a_production_copy_never_trusts_development_values() -> None:
    # model_copy skips validation: the accessors still refuse the public values.
    copy = get_settings().model_copy(
        update={
            "env": "production",
            "twilio_auth_token": SecretStr(DEV_TWILIO_AUTH_TOKEN),
            "telnyx_api_key": SecretStr(DEV_TELNYX_API_KEY),
            "telnyx_public_key": DEV_TELNYX_PUBLIC_KEY,
        }
    )
    assert (copy.twilio_token, copy.telnyx_key, copy.telnyx_verify_key) == (None, None, None)


def test_secrets_are_never_shown() -> None:
    settings = production()
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in (REAL_JWT, REAL_TWILIO, REAL_TELNYX):
        assert secret not in shown


def test_the_cli_refuses_production_with_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KOINONIA_ENV", "production")
    monkeypatch.setenv("KOINONIA_JWT_SECRET", REAL_JWT)
    monkeypatch.setenv("KOINONIA_TWILIO_AUTH_TOKEN", DEV_TWILIO_AUTH_TOKEN)
    # Settings read afresh from this environment; the suite's cached settings stay untouched.
    monkeypatch.setattr(cli, "get_settings", Settings)
    result = CliRunner().invoke(cli.app, ["migrate"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("configuration error: KOINONIA_TWILIO_AUTH_TOKEN is the public")


def test_a_field_error_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KOINONIA_PUBLIC_URL", "sms.example.org")
    monkeypatch.setattr(cli, "get_settings", Settings)
    result = CliRunner().invoke(cli.app, ["migrate"])
    assert result.exit_code == 2
    assert "configuration error: KOINONIA_PUBLIC_URL: must be an http" in result.output


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("https://sms.example.org/", "https://sms.example.org"),
        ("https://sms.example.org:8443//", "https://sms.example.org:8443"),
        (" https://example.org/koinonia/ ", "https://example.org/koinonia"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
    ],
)
def test_the_public_url_is_stored_without_a_trailing_slash(given: str, stored: str) -> None:
    settings = Settings(_env_file=None, public_url=given)  # type: ignore[call-arg]
    assert settings.public_url == stored
    for provider in ("twilio", "telnyx"):
        url = status_callback_url(settings, provider)
        assert url.startswith(stored + "/api/v1/webhooks/")
        assert "//api" not in url


@pytest.mark.parametrize(
    "bad", ["sms.example.org", "ftp://example.org", "https://", "https://x.org/?a=1", "https://x#y"]
)
def test_a_public_url_providers_cannot_call_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match="public_url"):
        Settings(_env_file=None, public_url=bad)  # type: ignore[call-arg]


async def test_a_provider_without_a_real_credential_sends_nothing_in_production() -> None:
    # The dispatcher refuses to build it (each text is retried as misconfigured, then fails);
    # a real credential builds it. Building providers needs no database: it is never reached.
    from koinonia.db.database import Database
    from koinonia.delivery.dispatcher import Dispatcher

    base = get_settings()
    unreachable = Database.open(base, "postgresql+asyncpg://nobody@127.0.0.1:1/none")
    for token, key in ((DEV_TWILIO_AUTH_TOKEN, DEV_TELNYX_API_KEY), ("", "")):
        settings = base.model_copy(
            update={
                "env": "production",
                "twilio_auth_token": SecretStr(token),
                "telnyx_api_key": SecretStr(key),
            }
        )
        dispatcher = Dispatcher(settings, unreachable)
        try:
            for provider in ("twilio", "telnyx"):
                with pytest.raises(ValueError, match="provider needs"):
                    dispatcher.provider(provider)
        finally:
            await dispatcher.close()
    real = base.model_copy(
        update={
            "env": "production",
            "twilio_auth_token": SecretStr(REAL_TWILIO),
            "telnyx_api_key": SecretStr(REAL_TELNYX),
        }
    )
    dispatcher = Dispatcher(real, unreachable)
    try:
        assert dispatcher.provider("twilio").name == "twilio"
        assert dispatcher.provider("telnyx").name == "telnyx"
    finally:
        await dispatcher.close()
        await unreachable.dispose()
