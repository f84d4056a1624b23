"""The HTTP service, through a real server on 127.0.0.1 (and the real mock order API behind it)."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import logging
import os
import select
import signal
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from lookup.cli.main import main as cli_main
from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.mockapi.server import MockConfig, MockOrderServer
from lookup.orders import FakeOrderApi
from lookup.runtime.settings import Settings
from lookup.service.app import check_exposure, create_app, is_loopback, serving
from lookup.service.http import caller_name

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
CASE = {c["name"]: c for c in CASES}
TOKENS = ["first-service-token", "second-service-token"]
CITY_HIT = CASE["city hit"]  # 138****2046 in 杭州: 102 candidates in its city tier
AREA_HIT = CASE["area code, city hit"]  # 22 candidates
PROVINCE_HIT = CASE["province hit"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOOKUP_"):
            monkeypatch.delenv(name)


def make_settings(**kw: Any) -> Settings:
    kw.setdefault("rate", None)
    kw.setdefault("max_in_flight", 10)
    kw["service_tokens"] = [SecretStr(t) for t in kw.get("service_tokens", TOKENS)]
    return Settings(**kw)


def auth(token: str = TOKENS[0]) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def body(case: dict[str, Any]) -> dict[str, Any]:
    return {"mask": case["mask"], **case["hints"]}


def demo_orders() -> dict[str, int]:
    return {c["expected_phone"]: 1 for c in CASES if c["expected_phone"]}


@asynccontextmanager
async def running(
    settings: Settings, *, shutdown_timeout: float = 5.0, **kw: Any
) -> AsyncIterator[tuple[str, aiohttp.ClientSession]]:
    app = create_app(settings, **kw)
    async with (
        serving(app, shutdown_timeout=shutdown_timeout) as url,
        aiohttp.ClientSession(url) as session,
    ):
        yield url, session


@pytest.fixture
async def mock() -> AsyncIterator[MockOrderServer]:
    async with MockOrderServer() as server:  # the bundled demo orders
        yield server


@pytest.fixture
async def fake_service() -> AsyncIterator[tuple[aiohttp.ClientSession, FakeOrderApi]]:
    api = FakeOrderApi.from_orders(demo_orders())
    async with running(make_settings(), api=api) as (_, session):
        yield session, api


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[_Lines]:
    """Lines of the audit and access loggers (added to them directly: they may not propagate)."""
    handler = _Lines()
    loggers = [logging.getLogger(n) for n in ("lookup.audit", "aiohttp.access")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


# -- auth ------------------------------------------------------------------------------------


async def test_auth_401_200_and_open_healthz(
    fake_service: tuple[aiohttp.ClientSession, FakeOrderApi], log_lines: _Lines
) -> None:
    session, api = fake_service
    payload = body(AREA_HIT)
    async with session.post("/v1/lookups", json=payload) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="lookup"'
        assert resp.content_type == "application/problem+json"
        problem = await resp.json(content_type=None)
        assert problem["status"] == 401 and problem["type"] == "/docs#problem-unauthorized"
        assert "Bearer" in problem["detail"]
    async with session.post("/v1/lookups", json=payload, headers={"Authorization": "Basic x"}) as r:
        assert r.status == 401
        assert "invalid_token" not in r.headers["WWW-Authenticate"]
    async with session.post("/v1/lookups", json=payload, headers=auth("wrong-token")) as resp:
        assert resp.status == 401  # RFC 6750: an unknown token is 401, not 403
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="lookup", error="invalid_token"'
        problem = await resp.json(content_type=None)
        assert "invalid token" in problem["detail"] and "wrong-token" not in problem["detail"]
    for path in ("/metrics", "/v1/segments/1380571"):
        async with session.get(path) as resp:
            assert resp.status == 401, path
    assert api.calls == []  # nothing reached the order API without a valid token

    async with session.post("/v1/lookups", json=payload, headers=auth(TOKENS[1])) as resp:
        assert resp.status == 200
        assert (await resp.json())["phone"] == AREA_HIT["expected_phone"]
    async with session.get("/healthz") as resp:  # no token needed
        assert resp.status == 200
        health = await resp.json()
    assert health["status"] == "ok" and health["breaker"] == "closed" and health["data_version"]

    audit = [line for line in log_lines.lines if line.startswith("lookup mask=")]
    assert len(audit) == 1 and f" caller={caller_name(TOKENS[1].encode())} request_id=" in audit[0]
    text = "\n".join(log_lines.lines)
    assert all(token not in text for token in TOKENS)
    assert AREA_HIT["expected_phone"] not in text  # masked in audit and access lines alike


async def test_no_tokens_on_loopback_means_no_auth_and_the_peer_is_the_caller(
    log_lines: _Lines,
) -> None:
    api = FakeOrderApi.from_orders(demo_orders())
    async with running(make_settings(service_tokens=[]), api=api) as (_, session):
        async with session.post("/v1/lookups", json=body(AREA_HIT)) as resp:
            assert resp.status == 200
        async with session.get("/metrics") as resp:
            assert resp.status == 200
    assert any(" caller=127.0.0.1 request_id=" in line for line in log_lines.lines)


def test_refuses_a_non_loopback_host_without_tokens() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    with pytest.raises(ConfigError, match="without authentication"):
        create_app(make_settings(service_tokens=[], service_host="0.0.0.0"))
    with pytest.raises(ConfigError, match="empty"):
        check_exposure(make_settings(service_tokens=[" "]))
    check_exposure(make_settings(service_host="0.0.0.0"))  # with tokens: fine

    out, err = io.StringIO(), io.StringIO()
    argv = ["serve", "--host", "0.0.0.0", "--port", "0", "--api", "demo"]
    assert cli_main(argv, stdout=out, stderr=err) == 2
    assert "refusing to serve on 0.0.0.0 without authentication" in err.getvalue()
    assert out.getvalue() == ""


# -- validation and limits -------------------------------------------------------------------


async def test_validation_errors_are_422_naming_the_fields(
    fake_service: tuple[aiohttp.ClientSession, FakeOrderApi],
) -> None:
    session, api = fake_service
    cases: list[tuple[Any, list[str]]] = [
        ({"city": "杭州"}, ["mask"]),
        ({"mask": 13800138000, "max_candidates": "many"}, ["mask", "max_candidates"]),
        ({"mask": "138****2046", "mode": "some"}, ["mode"]),
        ({"mask": "138****2046", "phone": "13800138000"}, ["phone"]),
        ([1, 2], ["body"]),
    ]
    for payload, fields in cases:
        async with session.post("/v1/lookups", json=payload, headers=auth()) as resp:
            assert resp.status == 422, payload
            assert resp.content_type == "application/problem+json"
            text = await resp.text()
        data = json.loads(text)
        assert data["type"] == "/docs#problem-invalid-body" and data["status"] == 422
        assert [e["field"] for e in data["errors"]] == fields
        assert all(e["message"] for e in data["errors"])
        assert "13800138000" not in text and "杭州" not in text  # the body is not echoed
    json_headers = {**auth(), "Content-Type": "application/json"}
    async with session.post("/v1/lookups", data=b"{not json", headers=json_headers) as resp:
        assert resp.status == 422
        data = await resp.json(content_type=None)
    assert data["errors"][0]["field"] == "body" and "JSON" in data["errors"][0]["message"]
    assert api.calls == []


@pytest.mark.parametrize(
    ("payload", "kind", "words", "field"),
    [
        ({"mask": "138****20467"}, "InvalidMaskError", "11", "mask"),
        ({"mask": "17012345678-1234"}, "InvalidMaskError", "privacy", "mask"),
        ({"mask": "138****2046", "city": "Atlantis"}, "UnknownRegionError", "Atlantis", "city"),
        ({"mask": "13*****2046"}, "TooManyCandidatesError", "100,000", "mask"),
        ({"mask": "138****2046", "max_candidates": 10**6}, "ConfigError", "cap",
         "max_candidates"),
    ],
)  # fmt: skip
async def test_input_errors_are_422_with_a_message(
    fake_service: tuple[aiohttp.ClientSession, FakeOrderApi],
    payload: dict[str, Any],
    kind: str,
    words: str,
    field: str,
) -> None:
    session, api = fake_service
    async with session.post("/v1/lookups", json=payload, headers=auth()) as resp:
        assert resp.status == 422
        data = await resp.json(content_type=None)
    assert data["type"] == "/docs#problem-invalid-input"
    assert data["kind"] == kind and words in data["detail"], data
    assert data["errors"][0]["field"] == field
    assert api.calls == []  # input errors are raised before any request


async def test_body_over_the_limit_is_413() -> None:
    api = FakeOrderApi.from_orders({})
    async with running(make_settings(service_max_body=1_000), api=api) as (_, session):
        big = {"mask": "138****2046", "city": "x" * 2_000}
        async with session.post("/v1/lookups", json=big, headers=auth()) as resp:
            assert resp.status == 413
            problem = await resp.json(content_type=None)
            assert "1000" in problem["detail"] and problem["type"] == "/docs#problem-too-large"
        async with session.post("/v1/lookups/batch", json={"lookups": [big]}, headers=auth()) as r:
            assert r.status == 413
    assert api.calls == []


async def test_api_trouble_is_a_200_result_not_a_server_error() -> None:
    def failing(phone: str) -> bool:
        raise TransientApiError("timeout")

    def fatal(phone: str) -> bool:
        raise FatalApiError("401 from the order API", status=401)

    small = {"mask": "1385715204*", "city": "杭州"}  # 10 candidates
    settings = make_settings(max_attempts=1, deadline=2.0)  # failing checks: retried until then
    for handler, status in ((failing, "inconclusive"), (fatal, "api_error")):
        async with running(settings, api=FakeOrderApi(handler)) as (_, session):
            async with session.post("/v1/lookups", json=small, headers=auth()) as resp:
                assert resp.status == 200
                result = await resp.json()
            assert result["status"] == status and result["phone"] is None and result["reason"]


# -- lookups through the real mock order API -------------------------------------------------


async def test_each_demo_case_gives_the_expected_answer(mock: MockOrderServer) -> None:
    settings = make_settings(api_url=mock.orders_url, max_in_flight=64)
    async with running(settings) as (_, session):
        for case in CASES:
            async with session.post("/v1/lookups", json=body(case), headers=auth()) as resp:
                assert resp.status == 200
                result = await resp.json()
            assert result["status"] == case["expected_status"], case["name"]
            assert result["phone"] == case["expected_phone"], case["name"]
            assert result["tier"] == case["expected_tier"], case["name"]
            counts = {t["name"]: t["candidates"] for t in result["tiers"]}
            assert counts == case["tiers"]


async def test_50_concurrent_lookups_share_the_limits(mock: MockOrderServer) -> None:
    settings = make_settings(api_url=mock.orders_url, max_in_flight=10, service_max_queued=50)
    mock.config = MockConfig(latency_ms=2)  # a little latency so that requests overlap
    cases = [CITY_HIT, AREA_HIT, PROVINCE_HIT, CASE["not found"]]
    chosen = [cases[i % len(cases)] for i in range(50)]
    async with running(settings) as (_, session):

        async def one(case: dict[str, Any]) -> dict[str, Any]:
            async with session.post("/v1/lookups", json=body(case), headers=auth()) as resp:
                assert resp.status == 200
                result: dict[str, Any] = await resp.json()
                return result

        results = await asyncio.gather(*(one(c) for c in chosen))
    for case, result in zip(chosen, results, strict=True):
        assert (result["status"], result["phone"]) == (
            case["expected_status"],
            case["expected_phone"],
        )
    stats = mock.stats
    assert 1 < stats.max_concurrent <= 10
    assert set(stats.statuses) == {200}  # no errors (checks cancelled after a hit have none)


async def test_batch_keeps_order_marks_invalid_entries_and_caps_the_size() -> None:
    api = FakeOrderApi.from_orders(demo_orders())
    async with running(make_settings(service_max_batch=5), api=api) as (_, session):
        lookups = [
            {**body(CITY_HIT), "id": "a"},
            {"mask": "138****20467"},
            body(AREA_HIT),
            {"city": "杭州"},
            "not an object",
        ]
        async with session.post(
            "/v1/lookups/batch", json={"lookups": lookups}, headers=auth()
        ) as resp:
            assert resp.status == 200
            answer = await resp.json()
        results = answer["results"]
        assert [r["status"] for r in results] == [
            "matched", "invalid", "matched", "invalid", "invalid",
        ]  # fmt: skip
        assert [r["id"] for r in results] == ["a", 2, 3, 4, 5]
        assert results[0]["phone"] == CITY_HIT["expected_phone"]
        assert results[2]["phone"] == AREA_HIT["expected_phone"]
        assert "11" in results[1]["reason"] and "errors" not in results[1]
        assert results[3]["errors"] == [{"field": "lookups.3.mask", "message": "Field required"}]
        assert results[4]["errors"][0]["field"] == "lookups.4"
        assert answer["summary"]["rows"] == 5
        assert answer["summary"]["by_status"]["matched"] == 2

        too_many = {"lookups": [body(AREA_HIT)] * 6}
        async with session.post("/v1/lookups/batch", json=too_many, headers=auth()) as resp:
            assert resp.status == 413
            assert "at most 5" in (await resp.json(content_type=None))["detail"]
        async with session.post("/v1/lookups/batch", json={"items": []}, headers=auth()) as resp:
            assert resp.status == 422
            fields = [e["field"] for e in (await resp.json(content_type=None))["errors"]]
            assert sorted(fields) == ["items", "lookups"]  # pydantic does not promise an order
        async with session.post("/v1/lookups/batch", json={"lookups": []}, headers=auth()) as resp:
            assert resp.status == 200
            assert (await resp.json())["results"] == []


async def test_batch_runs_lookups_concurrently_but_bounded() -> None:
    running_now = peak = 0

    async def slow(phone: str) -> bool:
        nonlocal running_now, peak
        running_now += 1
        peak = max(peak, running_now)
        await asyncio.sleep(0.01)
        running_now -= 1
        return False

    # One candidate per lookup (a mask with no hidden digit), so API concurrency = lookups.
    masks = [{"mask": f"1385715{n:04d}"} for n in range(20)]
    settings = make_settings(max_in_flight=100, cache_ttl=0)
    async with running(settings, api=FakeOrderApi(slow)) as (_, session):
        resp = await session.post("/v1/lookups/batch", json={"lookups": masks}, headers=auth())
        async with resp:
            results = (await resp.json())["results"]
    assert [x["status"] for x in results] == ["not_found"] * 20
    assert [x["mask"] for x in results] == [m["mask"] for m in masks]
    assert 1 < peak <= 8


# -- segments, metrics -----------------------------------------------------------------------


async def test_segments(fake_service: tuple[aiohttp.ClientSession, FakeOrderApi]) -> None:
    session, _ = fake_service
    async with session.get("/v1/segments/1380571", headers=auth()) as resp:
        assert resp.status == 200
        info = await resp.json()
    assert info["segment"] == "1380571" and info["city"] == "杭州" and info["located"] is True
    async with session.get("/v1/segments/1000000", headers=auth()) as resp:
        assert resp.status == 404
        assert "no segment 1000000" in (await resp.json(content_type=None))["detail"]
    for bad in ("138057", "13805711234", "abcdefg"):
        async with session.get(f"/v1/segments/{bad}", headers=auth()) as resp:
            assert resp.status == 422, bad
    async with session.get("/nowhere", headers=auth()) as resp:
        assert resp.status == 404
        assert resp.content_type == "application/problem+json"
    async with session.get("/v1/lookups", headers=auth()) as resp:
        assert resp.status == 405 and resp.headers["Allow"] == "POST"
        assert (await resp.json(content_type=None))["type"] == "/docs#problem-method-not-allowed"


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_lookups_checks_and_expose_the_breaker() -> None:
    api = FakeOrderApi.from_orders(demo_orders())
    async with running(make_settings(), api=api) as (_, session):

        async def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            async with session.get("/metrics", headers=auth()) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                return samples(await resp.text())

        before = await scrape()
        for case in (CITY_HIT, AREA_HIT, CASE["not found"]):
            async with session.post("/v1/lookups", json=body(case), headers=auth()) as resp:
                assert resp.status == 200
        async with session.post("/v1/lookups", json={"mask": "1"}, headers=auth()) as resp:
            assert resp.status == 422
        after = await scrape()

    def status(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("lookup_lookups_total", (("status", name), ("surface", "service")))

    def outcome(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("lookup_numbers_checked_total", (("outcome", name),))

    def requests(name: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return ("lookup_api_requests_total", (("outcome", name),))

    assert before[status("matched")] == 0 and before[outcome("miss")] == 0
    assert after[status("matched")] == 2
    assert after[status("not_found")] == 1
    assert after[status("invalid")] == 1
    assert after[status("api_error")] == 0
    assert after[outcome("hit")] == 2
    assert after[outcome("miss")] >= 1_000  # the not-found case checked its 1,000 candidates
    answered = after[outcome("hit")] + after[outcome("miss")]
    # one number per request here (no batch endpoint): every answered request is a number
    assert after[requests("answered")] == answered
    sent = sum(v for (name, _), v in after.items() if name == "lookup_api_requests_total")
    assert sent == len(api.calls)  # calls include the ones cancelled after a hit: unfinished
    assert after[requests("unfinished")] == len(api.calls) - answered
    assert after[("lookup_breaker_state", ())] == 0
    assert after[("lookup_api_requests_in_flight", ())] == 0
    assert after[("lookup_lookups_in_progress", ())] == 0
    assert after[("lookup_api_retries_total", ())] == 0
    assert after[requests("throttled")] == 0
    name = "lookup_api_request_duration_seconds"
    buckets = [k for k in after if k[0] == f"{name}_bucket"]
    assert len(buckets) > 5
    assert after[(f"{name}_count", (("outcome", "answered"),))] == answered
    assert after[(f"{name}_bucket", (("le", "+Inf"), ("outcome", "answered")))] == answered
    assert after[("lookup_lookup_duration_seconds_count", (("surface", "service"),))] == 3


async def test_metrics_see_429s_retries_fatal_errors_and_an_open_breaker(
    mock: MockOrderServer,
) -> None:
    settings = make_settings(
        api_url=mock.orders_url, max_in_flight=1, max_attempts=2, deadline=3.0
    )
    async with running(settings) as (_, session):

        async def lookup(payload: dict[str, Any]) -> str:
            async with session.post("/v1/lookups", json=payload, headers=auth()) as resp:
                assert resp.status == 200
                status: str = (await resp.json())["status"]
                return status

        # One request per second: the first number gets an answer at once, the second 429s
        # until the window frees; v2 waits that out (backpressure, not a failure).
        mock.config = MockConfig(rate_limit=1, retry_after=0)
        assert await lookup({"mask": "13857150001"}) == "not_found"
        assert await lookup({"mask": "13857150002"}) == "not_found"
        mock.config = MockConfig(token="only-the-mock-knows")  # 401: fatal
        assert await lookup({"mask": "13857150003"}) == "api_error"
        mock.config = MockConfig(error_rate=1)  # 500s until the breaker opens
        # the failing candidates are deferred; the breaker opens while they are
        # retried and keeps them out until the deadline: unresolved, so inconclusive.
        assert await lookup(body(CITY_HIT)) == "inconclusive"
        async with session.get("/metrics", headers=auth()) as resp:
            after = samples(await resp.text())
        async with session.get("/healthz") as resp:
            health = await resp.json()
    assert after[("lookup_api_retries_total", ())] >= 1
    assert after[("lookup_api_requests_total", (("outcome", "fatal"),))] == 1
    # the rate the checker learned from the 429s carries over (one shared checker), so
    # the failing lookup sends only a few requests before its 3 s deadline, too few to open
    # the breaker (the breaker's own behaviour is in tests/test_checker.py).
    assert after[("lookup_api_requests_total", (("outcome", "5xx"),))] >= 1
    assert after[("lookup_api_requests_total", (("outcome", "throttled"),))] >= 2
    throttled = after[("lookup_api_request_duration_seconds_count", (("outcome", "throttled"),))]
    assert throttled == after[("lookup_api_requests_total", (("outcome", "throttled"),))]
    assert after[("lookup_breaker_state", ())] in (0, 1, 2)
    assert health["breaker"] in ("closed", "half_open", "open")
    lookups = {
        dict(k[1])["status"]: v
        for k, v in after.items()
        if k[0] == "lookup_lookups_total" and dict(k[1])["surface"] == "service"
    }
    assert lookups == {
        "matched": 0, "not_found": 2, "inconclusive": 1, "api_error": 1, "invalid": 0,
    }  # fmt: skip


# -- lifecycle -------------------------------------------------------------------------------


async def test_shutdown_lets_an_in_flight_lookup_finish(mock: MockOrderServer) -> None:
    mock.config = MockConfig(latency_ms=20)
    settings = make_settings(api_url=mock.orders_url, max_in_flight=4)
    async with aiohttp.ClientSession() as client:
        app = create_app(settings)
        async with serving(app, shutdown_timeout=20) as url:
            task = asyncio.create_task(
                client.post(f"{url}/v1/lookups", json=body(CITY_HIT), headers=auth())
            )
            await asyncio.wait_for(mock.wait_for(lambda s: s.concurrent > 0), 10)
        # serving() has returned: the lookup finished first, then the session closed.
        resp = await task
        async with resp:
            assert resp.status == 200
            assert (await resp.json())["phone"] == CITY_HIT["expected_phone"]
    gc.collect()  # an unclosed session would warn now (warnings are errors)


async def test_shutdown_cancels_lookups_that_outlast_the_grace(mock: MockOrderServer) -> None:
    mock.config = MockConfig(latency_ms=200)
    settings = make_settings(api_url=mock.orders_url, max_in_flight=2)
    async with aiohttp.ClientSession() as client:
        app = create_app(settings)
        async with serving(app, shutdown_timeout=0.2) as url:
            task = asyncio.create_task(
                client.post(f"{url}/v1/lookups", json=body(CITY_HIT), headers=auth())
            )
            await asyncio.wait_for(mock.wait_for(lambda s: s.concurrent > 0), 10)
        with pytest.raises(aiohttp.ClientError):
            async with await task:
                pass
        await asyncio.wait_for(mock.wait_for(lambda s: s.concurrent == 0), 10)
        sent = mock.stats.orders_requests
        await asyncio.sleep(0.3)
        assert mock.stats.orders_requests == sent  # nothing is sent after the stop
    gc.collect()


async def test_a_client_that_goes_away_cancels_its_lookup() -> None:
    api = FakeOrderApi.from_orders({}, latency=0.05)
    async with running(make_settings(max_in_flight=2), api=api) as (url, _):
        async with aiohttp.ClientSession() as client:
            with pytest.raises(asyncio.TimeoutError):
                async with client.post(
                    f"{url}/v1/lookups",
                    json=body(CITY_HIT),
                    headers=auth(),
                    timeout=aiohttp.ClientTimeout(total=0.3),
                ):
                    pass
        for _ in range(100):
            if api.in_flight == 0:
                break
            await asyncio.sleep(0.02)
        calls = len(api.calls)
        await asyncio.sleep(0.2)
        assert api.in_flight == 0 and len(api.calls) == calls
        assert calls < 102  # the city tier was not finished


def test_serve_as_a_process_with_the_demo_api() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookup", "serve", "--api", "demo", "--port", "0",
         "--log-level", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        assert ready, "no listening line within 30 s"
        line = proc.stdout.readline()
        assert line.startswith("lookup service listening on http://127.0.0.1:"), line
        assert "(order API: bundled demo order API at http://127.0.0.1:" in line
        url = line.split()[4]
        assert not url.endswith(":0")
        with urllib.request.urlopen(f"{url}/healthz", timeout=10) as resp:
            assert json.load(resp)["status"] == "ok"
        request = urllib.request.Request(
            f"{url}/v1/lookups",
            data=json.dumps(body(CITY_HIT)).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=20) as resp:
            assert json.load(resp)["phone"] == CITY_HIT["expected_phone"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        out, err = proc.communicate(timeout=5)
        assert out == ""
        assert "authentication is OFF" in err
        assert "caller=127.0.0.1" in err  # the audit line
        assert CITY_HIT["expected_phone"] not in err
        assert "Traceback" not in err and "Unclosed" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_app_is_an_aiohttp_application() -> None:
    app = create_app(make_settings(), api=FakeOrderApi.from_orders({}))
    assert isinstance(app, web.Application)
    paths = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    assert {"/v1/lookups", "/v1/lookups/batch", "/healthz", "/metrics"} <= paths


# -- several sightings -------------------------------------------------------------------------


async def test_also_is_intersected_and_a_contradiction_is_422_on_also(
    fake_service: tuple[aiohttp.ClientSession, FakeOrderApi],
) -> None:
    session, api = fake_service
    hit = CITY_HIT["expected_phone"]
    sighting = hit[:7] + "****"
    payload = {"mask": CITY_HIT["mask"], "also": [sighting]}
    async with session.post("/v1/lookups", json=payload, headers=auth()) as resp:
        assert resp.status == 200
        result = await resp.json()
    assert result["status"] == "matched" and result["phone"] == hit
    assert api.calls == [hit]
    wrong = {"mask": CITY_HIT["mask"], "also": [sighting, hit[:3] + "****" + "9999"]}
    async with session.post("/v1/lookups", json=wrong, headers=auth()) as resp:
        assert resp.status == 422
        problem = await resp.json(content_type=None)
    assert problem["kind"] == "SightingsDisagreeError"
    assert problem["errors"][0]["field"] == "also"
    assert "disagree at digit 8" in problem["detail"]
    batch = {"lookups": [{"mask": CITY_HIT["mask"], "also": [sighting]}, wrong]}
    async with session.post("/v1/lookups/batch", json=batch, headers=auth()) as resp:
        results = (await resp.json())["results"]
    assert [r["status"] for r in results] == ["matched", "invalid"]
    assert "disagree at digit 8" in results[1]["reason"]
    assert api.calls == [hit]  # the second lookup came from the cache; nothing else was sent
