"""Settings: command line > LOOKUP_* environment > TOML file > defaults; secrets stay hidden."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from lookup.domain.errors import ConfigError, InputError
from lookup.domain.models import DEFAULT_LIMITS, Limits
from lookup.runtime.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def no_lookup_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from an environment without LOOKUP_* variables."""
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "lookup.toml"
    path.write_text(text, encoding="utf-8")
    return path


FILE = """\
api_url = "http://file.example/orders?phone={phone}"
max_in_flight = 3
rate = 7.5
log_level = "info"
hit_field = "data.count"

[api_headers]
X-File = "file-header-value"
"""


# -- defaults and precedence ----------------------------------------------------------------------


def test_defaults() -> None:
    s = load_settings()
    assert s.api_url is None
    assert s.api_token is None
    assert s.api_headers == {}
    assert s.max_in_flight == DEFAULT_LIMITS.max_in_flight
    assert s.rate == DEFAULT_LIMITS.max_per_second
    assert s.max_attempts == DEFAULT_LIMITS.max_attempts
    assert s.log_level == "WARNING"
    assert s.log_format == "text"
    assert s.audit_full_numbers is False
    assert s.max_candidates == 10_000
    assert s.headers() == {}


def test_file_over_defaults(tmp_path: Path) -> None:
    s = load_settings(toml(tmp_path, FILE))
    assert s.api_url == "http://file.example/orders?phone={phone}"
    assert s.max_in_flight == 3
    assert s.rate == 7.5
    assert s.log_level == "INFO"
    assert s.hit_field == "data.count"
    assert s.headers() == {"X-File": "file-header-value"}
    assert s.max_attempts == DEFAULT_LIMITS.max_attempts  # not in the file: default


def test_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_MAX_IN_FLIGHT", "5")
    monkeypatch.setenv("LOOKUP_API_URL", "http://env.example/{phone}")
    monkeypatch.setenv("LOOKUP_LOG_LEVEL", "debug")
    s = load_settings(toml(tmp_path, FILE))
    assert s.max_in_flight == 5
    assert s.api_url == "http://env.example/{phone}"
    assert s.log_level == "DEBUG"
    assert s.rate == 7.5  # only in the file


def test_command_line_over_env_over_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_MAX_IN_FLIGHT", "5")
    monkeypatch.setenv("LOOKUP_RATE", "20")
    s = load_settings(toml(tmp_path, FILE), max_in_flight=9, api_url="demo")
    assert s.max_in_flight == 9  # command line
    assert s.api_url == "demo"  # command line over file
    assert s.rate == 20.0  # env over file
    assert s.log_level == "INFO"  # file over default


def test_command_line_over_env_without_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_LOG_FORMAT", "json")
    assert load_settings().log_format == "json"
    assert load_settings(log_format="text").log_format == "text"


