"""Every setting of firewatch, validated once at start-up.

All settings come from ``FIREWATCH_*`` environment variables (or a ``.env`` file).
An invalid value stops start-up with a message that names the variable, because a
half-configured incident tracker fails at 3 a.m., not at deploy time.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

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

    @field_validator("metrics_token", "log_pseudonym_key")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters")
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

    @property
    def binds_loopback_only(self) -> bool:
        """True when the server is reachable from this machine only."""
        if self.host == "localhost":
            return True
        return ipaddress.ip_address(self.host).is_loopback


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
