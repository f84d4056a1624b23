"""Settings that cannot work are refused at start-up, in one line, not per check."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from lookup.domain.errors import ConfigError
from lookup.runtime.settings import load_settings

API = "http://127.0.0.1:9/orders?phone={phone}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("field", ["total_timeout", "connect_timeout", "read_timeout",
                                   "deadline", "rate", "cache_ttl", "service_read_timeout",
                                   "shared_fallback_rate", "service_job_retention"])  # fmt: skip
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "NaN", -1.0])
def test_seconds_and_rates_are_finite_numbers(field: str, value: object) -> None:
    if field == "cache_ttl" and value == -1.0:
        value = -0.5
    with pytest.raises(ConfigError):
        load_settings(api_url=API, **{field: value})


@pytest.mark.parametrize(
    "extra",
    [
        {"api_token": SecretStr("tok-abcdef123456")},
        {"api_headers": {"Authorization": SecretStr("Basic eDp5")}},
        {"api_headers": {"authorization": SecretStr("Bearer tok-abcdef123456")}},
    ],
)
@pytest.mark.parametrize("field", ["api_url", "batch_url"])
def test_url_credentials_and_a_token_at_once_are_a_start_up_error(
    extra: dict[str, object], field: str
) -> None:
    urls = {"api_url": API, field: "https://bob:pw@orders.example/check?phone={phone}"}
    with pytest.raises(ConfigError, match="keep one") as caught:
        load_settings(**urls, **extra)  # type: ignore[arg-type]
    assert "pw" not in str(caught.value).replace("password", "")


def test_url_credentials_alone_or_a_token_alone_are_fine() -> None:
    load_settings(api_url="https://bob:pw@orders.example/check?phone={phone}")
    load_settings(api_url=API, api_token=SecretStr("tok-abcdef123456"))
    load_settings(api_url="postgresql://u:pw@127.0.0.1/db", api_token=SecretStr("tok-abcdef1"))