def test_none_overrides_are_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An option not given on the command line (None) does not hide env or file."""
    monkeypatch.setenv("LOOKUP_MAX_IN_FLIGHT", "5")
    s = load_settings(toml(tmp_path, FILE), max_in_flight=None, rate=None, api_url=None)
    assert s.max_in_flight == 5
    assert s.rate == 7.5
    assert s.api_url == "http://file.example/orders?phone={phone}"


def test_env_names_are_case_insensitive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("lookup_max_attempts", "7")
    assert load_settings().max_attempts == 7


def test_given_fields_are_tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    """runtime.open_api lifts only the limits nobody set: it relies on model_fields_set."""
    monkeypatch.setenv("LOOKUP_RATE", "10")
    s = load_settings(max_in_flight=4)
    assert {"max_in_flight", "rate"} <= s.model_fields_set
    assert "max_attempts" not in s.model_fields_set


# -- rate, headers, token -------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["none", "None", "NONE", " none ", "off", "auto", ""])
def test_rate_none_from_env(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_RATE", text)
    assert load_settings().rate is None


def test_rate_none_from_file_and_command_line(tmp_path: Path) -> None:
    assert load_settings(toml(tmp_path, 'rate = "none"\n')).rate is None
    assert load_settings(rate="none").rate is None
    assert load_settings(rate="12.5").rate == 12.5
    assert load_settings(rate=3).rate == 3.0


def test_none_rate_means_unlimited_limits() -> None:
    assert load_settings(rate="none").limits().max_per_second is None


def test_headers_from_env_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_HEADERS", '{"X-Key":"v"}')
    s = load_settings()
    assert s.headers() == {"X-Key": "v"}
    assert isinstance(s.api_headers["X-Key"], SecretStr)


def test_headers_from_command_line_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_HEADERS", '{"X-Key":"env"}')
    assert load_settings(api_headers={"X-Key": "cli"}).headers() == {"X-Key": "cli"}


def test_api_token_becomes_bearer_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_TOKEN", "tok-123456")
    monkeypatch.setenv("LOOKUP_API_HEADERS", '{"X-Key":"v"}')
    assert load_settings().headers() == {"X-Key": "v", "Authorization": "Bearer tok-123456"}
    assert load_settings(api_token="tok-cli").headers()["Authorization"] == "Bearer tok-cli"


def test_secrets_do_not_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_TOKEN", "tok-123456")
    monkeypatch.setenv("LOOKUP_SERVICE_TOKENS", '["svc-aaaa1111"]')
    s = load_settings(api_headers={"X-Key": "hdr-secret-value"})
    for text in (str(s), repr(s), s.model_dump_json()):
        assert "tok-123456" not in text
        assert "hdr-secret-value" not in text
        assert "svc-aaaa1111" not in text


# -- redacted -------------------------------------------------------------------------------------


def test_redacted_hides_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_TOKEN", "tok-123456")
    monkeypatch.setenv("LOOKUP_SERVICE_TOKENS", '["svc-aaaa1111", "svc-bbbb2222"]')
    s = load_settings(
        api_headers={"X-Api-Key": "hunter2hunter2", "X-Other": "other-secret"},
        api_url="http://api.example/orders?phone={phone}",
        max_in_flight=3,
    )
    data = s.redacted()
    assert data["api_token"] == "***"
    assert data["api_headers"] == {"X-Api-Key": "***", "X-Other": "***"}
    assert data["service_tokens"] == ["***", "***"]
    # the rest is the effective settings, as plain JSON values
    assert data["api_url"] == "http://api.example/orders?phone={phone}"
    assert data["max_in_flight"] == 3
    assert set(data) == set(Settings.model_fields)
    text = json.dumps(data)
    for secret in ("tok-123456", "hunter2hunter2", "other-secret", "svc-aaaa1111", "svc-bbbb2222"):
        assert secret not in text


def test_redacted_without_secrets() -> None:
    data = load_settings().redacted()
    assert data["api_token"] is None
    assert data["api_headers"] == {}
    assert data["service_tokens"] == []


# -- invalid settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "value", "setting"),
    [
        ("LOOKUP_MAX_IN_FLIGHT", "abc", "max_in_flight"),
        ("LOOKUP_MAX_IN_FLIGHT", "0", "max_in_flight"),
        ("LOOKUP_RATE", "-1", "rate"),
        ("LOOKUP_RATE", "fast", "rate"),
        ("LOOKUP_MAX_ATTEMPTS", "50", "max_attempts"),
        ("LOOKUP_LOG_LEVEL", "LOUD", "log_level"),
        ("LOOKUP_LOG_FORMAT", "xml", "log_format"),
        ("LOOKUP_API_METHOD", "PUT", "api_method"),
        ("LOOKUP_SERVICE_PORT", "70000", "service_port"),
        ("LOOKUP_TOTAL_TIMEOUT", "0", "total_timeout"),
        ("LOOKUP_AUDIT_FULL_NUMBERS", "maybe", "audit_full_numbers"),
        ("LOOKUP_API_HEADERS", "not json", "api_headers"),
        ("LOOKUP_SERVICE_TOKENS", '{"not": "a list"}', "service_tokens"),
        ("LOOKUP_SERVICE_TOKENS", "[unclosed", "service_tokens"),
        ("LOOKUP_RATE", "0", "rate"),
    ],
)
def test_invalid_env_names_the_setting(
    env: str, value: str, setting: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=setting):
        load_settings()


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"max_in_flight": -3}, "max_in_flight"),
        ({"rate": -1}, "rate"),
        ({"max_candidates": 0}, "max_candidates"),
        ({"api_method": "DELETE"}, "api_method"),
        ({"read_timeout": -1.0}, "read_timeout"),
    ],
)
def test_invalid_override_names_the_setting(overrides: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError, match=setting):
        load_settings(**overrides)


def test_invalid_value_in_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_in_flight"):
        load_settings(toml(tmp_path, 'max_in_flight = "many"\n'))


def test_config_error_is_input_error() -> None:
    """The CLI maps InputError to exit 2."""
    with pytest.raises(InputError):
        load_settings(max_in_flight=0)


def test_missing_config_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(missing)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(str(missing))


def test_config_file_that_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_settings(tmp_path)


def test_config_file_that_is_a_fifo_is_not_called_missing(tmp_path: Path) -> None:
    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_settings(fifo)


def test_unknown_key_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_inflight"):
        load_settings(toml(tmp_path, "max_inflight = 3\n"))


def test_toml_syntax_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid settings"):
        load_settings(toml(tmp_path, "max_in_flight = \n"))


def test_unknown_override_is_rejected() -> None:
    with pytest.raises(ConfigError, match="max_inflight"):
        load_settings(max_inflight=3)


def test_normalises_case() -> None:
    s = load_settings(log_level="debug", api_method="post")
    assert (s.log_level, s.api_method) == ("DEBUG", "POST")


# -- limits ---------------------------------------------------------------------------------------


def test_limits_maps_the_settings() -> None:
    s = load_settings(max_in_flight=3, rate=12.5, max_attempts=2, cache_ttl=0, adaptive=True)
    limits = s.limits()
    assert isinstance(limits, Limits)
    assert limits.max_in_flight == 3
    assert limits.max_per_second == 12.5
    assert limits.max_attempts == 2
    assert limits.cache_ttl == 0
    assert limits.adaptive is True
    # what settings do not cover keeps the defaults
    assert limits.breaker_threshold == DEFAULT_LIMITS.breaker_threshold
    assert limits.backoff_base == DEFAULT_LIMITS.backoff_base


def test_default_limits() -> None:
    assert load_settings().limits() == DEFAULT_LIMITS


def test_limits_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_MAX_IN_FLIGHT", "2")
    monkeypatch.setenv("LOOKUP_RATE", "none")
    monkeypatch.setenv("LOOKUP_ADAPTIVE", "true")
    limits = load_settings().limits()
    assert (limits.max_in_flight, limits.max_per_second, limits.adaptive) == (2, None, True)


# -- formats of env values, errors that say what is expected ---------------------------


def test_rate_zero_is_an_error_not_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match=r"LOOKUP_RATE \(rate / --rate\).*expected checks per"):
        load_settings(rate="0")
    monkeypatch.setenv("LOOKUP_RATE", "0")
    with pytest.raises(ConfigError, match="LOOKUP_RATE"):
        load_settings()


@pytest.mark.parametrize(
    ("value", "tokens"),
    [
        ("tok-aaaaaaaaaaaaaaaa", ["tok-aaaaaaaaaaaaaaaa"]),
        ("tok-a, tok-b,,", ["tok-a", "tok-b"]),
        ('["tok-a", "tok-b"]', ["tok-a", "tok-b"]),
    ],
)
def test_service_tokens_plain_list_or_json(
    value: str, tokens: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKUP_SERVICE_TOKENS", value)
    assert [t.get_secret_value() for t in load_settings().service_tokens] == tokens


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        ("X-Key: v1", {"X-Key": "v1"}),
        ("X-Key: v1, X-Tenant: 7", {"X-Key": "v1", "X-Tenant": "7"}),
        ('{"X-Key": "v1"}', {"X-Key": "v1"}),
    ],
)
def test_api_headers_plain_list_or_json(
    value: str, headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOKUP_API_HEADERS", value)
    assert load_settings().headers() == headers


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("LOOKUP_SERVICE_TOKENS", "[1, 2", "a JSON list"),
        ("LOOKUP_API_HEADERS", "abc", "'Name: value'"),
        ("LOOKUP_MAX_IN_FLIGHT", "many", "a whole number from 1 to 10000"),
        ("LOOKUP_API_HEADERS", "X Key: v1", "is not a header name"),  # aiohttp sent it: a 400
        ("LOOKUP_API_HEADERS", '{"X-Key": "v\\r\\nX-Evil: 1"}', "line break"),  # header injection
    ],
)
def test_settings_errors_name_the_variable_and_the_format(
    env: str, value: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    text = str(info.value)
    assert env in text and expected in text
    assert "EnvSettingsSource" not in text and value not in text.split("expected")[1]


def test_a_token_with_a_line_break_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOKUP_API_TOKEN", "sk-abcdefgh\nX-Evil: 1")
    with pytest.raises(ConfigError, match=r"LOOKUP_API_TOKEN .*line break") as info:
        load_settings()
    assert "sk-abcdefgh" not in str(info.value)


def test_redacted_hides_url_credentials() -> None:
    s = load_settings(api_url="https://bob:pw@api.example/o?phone={phone}&api_key=k123")
    assert s.redacted()["api_url"] == "https://***@api.example/o?phone={phone}&api_key=***"
    assert {"bob", "pw", "k123"} <= set(s.secret_values())


def test_as_env_sources_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import subprocess

    s = load_settings(rate="none", api_url="http://127.0.0.1:9/o?phone={phone}&x=a b",
                      hit_field="data.total", max_in_flight=3)  # fmt: skip
    env_file = tmp_path / "env"
    env_file.write_text(s.as_env(), encoding="utf-8")
    dump = subprocess.run(
        ["sh", "-c", f"set -a; . {env_file}; env"], capture_output=True, text=True, check=True,
        env={"PATH": "/usr/bin:/bin"},
    ).stdout
    env = dict(line.split("=", 1) for line in dump.splitlines() if line.startswith("LOOKUP_"))
    assert env["LOOKUP_RATE"] == "none"  # not the string "null", not an empty "no limit"
    assert env["LOOKUP_BATCH_URL"] == ""  # None: an empty value, read back as unset
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert load_settings().redacted() == s.redacted()
