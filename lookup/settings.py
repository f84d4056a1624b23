"""Settings for the CLI and the service (the library takes explicit arguments instead).

Precedence: command line > environment (``LOOKUP_*``) > TOML file (``--config``) > defaults.
Secrets (the API token, header values, service tokens) are ``SecretStr``: they print as
``**********`` and never reach a log line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lookup.errors import ConfigError
from lookup.models import DEFAULT_LIMITS, Limits

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Everything an operator configures. Env names are ``LOOKUP_`` + the field name."""

    model_config = SettingsConfigDict(
        env_prefix="LOOKUP_", extra="forbid", validate_default=True, case_sensitive=False
    )

    # the order API
    api_url: str | None = Field(
        None, description="URL template with {phone} (GET) or POST target; 'demo' = bundled mock"
    )
    api_method: Literal["GET", "POST"] = "GET"
    api_plugin: str | None = Field(None, description="an OrderApi plug-in as package.module:attr")
    api_token: SecretStr | None = Field(None, description="sent as Authorization: Bearer <token>")
    api_headers: dict[str, SecretStr] = Field(default_factory=dict, description="extra headers")
    hit_field: str = Field("total", description="dotted path to a count (> 0 = orders) or a bool")
    batch_url: str | None = None
    connect_timeout: float = Field(5.0, gt=0)
    read_timeout: float = Field(10.0, gt=0)
    total_timeout: float = Field(20.0, gt=0)
    max_connections: int = Field(100, ge=1)

    # politeness limits (see lookup.models.Limits)
    max_in_flight: int = Field(DEFAULT_LIMITS.max_in_flight, ge=1, le=10_000)
    rate: float | None = Field(DEFAULT_LIMITS.max_per_second, gt=0, description="checks/s")
    max_attempts: int = Field(DEFAULT_LIMITS.max_attempts, ge=1, le=20)
    cache_ttl: float = Field(DEFAULT_LIMITS.cache_ttl, ge=0)
    adaptive: bool = DEFAULT_LIMITS.adaptive
    max_candidates: int = Field(10_000, ge=1)

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["text", "json"] = "text"
    audit_full_numbers: bool = Field(False, description="put the full matched number in audit")

    # the service
    service_host: str = "127.0.0.1"
    service_port: int = Field(8000, ge=0, le=65535)
    service_tokens: list[SecretStr] = Field(default_factory=list)
    service_max_batch: int = Field(100, ge=1)
    service_max_body: int = Field(1_000_000, ge=1_000)
    service_jobs_dir: Path | None = Field(
        None, description="batch jobs of the desk page (default: $XDG_STATE_HOME/lookup/jobs)"
    )
    service_job_retention: float = Field(
        86_400.0, gt=0, description="seconds a finished job's files are kept"
    )

    @field_validator("api_method", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("rate", mode="before")
    @classmethod
    def _no_rate(cls, value: object) -> object:
        if isinstance(value, str) and value.strip().lower() in ("", "none", "0", "off"):
            return None
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # No .env or secrets dir: the environment and an explicit --config file only.
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    def limits(self) -> Limits:
        """The :class:`~lookup.models.Limits` these settings ask for."""
        return DEFAULT_LIMITS.model_copy(
            update={
                "max_in_flight": self.max_in_flight,
                "max_per_second": self.rate,
                "max_attempts": self.max_attempts,
                "cache_ttl": self.cache_ttl,
                "adaptive": self.adaptive,
            }
        )

    def headers(self) -> dict[str, str]:
        """Request headers with secrets revealed (for the HTTP adapter only)."""
        out = {k: v.get_secret_value() for k, v in self.api_headers.items()}
        if self.api_token is not None:
            out["Authorization"] = f"Bearer {self.api_token.get_secret_value()}"
        return out

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret replaced by ``'***'``."""
        data = self.model_dump(mode="json")
        data["api_token"] = "***" if self.api_token is not None else None
        data["api_headers"] = dict.fromkeys(self.api_headers, "***")
        data["service_tokens"] = ["***" for _ in self.service_tokens]
        return data


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (command line) > env > ``config_file`` > defaults.

    ``None`` overrides are ignored (an option not given on the command line).
    Invalid values raise :class:`~lookup.errors.ConfigError` naming the setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    cls: type[Settings] = Settings
    if path is not None:
        # pydantic-settings reads the TOML path from the class config: a subclass per file.
        config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

        class _FromFile(Settings):
            model_config = config

        cls = _FromFile
    try:
        return cls(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems} (env LOOKUP_<NAME>, --config file or options)"
        ) from None
    except ValueError as exc:  # a TOML syntax error, an env value that is not JSON
        raise ConfigError(f"invalid settings: {exc}") from None
