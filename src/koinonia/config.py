"""Settings from the environment (`KOINONIA_*`, plus `DATABASE_URL` and `REDIS_URL`) and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ProviderName = Literal["sandbox", "twilio", "telnyx"]


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
    public_url: str = "http://127.0.0.1:8000"  # how providers reach our webhooks
    max_body_bytes: int = 1_048_576
    # Requests processed at once per process; the rest queue (see kit.http.RequestPipeline).
    max_requests_in_flight: int = Field(default=64, ge=1)
    max_upload_bytes: int = 20 * 1_048_576

    # Auth
    jwt_secret: str = "dev-only-secret-change-me-in-production-32b"
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
    twilio_account_sid: str = "AC00000000000000000000000000000000"
    twilio_auth_token: str = "sandbox-auth-token"
    telnyx_api_url: str = "https://api.telnyx.com"
    telnyx_api_key: str = "KEYsandbox"
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

    @property
    def telnyx_verify_key(self) -> str | None:
        if self.telnyx_public_key:
            return self.telnyx_public_key
        if self.env == "production":
            return None
        from koinonia.sms.sandbox import SANDBOX_TELNYX_PUBLIC_KEY_B64

        return SANDBOX_TELNYX_PUBLIC_KEY_B64

    @property
    def json_logs(self) -> bool:
        return self.log_json if self.log_json is not None else self.env == "production"


@lru_cache
def get_settings() -> Settings:
    return Settings()
