"""Settings for the CLI and the service (the library takes explicit arguments instead).

Precedence: command line > environment (``LOOKUP_*``) > TOML file (``--config``) > defaults.
Secrets (the API token, header values, service tokens) are ``SecretStr``: they print as
``**********`` and never reach a log line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Final, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from lookup.domain.errors import ConfigError
from lookup.domain.models import DEFAULT_LIMITS, Limits
from lookup.domain.privacy import redact_url, url_secrets

__all__ = ["Settings", "load_settings"]

SECRET_FIELDS: Final = frozenset({"api_token", "api_headers", "service_tokens", "shared_secret"})
"""Settings whose values are never shown (``lookup config`` prints them as comments)."""
_OPTIONAL_TEXT: Final = (
    "api_url", "api_plugin", "api_token", "batch_url", "sql", "audit_file", "service_jobs_dir",
    "shared_url", "shared_fallback_rate", "shared_secret", "regions_file",
)
_NO_CEILING: Final = frozenset({"", "none", "auto", "off", "unlimited"})
# What each setting expects, for error messages (the rest: pydantic's own words suffice).
_EXPECTED: Final[dict[str, str]] = {
    "rate": "checks per second, a number > 0, or 'none' / 'auto' for no ceiling",
    "api_headers": "'Name: value', a comma-separated list of 'Name: value' pairs, or a JSON "
    'object {"Name": "value"}',
    "service_tokens": 'a token, a comma-separated list of tokens, or a JSON list ["t1", "t2"]',
    "max_in_flight": "a whole number from 1 to 10000",
    "max_attempts": "a whole number from 1 to 20",
    "max_candidates": "a whole number >= 1",
    "max_connections": "a whole number >= 1",
    "service_port": "a port number from 0 to 65535",
    "service_max_batch": "a whole number >= 1",
    "service_max_body": "a number of bytes >= 1000",
    "connect_timeout": "seconds, a number > 0",
    "read_timeout": "seconds, a number > 0",
    "total_timeout": "seconds, a number > 0",
    "cache_ttl": "seconds, a number >= 0",
    "log_level": "DEBUG, INFO, WARNING or ERROR",
    "log_format": "text or json",
    "api_method": "GET or POST",
    "adaptive": "true or false",
    "deadline": "seconds, a number > 0",
    "batch_size": "a whole number from 1 to 10000",
    "throttled_when": "PATH=VALUE pairs, comma-separated (e.g. code=429,error_response.code=7)",
    "audit_full_numbers": "true or false",
    "shared_url": "redis://HOST:PORT/DB (or rediss://, unix://)",
    "shared_fallback_rate": "checks per second, a number > 0",
    "shared_processes": "a whole number from 1 to 10000",
}
_OPTIONS: Final[dict[str, str]] = {
    "api_url": "--api", "api_plugin": "--api-plugin", "api_headers": "--header",
    "hit_field": "--hit-field", "api_method": "--method", "batch_url": "--batch-url",
    "sql": "--sql", "sql_table": "--sql-table", "sql_column": "--sql-column",
    "max_in_flight": "--max-in-flight", "rate": "--rate", "total_timeout": "--timeout",
    "throttled_when": "--throttled-when", "deadline": "--deadline", "batch_size": "--batch-size",
    "max_candidates": "--max-candidates", "audit_full_numbers": "--audit-full-numbers",
    "audit_file": "--audit-file", "log_level": "--log-level", "log_format": "--log-format",
    "service_host": "--host", "service_port": "--port", "shared_url": "--shared",
    "shared_fallback_rate": "--shared-fallback-rate", "shared_processes": "--shared-processes",
    "learn_regions": "--learn-regions",
}  # fmt: skip


def _split_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _parse_tokens(value: object) -> object:
    """``LOOKUP_SERVICE_TOKENS``: a token, ``t1,t2``, or a JSON list."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith(("[", "{", '"')):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError(f"starts with {text[0]!r} but is not valid JSON") from None
        return [parsed] if isinstance(parsed, str) else parsed
    return _split_list(text)


def _parse_headers(value: object) -> object:
    """``LOOKUP_API_HEADERS``: ``Name: value``, ``A: 1, B: 2``, or a JSON object."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("{"):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ValueError("starts with '{' but is not a JSON object") from None
        return parsed
    headers: dict[str, str] = {}
    for i, item in enumerate(_split_list(text), 1):
        name, sep, header_value = item.partition(":")
        if not sep or not name.strip():  # not echoed: it may be the secret itself
            raise ValueError(f"item {i} is not a 'Name: value' pair")
        headers[name.strip()] = header_value.strip()
    return headers


_HEADER_NAME: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def _check_headers(headers: dict[str, SecretStr]) -> dict[str, SecretStr]:
    """Header names are HTTP tokens; no value has a line break or other control character."""
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):  # a name is not a secret: say which one
            raise ValueError(f"{name!r} is not a header name (letters, digits, - and _)")
        if _CONTROL.search(value.get_secret_value()):  # the value is not echoed
            raise ValueError(f"the value of {name} has a line break or control character")
    return headers


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
    api_headers: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description="extra headers"
    )
    hit_field: str = Field("total", description="dotted path to a count (> 0 = orders) or a bool")
    batch_url: str | None = None
    throttled_when: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="throttle signals in a 200 body, PATH=VALUE (e.g. code=429)",
    )
    sql: str | None = Field(
        None, description="PostgreSQL: a query taking $1 (text[]) that returns (phone[, count])"
    )
    sql_table: str = Field("orders", description="PostgreSQL: the orders table (default query)")
    sql_column: str = Field("phone", description="PostgreSQL: its phone column (default query)")
    connect_timeout: float = Field(5.0, gt=0, allow_inf_nan=False)
    read_timeout: float = Field(10.0, gt=0, allow_inf_nan=False)
    total_timeout: float = Field(20.0, gt=0, allow_inf_nan=False)
    max_connections: int = Field(100, ge=1)

    # politeness limits (see lookup.domain.models.Limits)
    max_in_flight: int = Field(DEFAULT_LIMITS.max_in_flight, ge=1, le=10_000)
    rate: float | None = Field(DEFAULT_LIMITS.max_per_second, gt=0, allow_inf_nan=False, description="checks/s")
    max_attempts: int = Field(DEFAULT_LIMITS.max_attempts, ge=1, le=20)
    cache_ttl: float = Field(DEFAULT_LIMITS.cache_ttl, ge=0, allow_inf_nan=False)
    adaptive: bool = DEFAULT_LIMITS.adaptive
    deadline: float = Field(DEFAULT_LIMITS.deadline, gt=0, allow_inf_nan=False, description="seconds per lookup")
    batch_size: int = Field(DEFAULT_LIMITS.batch_size, ge=1, le=10_000)
    max_candidates: int = Field(10_000, ge=1)

    # one quota shared by many processes (see lookup.scale.redis; the [redis] extra)
    shared_url: str | None = Field(
        None, description="redis://HOST:PORT/DB holding the quota shared by every process"
    )
    shared_fallback_rate: float | None = Field(
        None, gt=0, allow_inf_nan=False, description="checks/s per process while Redis is away (rate / processes)"
    )
    shared_processes: int = Field(
        2, ge=1, le=10_000, description="processes expected to share the quota (for the fallback)"
    )
    shared_secret: SecretStr | None = Field(
        None, description="this deployment's secret: keys the hashes of numbers in the shared "
        "outcome cache (without it, and without API credentials, outcomes are not shared)",
    )

    # the learned order inside a tier (lookup.files.regions)
    learn_regions: bool = Field(
        False, description="count matched lookups per region and check likely regions first"
    )
    regions_file: Path | None = Field(
        None, description="the region counts (default: $XDG_STATE_HOME/lookup/regions.json)"
    )

    # logging
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["text", "json"] = "text"
    audit_full_numbers: bool = Field(False, description="put the full matched number in audit")
    audit_file: str | None = Field(None, description="append audit lines here (0600), not stderr")

    # the service
    service_host: str = "127.0.0.1"
    service_port: int = Field(8000, ge=0, le=65535)
    service_tokens: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    service_max_batch: int = Field(100, ge=1)
    service_max_body: int = Field(1_000_000, ge=1_000)
    service_max_queued: int = Field(
        32, ge=1, description="lookups one caller may have running or queued (else 429)"
    )
    service_read_timeout: float = Field(
        15.0, gt=0, le=30, allow_inf_nan=False, description="seconds to receive a request's headers, and its body"
    )
    service_jobs_dir: Path | None = Field(
        None, description="batch jobs of the desk page (default: $XDG_STATE_HOME/lookup/jobs)"
    )
    service_job_retention: float = Field(
        86_400.0, gt=0, allow_inf_nan=False, description="seconds a finished job's files are kept"
    )
    service_jobs_per_caller: int = Field(
        20, ge=1, description="batch jobs one caller may have queued or running (else 429)"
    )
    service_job_rows_per_caller: int = Field(
        200_000, ge=1, description="rows of the batch jobs one caller may have queued or running"
    )
    service_job_bytes_per_caller: int = Field(
        256 * 2**20, ge=1,
        description="bytes of uploads of the batch jobs one caller may have queued or running",
    )

    @field_validator("throttled_when", mode="before")
    @classmethod
    def _throttle_rules(cls, value: object) -> object:
        from lookup.orders.throttle import parse_throttle_rules

        if isinstance(value, str):
            text = value.strip()
            value = json.loads(text) if text.startswith("[") else _split_list(text)
        if isinstance(value, list):
            parse_throttle_rules([str(v) for v in value])  # ConfigError -> a settings error
        return value

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
        # "0" is not "no limit": it fails the > 0 check like any other bad rate.
        if isinstance(value, str) and value.strip().lower() in _NO_CEILING:
            return None
        return value

    @field_validator(*_OPTIONAL_TEXT, mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("service_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        return _parse_tokens(value)

    @field_validator("api_headers", mode="before")
    @classmethod
    def _headers(cls, value: object) -> object:
        return _parse_headers(value)

    @field_validator("api_headers", mode="after")
    @classmethod
    def _valid_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        return _check_headers(value)

    @model_validator(mode="after")
    def _one_authorization(self) -> Settings:
        # user:password@ in an HTTP URL is sent as Authorization: Basic; a token or an
        # Authorization header as well would make every request fail, so say it once here
        bearer = self.api_token is not None or any(
            k.lower() == "authorization" for k in self.api_headers
        )
        for name in ("api_url", "batch_url"):
            url = getattr(self, name) or ""
            web = url.lower().startswith(("http://", "https://"))
            if bearer and web and "@" in url.split("://", 1)[1].split("/", 1)[0]:
                raise ValueError(
                    f"{name} carries credentials (user:password@) and an API token or "
                    "Authorization header is set too (LOOKUP_API_TOKEN, --header): keep one"
                )
        return self

    @field_validator("api_token", mode="after")
    @classmethod
    def _valid_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and _CONTROL.search(value.get_secret_value()):
            raise ValueError("the token has a line break or control character")
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
        """The :class:`~lookup.domain.models.Limits` these settings ask for."""
        return DEFAULT_LIMITS.model_copy(
            update={
                "max_in_flight": self.max_in_flight,
                "max_per_second": self.rate,
                "max_attempts": self.max_attempts,
                "cache_ttl": self.cache_ttl,
                "adaptive": self.adaptive,
                "deadline": self.deadline,
                "batch_size": self.batch_size,
            }
        )

    def headers(self) -> dict[str, str]:
        """Request headers with secrets revealed (for the HTTP adapter only)."""
        out = {k: v.get_secret_value() for k, v in self.api_headers.items()}
        if self.api_token is not None:
            out["Authorization"] = f"Bearer {self.api_token.get_secret_value()}"
        return out

    def redacted(self) -> dict[str, Any]:
        """The effective settings with every secret (and URL credential) replaced by ``'***'``."""
        data = self.model_dump(mode="json")
        data["api_token"] = "***" if self.api_token is not None else None
        data["api_headers"] = dict.fromkeys(self.api_headers, "***")
        data["service_tokens"] = ["***" for _ in self.service_tokens]
        data["shared_secret"] = "***" if self.shared_secret is not None else None
        for name in ("api_url", "batch_url", "shared_url"):  # postgresql://u:PASSWORD@h/db too
            if data[name]:
                data[name] = redact_url(data[name])
        return data

    def secret_values(self) -> list[str]:
        """Every configured secret, for the redactor of logs and messages."""
        found = [v.get_secret_value() for v in self.api_headers.values()]
        found += [t.get_secret_value() for t in self.service_tokens]
        for secret in (self.api_token, self.shared_secret):
            if secret is not None:
                found.append(secret.get_secret_value())
        for url in (self.api_url, self.batch_url, self.shared_url):
            found += url_secrets(url or "")
        return [s for s in found if s]

    def as_env(self) -> str:
        """The settings as ``LOOKUP_*=value`` lines a POSIX shell can source back.

        Secrets are not printed: each set one is a comment saying so. ``None`` is an empty
        value (read back as unset), except ``rate``, whose ``None`` is ``none``.
        """
        import shlex

        lines = []
        for name, value in self.redacted().items():
            key = f"LOOKUP_{name.upper()}"
            if name in ("api_url", "batch_url", "shared_url") and value != getattr(self, name):
                # credentials in the URL: shown redacted, as a comment (not sourced as is)
                lines.append(f"# {key}={shlex.quote(value)}  (holds credentials: set it yourself)\n")
                continue
            if name in SECRET_FIELDS:
                if value:
                    shown = value if isinstance(value, str) else json.dumps(value)
                    lines.append(f"# {key}={shlex.quote(shown)}  (a secret: set it yourself)\n")
                continue
            if value is None:
                text = "none" if name == "rate" else ""
            elif isinstance(value, bool):
                text = "true" if value else "false"
            elif isinstance(value, int | float | str):
                text = str(value)
            else:
                text = json.dumps(value, ensure_ascii=False)
            lines.append(f"{key}={shlex.quote(text) if text else ''}\n")
        return "".join(lines)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (command line) > env > ``config_file`` > defaults.

    ``None`` overrides are ignored (an option not given on the command line).
    Invalid values raise :class:`~lookup.domain.errors.ConfigError` naming the setting.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    path = Path(config_file) if config_file else None
    if path is not None and not path.is_file():
        kind = "is not a regular file" if path.exists() else "does not exist"
        raise ConfigError(f"config file {path} {kind}")
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
        raise ConfigError(f"invalid settings: {_problems(exc)}") from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError(f"invalid settings: {exc}") from None
    except RecursionError:  # tomllib on arrays or tables nested thousands deep
        raise ConfigError(
            f"config file {path} nests arrays or tables too deeply to read; a lookup config "
            "is flat key = value lines"
        ) from None


def _problems(exc: ValidationError) -> str:
    """Each error as ``LOOKUP_NAME (--option): what is wrong; expected ...``."""
    parts = []
    for err in exc.errors():
        name = str(err["loc"][0]) if err["loc"] else ""
        if not name:
            parts.append(err["msg"])
            continue
        option = f" / {_OPTIONS[name]}" if name in _OPTIONS else ""
        msg = err["msg"].removeprefix("Value error, ")
        expected = f"; expected {_EXPECTED[name]}" if name in _EXPECTED else ""
        parts.append(f"LOOKUP_{name.upper()} ({name}{option}): {msg}{expected}")
    return "; ".join(parts)
