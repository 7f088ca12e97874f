"""Settings from the environment (`KOINONIA_*`, plus `DATABASE_URL` and `REDIS_URL`) and `.env`.

Secrets are `SecretStr` (never printed in a repr or a log); read them with
`.get_secret_value()`. Development defaults let `make run` work with nothing configured; with
`KOINONIA_ENV=production` the settings refuse to load (one line naming the setting) while any
secret is a development default or shorter than `MIN_SECRET_CHARS`. A provider credential may be
set empty in production: that provider is then not configured, and a church using it is neither
sent for nor trusted by its webhooks (both fail closed).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["sandbox", "twilio", "telnyx"]

# Development values: public (they are in this repository), so never trusted in production.
# The SMS sandbox (src/koinonia_sandbox, dev tooling) accepts these credentials by default.
DEV_JWT_SECRET = "dev-only-secret-change-me-in-production-32b"
DEV_TWILIO_ACCOUNT_SID = "AC00000000000000000000000000000000"
DEV_TWILIO_AUTH_TOKEN = "sandbox-auth-token"
DEV_TELNYX_API_KEY = "KEYsandbox"
# The public half of the sandbox's Telnyx webhook signing key. Its private seed is published
# in the sandbox (so an API started separately verifies the sandbox's webhooks with nothing
# configured), hence trusted in dev and test only; a test checks the seed yields this key.
DEV_TELNYX_PUBLIC_KEY = "Ta+9ksWP9f43ylAJi9DgXw88w0jU3gTIUJYabvWwMCg="
# HS256 wants a key of at least its 256-bit output; Twilio auth tokens are 32 hex characters
# and Telnyx API keys longer, so a shorter value is a typo or a placeholder.
MIN_SECRET_CHARS = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="KOINONIA_", env_file=".env", extra="ignore", frozen=True
    )

    env: Literal["dev", "test", "production"] = "dev"
    # Database: embedded PostgreSQL under `data_dir` unless DATABASE_URL is set.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "KOINONIA_DATABASE_URL")
    )
    read_replica_url: str | None = None
    data_dir: Path = Path(".koinonia")
    db_name: str = "koinonia"
    pool_size: int = Field(default=30, ge=1, le=500)
    pool_max_overflow: int = Field(default=0, ge=0)
    pool_timeout_s: float = Field(default=45.0, gt=0)
    # PgBouncer in transaction mode needs asyncpg's prepared-statement cache off (set to 0).
    statement_cache_size: int = Field(default=500, ge=0)
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "KOINONIA_REDIS_URL")
    )
    # Prefix of every Redis key, so several deployments (or test runs) can share one Redis.
    store_prefix: str = "koinonia:"

    # HTTP
    host: str = "127.0.0.1"
    port: int = 8000
    # How providers reach our webhooks: scheme://host[:port][/prefix], stored without a trailing
    # "/" (see `_public_url`), so callback URLs are `{public_url}/api/v1/...`.
    public_url: str = "http://127.0.0.1:8000"
    max_body_bytes: int = 1_048_576
    # Requests processed at once per process; the rest queue (see kit.http.RequestPipeline).
    max_requests_in_flight: int = Field(default=64, ge=1)
    # Carriers' webhooks and the unauthenticated auth endpoints (login, register, refresh) are
    # admitted by gates of their own, so neither user traffic nor a login flood delays them.
    max_webhooks_in_flight: int = Field(default=32, ge=1)
    max_public_in_flight: int = Field(default=16, ge=1)
    max_upload_bytes: int = 20 * 1_048_576
    # Slow clients (kit.server, kit.http): a request's headers must arrive within
    # header_timeout_s (else the connection is closed), its body within body_timeout_s
    # (upload_timeout_s for CSV imports; else 408 and close); an idle connection is closed
    # after keep_alive_timeout_s.
    header_timeout_s: float = Field(default=10.0, gt=0)
    body_timeout_s: float = Field(default=30.0, gt=0)
    upload_timeout_s: float = Field(default=300.0, gt=0)
    keep_alive_timeout_s: int = Field(default=5, ge=1)

    # Auth
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    access_token_ttl_s: int = 15 * 60
    refresh_token_ttl_s: int = 7 * 24 * 3600
    # Who a session is, cached this long (0 = off); logout and revocation clear it at once.
    auth_cache_ttl_s: float = 30.0
    login_max_failures: int = 5
    login_window_s: int = 15 * 60
    church_rate_limit_per_min: int = 6000

    # Phones
    default_region: str = "US"

    # SMS
    default_provider: ProviderName = "sandbox"
    sandbox_url: str = "http://127.0.0.1:8025"
    twilio_api_url: str = "https://api.twilio.com"
    twilio_account_sid: str = DEV_TWILIO_ACCOUNT_SID
    twilio_auth_token: SecretStr = SecretStr(DEV_TWILIO_AUTH_TOKEN)
    telnyx_api_url: str = "https://api.telnyx.com"
    telnyx_api_key: SecretStr = SecretStr(DEV_TELNYX_API_KEY)
    # Base64 Ed25519 key that verifies Telnyx webhooks. Unset in dev/test: the sandbox's
    # published development key is used (never trusted in production, see `telnyx_verify_key`).
    telnyx_public_key: str | None = None
    sms_timeout_s: float = 10.0
    send_rate_per_number: float = 200.0  # messages/s per sending number; long code 1, toll-free 3
    send_concurrency: int = 200
    claim_batch_size: int = 500
    lease_s: int = 120
    max_attempts: int = 5
    # Delivery workers (DESIGN §5). Backoff before retry n: retry_base_s * 2**(n-1), jittered,
    # at most retry_max_s; a provider's Retry-After wins when given.
    retry_base_s: float = Field(default=5.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0)
    # Refusals for speed (HTTP 429 and the carriers' "too many requests" codes) say nothing
    # about the text, so they may be retried this many times before the text fails.
    max_rate_limited_attempts: int = Field(default=20, ge=1)
    send_pipelines: int = Field(default=2, ge=1, le=16)  # batches in flight per worker process
    worker_poll_s: float = Field(default=1.0, gt=0)  # safety net when a NOTIFY is missed
    lease_sweep_s: float = Field(default=10.0, gt=0)  # requeue expired leases this often
    # A `sent` message (all texts handed over) is `completed` when every delivery report is in,
    # or this long after it became `sent`: carriers report within minutes, and one that has not
    # reported in an hour is unlikely to (a late report still updates its text).
    report_wait_s: float = Field(default=3600.0, gt=0)
    schedule_poll_s: float = Field(default=5.0, gt=0)  # due recurring sends, welcome texts
    segment_price_usd: float = 0.0079  # shown by dry runs; the provider's US list price

    # Observability
    log_json: bool | None = None  # default: JSON in production, pretty otherwise
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # FastAPI's native OpenTelemetry instrumentation (spans, metrics and logs through the global
    # OpenTelemetry providers). Off unless an operator wires OpenTelemetry up: the product's own
    # observability is structlog + Prometheus, and the instrumentation's per-request work was
    # ~10% of a cached read's CPU with no provider configured.
    opentelemetry: bool = False
    slow_query_warn_ms: float = 500.0
    slow_query_critical_ms: float = 1000.0
    n_plus_one_threshold: int = 5
    n_plus_one_raise: bool = False

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, v: str | None) -> str | None:
        if not v:
            return None
        for prefix in ("postgresql://", "postgres://", "postgresql+psycopg://"):
            if v.startswith(prefix):
                return "postgresql+asyncpg://" + v[len(prefix) :]
        if not v.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// URL")
        return v

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, v: str) -> str:
        # Normalised once here: every callback URL and every signed URL we rebuild is
        # `public_url + path`, and a trailing "/" made them `//api/v1/...` (a 404 for every
        # delivery report). Nothing else is rewritten: Twilio signs the URL exactly as it was
        # configured, so the host's spelling is kept.
        value = v.strip()
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL, e.g. https://sms.example.org")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or a fragment")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _production_secrets(self) -> Settings:
        if self.env == "production":
            problem = self.production_problem()
            if problem is not None:
                raise ValueError(problem)
        return self

    def production_problem(self) -> str | None:
        """The first reason these settings must not serve production, or None."""
        secrets: list[tuple[str, SecretStr, str, bool]] = [
            ("KOINONIA_JWT_SECRET", self.jwt_secret, DEV_JWT_SECRET, False),
            ("KOINONIA_TWILIO_AUTH_TOKEN", self.twilio_auth_token, DEV_TWILIO_AUTH_TOKEN, True),
            ("KOINONIA_TELNYX_API_KEY", self.telnyx_api_key, DEV_TELNYX_API_KEY, True),
        ]
        for name, secret, dev_value, may_be_empty in secrets:
            value = secret.get_secret_value()
            unused = " (or set it empty when no church uses that provider)" if may_be_empty else ""
            if value == dev_value:
                return f"{name} is the public development default: set the real secret{unused}"
            if value == "" and may_be_empty:
                continue
            if len(value) < MIN_SECRET_CHARS:
                return f"{name} is shorter than {MIN_SECRET_CHARS} characters{unused}"
        if self.telnyx_public_key == DEV_TELNYX_PUBLIC_KEY:
            return (
                "KOINONIA_TELNYX_PUBLIC_KEY is the sandbox's development key (its private key "
                "is public): set the public key of your Telnyx messaging profile"
            )
        return None

    @property
    def twilio_token(self) -> str | None:
        """The Twilio auth token to sign with and verify against; None when Twilio is not
        configured (unset, or a development value in production): nothing is trusted then."""
        return self._credential(self.twilio_auth_token, DEV_TWILIO_AUTH_TOKEN)

    @property
    def telnyx_key(self) -> str | None:
        """The Telnyx API key; None when Telnyx is not configured (as for `twilio_token`)."""
        return self._credential(self.telnyx_api_key, DEV_TELNYX_API_KEY)

    def _credential(self, secret: SecretStr, dev_value: str) -> str | None:
        # Settings built for production are refused at load time; this also covers copies
        # made with model_copy (which skips validation), so a development value never
        # authenticates anything in production.
        value = secret.get_secret_value()
        if not value or (self.env == "production" and value == dev_value):
            return None
        return value

    @property
    def telnyx_verify_key(self) -> str | None:
        if self.env == "production":
            # The sandbox's key verifies what anyone holding its published seed signs.
            if self.telnyx_public_key == DEV_TELNYX_PUBLIC_KEY:
                return None
            return self.telnyx_public_key or None
        return self.telnyx_public_key or DEV_TELNYX_PUBLIC_KEY

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.env == "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()
