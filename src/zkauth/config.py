"""Settings from the environment (``ZKAUTH_*``) and command-line flags, validated at start.

Every setting has a sensible default for the embedded mode: ``zkauth serve`` with no
configuration runs on SQLite under ``./data`` with a signing key generated there on first start.
Production mode (``ZKAUTH_ENV=production`` or ``--production``) adds the checks that matter when
real clients depend on the server, and refuses to start when they fail.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from zkauth.errors import ConfigurationError
from zkauth.service.policy import Policy

MIN_ADMIN_TOKEN_LENGTH = 32


class Settings(BaseSettings):
    """All of zkauth's configuration. Field ``x`` is read from ``ZKAUTH_X``."""

    model_config = SettingsConfigDict(env_prefix="ZKAUTH_", extra="ignore", frozen=True)

    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    data_dir: Path = Path("data")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default: SQLite file zkauth.db in the data directory"
    )
    auto_upgrade_db: bool = Field(
        False, description="migrate the database to this version's schema at start"
    )
    db_pool_size: int = Field(10, ge=1, le=1000, description="PostgreSQL connections kept open")
    db_max_overflow: int = Field(
        5, ge=0, le=1000, description="further PostgreSQL connections opened under load"
    )
    db_pool_timeout_seconds: float = Field(
        5, gt=0, le=300, description="wait for a free connection before failing closed (503)"
    )
    signing_key_path: Path | None = Field(
        None, description="Ed25519 PEM; default: signing-key.pem in the data directory"
    )
    issuer: str = Field("zkauth", min_length=1, description="the tokens' iss claim")
    audience: str = Field("default", min_length=1, description="the server's own audience")
    extra_audiences: list[str] = Field(
        default_factory=list, description="further audiences tokens may be requested for"
    )
    token_ttl_seconds: int = Field(900, ge=30, le=86400)
    challenge_ttl_seconds: int = Field(120, ge=10, le=3600)
    lockout_threshold: int = Field(3, ge=1, le=100)
    lockout_minutes: int = Field(60, ge=1)
    admin_token: SecretStr | None = Field(
        None, description=f"admin bearer credential, at least {MIN_ADMIN_TOKEN_LENGTH} characters"
    )
    introspection_token: SecretStr | None = Field(
        None, description="credential resource servers use for POST /v1/introspect"
    )
    hsts: bool = Field(False, description="send HSTS even when the request did not arrive as https")
    metrics_token: SecretStr | None = Field(
        None, description="credential a Prometheus scraper sends to GET /metrics"
    )
    redis_url: str | None = Field(
        None, description="Redis for rate limits and counters shared by every worker and host"
    )
    redis_prefix: str = Field("zkauth:", min_length=1, max_length=64)
    rate_limits: bool = Field(True, description="enforce rate limits (mandatory in production)")
    rate_global_per_second: int = Field(10_000, ge=1)
    rate_ip_per_second: int = Field(100, ge=1)
    rate_client_per_minute: int = Field(
        10, ge=1, description="challenge requests per client identifier"
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="CIDRs of reverse proxies whose X-Forwarded-For and -Proto are believed",
    )
    audit_retention_days: int | None = Field(
        None,
        ge=1,
        description="audit entries older than this are pruned by `zkauth audit prune` (a "
        "checkpoint keeps the rest verifiable); unset: kept forever",
    )

    @field_validator("admin_token", "introspection_token", "metrics_token")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
            raise ValueError(f"must be at least {MIN_ADMIN_TOKEN_LENGTH} characters")
        return value

    @model_validator(mode="after")
    def _production_rules(self) -> Settings:
        if self.production and not self.rate_limits:
            raise ValueError("rate limits are mandatory in production (ZKAUTH_RATE_LIMITS)")
        return self

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'zkauth.db').resolve()}"

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or self.data_dir / "signing-key.pem"

    def policy(self) -> Policy:
        return Policy(
            challenge_ttl=timedelta(seconds=self.challenge_ttl_seconds),
            lockout_threshold=self.lockout_threshold,
            lockout_base=timedelta(minutes=self.lockout_minutes),
            default_audience=self.audience,
            audiences=frozenset({self.audience, *self.extra_audiences}),
        )


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with ``overrides`` (from flags; ``None`` means unset)."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigurationError(f"invalid settings: {exc}") from None
