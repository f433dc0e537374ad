"""Every setting of firewatch, validated once at start-up.

All settings come from ``FIREWATCH_*`` environment variables (or a ``.env`` file).
An invalid value stops start-up with a message that names the variable, because a
half-configured incident tracker fails at 3 a.m., not at deploy time.
"""

from __future__ import annotations

import ipaddress
import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from firewatch.incidents.model import Category

ENV_PREFIX = "FIREWATCH_"


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class SloTargetSetting(BaseModel):
    """Per-severity SLO targets in seconds; null means that clock has no target."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ack_seconds: Annotated[float, Field(gt=0, le=365 * 86400)] | None = None
    resolve_seconds: Annotated[float, Field(gt=0, le=365 * 86400)] | None = None


def _default_slo_targets() -> dict[str, SloTargetSetting]:
    return {
        "SEV1": SloTargetSetting(ack_seconds=5 * 60, resolve_seconds=30 * 60),
        "SEV2": SloTargetSetting(ack_seconds=15 * 60, resolve_seconds=2 * 3600),
    }


class JwtAlgorithm(StrEnum):
    """Asymmetric algorithms only: HS* and ``none`` can never be configured."""

    RS256 = "RS256"
    ES256 = "ES256"
    EDDSA = "EdDSA"


def _split_list(value: object) -> object:
    """Comma-separated env values (``a,b``) as a list; lists pass through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """firewatch configuration; see the README's configuration table."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
    )

    database_url: SecretStr | None = Field(
        default=None,
        description="PostgreSQL URL; unset starts an embedded PostgreSQL in the data dir.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        description="Redis URL; unset starts an embedded Redis in the data dir.",
    )
    data_dir: Path = Field(default=Path("firewatch-data"), description="Writable state.")
    host: str = Field(default="127.0.0.1", description="Address to bind.")
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    log_level: str = Field(default="info")
    log_format: LogFormat = LogFormat.CONSOLE
    max_body_bytes: Annotated[int, Field(ge=1024, le=64 * 1024 * 1024)] = 1024 * 1024
    db_pool_min: Annotated[int, Field(ge=1, le=100)] = 2
    db_pool_max: Annotated[int, Field(ge=1, le=200)] = 10
    db_command_timeout: Annotated[float, Field(gt=0, le=600)] = 30.0
    migrate_on_start: bool = True
    ready_timeout: Annotated[float, Field(gt=0, le=30)] = 2.0

    # --- analytics (issue 6) ---
    analytics_repeat_days: Annotated[float, Field(gt=0, le=365)] = 7.0
    slo_targets: dict[str, SloTargetSetting] = Field(
        default_factory=_default_slo_targets,
        description='JSON, e.g. {"SEV1": {"ack_seconds": 300, "resolve_seconds": 1800}}',
    )

    # observability (logs, metrics; traces are configured by the standard OTEL_* variables)
    metrics_token: SecretStr | None = Field(
        default=None,
        description="Bearer token required on GET /metrics; unset serves /metrics openly.",
    )
    metrics_enabled: bool = Field(default=True, description="Record and serve /metrics.")
    log_pseudonym_key: SecretStr | None = Field(
        default=None,
        description="HMAC key for client-address pseudonyms in logs; unset: random per start.",
    )
    # --- security (auth/, audit/, http/security.py): see README "Security" ---
    jwt_algorithm: JwtAlgorithm = JwtAlgorithm.ES256
    jwt_issuer: Annotated[str, Field(min_length=1, max_length=200)] = "firewatch"
    jwt_audience: Annotated[str, Field(min_length=1, max_length=200)] = "firewatch-api"
    jwt_keys_file: Path | None = Field(
        default=None, description="Mounted keyring file (read-only); else $DATA_DIR/secrets."
    )
    access_token_ttl: Annotated[int, Field(ge=60, le=3600)] = 900
    refresh_token_ttl: Annotated[int, Field(ge=300, le=90 * 86400)] = 14 * 86400
    token_leeway: Annotated[int, Field(ge=0, le=300)] = 30
    claims_cache_size: Annotated[int, Field(ge=0, le=1_000_000)] = 10_000
    admin_username: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._@-]{0,63}$")] = "admin"
    admin_password: SecretStr | None = None
    admin_password_file: Path | None = None
    password_hash_time_cost: Annotated[int, Field(ge=1, le=20)] = 3
    password_hash_memory_kib: Annotated[int, Field(ge=8192, le=4 * 1024 * 1024)] = 65536
    password_hash_parallelism: Annotated[int, Field(ge=1, le=16)] = 4
    password_hash_concurrency: Annotated[int, Field(ge=1, le=64)] = 2
    rate_limit_login_account: str = "10/minute"
    rate_limit_login_client: str = "30/minute"
    rate_limit_api_per_minute: Annotated[int, Field(ge=0, le=10_000_000)] = 6000
    rate_limit_ingest_per_minute: Annotated[int, Field(ge=0, le=10_000_000)] = 12000
    lockout_threshold: Annotated[int, Field(ge=1, le=100)] = 5
    lockout_base_seconds: Annotated[int, Field(ge=1, le=86400)] = 60
    lockout_max_seconds: Annotated[int, Field(ge=1, le=7 * 86400)] = 3600
    audit_hmac_key: SecretStr | None = None
    audit_hmac_key_file: Path | None = None
    audit_seal_interval: Annotated[float, Field(gt=0, le=3600)] = 1.0
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trusted_proxies: Annotated[list[ipaddress.IPv4Network | ipaddress.IPv6Network], NoDecode] = (
        Field(default_factory=list)
    )
    hsts_max_age: Annotated[int, Field(ge=0, le=2 * 31536000)] = 31536000

    @field_validator("cors_origins", "trusted_proxies", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("cors_origins")
    @classmethod
    def _exact_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin == "*" or not origin.startswith(("https://", "http://")):
                raise ValueError("list exact origins like https://ops.example.com (no '*')")
        return value

    @field_validator("rate_limit_login_account", "rate_limit_login_client")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError("must be a rate like '10/minute' or '100 per hour'") from exc
        return value

    # --- alert ingestion, notifications, live events (alerts/, notifications/, events/) ---
    alert_reopen_window: Annotated[float, Field(ge=0, le=365 * 86400)] = Field(
        default=3600.0,
        description="Seconds after resolution during which a group that fires again reopens "
        "its incident; later it opens a new one (0: always a new incident).",
    )
    alert_auto_resolve: bool = Field(
        default=False,
        description="When every alert of an incident is resolved: resolve it (true) or "
        "move it to mitigated for a responder to confirm (false).",
    )
    alert_severity_label: str = "severity"
    alert_severity_map: dict[str, Annotated[int, Field(ge=1, le=4)]] = Field(
        default_factory=lambda: {"critical": 1, "error": 2, "high": 2, "warning": 3, "info": 4},
        description="Severity label value (case-insensitive) to SEV number.",
    )
    alert_default_severity: Annotated[int, Field(ge=1, le=4)] = 3
    alert_category_label: str = "category"
    alert_category_map: dict[str, Category] = Field(
        default_factory=dict, description="alertname to category, when no category label."
    )
    alert_service_label: str = "service"
    alert_team_label: str = "team"
    alert_max_per_payload: Annotated[int, Field(ge=1, le=100_000)] = 1000
    ingest_acquire_timeout: Annotated[float, Field(gt=0, le=60)] = 2.0
    webhook_secrets: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="Generic webhook integrations: name to HMAC-SHA256 secret (JSON object).",
    )
    webhook_tolerance: Annotated[int, Field(ge=10, le=3600)] = 300
    worker_in_serve: bool = Field(
        default=False, description="Run the notification/retention worker inside serve."
    )
    notify_concurrency: Annotated[int, Field(ge=1, le=64)] = 4
    notify_max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    notify_backoff_base: Annotated[float, Field(gt=0, le=3600)] = 2.0
    notify_backoff_max: Annotated[float, Field(gt=0, le=86400)] = 900.0
    notify_timeout: Annotated[float, Field(gt=0, le=120)] = 10.0
    notify_poll_interval: Annotated[float, Field(gt=0, le=60)] = 1.0
    retention_days: Annotated[float, Field(gt=0, le=3650)] = 30.0
    retention_batch: Annotated[int, Field(ge=1, le=100_000)] = 1000
    retention_interval: Annotated[float, Field(gt=0, le=86400)] = 3600.0

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"critical", "error", "warning", "info", "debug"}:
            raise ValueError("must be one of critical, error, warning, info, debug")
        return level

    # --- detection (issue 6) ---
    model_dir: Path | None = Field(
        default=None,
        description="Where model files live (shared by all replicas); default data_dir/models.",
    )
    signals_max_batch: Annotated[int, Field(ge=1, le=100_000)] = 10_000
    signals_max_future_seconds: Annotated[float, Field(ge=0, le=86400)] = 300.0
    drift_opens_incident: bool = False
    similar_k: Annotated[int, Field(ge=1, le=50)] = 5
    similar_rebuild_seconds: Annotated[float, Field(ge=1, le=86400)] = 300.0
    similar_suggest_interval: Annotated[float, Field(ge=0, le=3600)] = 10.0
    # the suggester's CPU priority (Unix nice increment): background work, yields to serving
    similar_suggest_nice: Annotated[int, Field(ge=0, le=19)] = 10

    @property
    def resolved_model_dir(self) -> Path:
        return self.model_dir if self.model_dir is not None else self.data_dir / "models"

    @field_validator("slo_targets")
    @classmethod
    def _slo_severities(cls, value: dict[str, SloTargetSetting]) -> dict[str, SloTargetSetting]:
        out = {}
        for key, target in value.items():
            name = key.strip().upper()
            if name not in {"SEV1", "SEV2", "SEV3", "SEV4"}:
                raise ValueError(f"unknown severity {key!r}; expected SEV1..SEV4")
            out[name] = target
        return out

    @field_validator("metrics_token", "log_pseudonym_key", "audit_hmac_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _long_webhook_secrets(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # an empty or short secret lets anyone who knows the scheme sign requests
        for name, secret in value.items():
            if len(secret.get_secret_value()) < 16:
                raise ValueError(f"the secret of {name!r} must be at least 16 characters")
        return value

    @field_validator("alert_severity_map")
    @classmethod
    def _lower_severity_keys(cls, value: dict[str, int]) -> dict[str, int]:
        return {k.strip().lower(): v for k, v in value.items()}

    @field_validator("host")
    @classmethod
    def _valid_host(cls, value: str) -> str:
        if value == "localhost":
            return value
        try:
            ipaddress.ip_address(value)
        except ValueError as exc:
            raise ValueError("must be an IP address or 'localhost'") from exc
        return value


class SettingsError(Exception):
    """Settings could not be loaded; the message names each offending variable."""


def load_settings() -> Settings:
    """Load settings from the environment, turning validation errors into one message."""
    try:
        return Settings()
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            lines.append(f"{ENV_PREFIX}{field.upper()}: {err['msg']}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
    except SourceError as exc:
        # A value that is not even parseable (e.g. malformed JSON). The source's message
        # names the field only; the value (maybe a secret) is never repeated.
        found = re.search(r'field "([^"]+)"', str(exc))
        field = found.group(1) if found else "settings"
        raise SettingsError(
            f"invalid configuration:\n  {ENV_PREFIX}{field.upper()}: cannot be parsed (JSON?)"
        ) from None
