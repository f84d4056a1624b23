"""The engine against the conditions of real order APIs, on loopback.

Real servers only: the bundled :class:`MockOrderServer` (faults, outages, throttle bodies)
and, where the quota matters, a real nginx ``limit_req`` in front of it (bare 429s, no
``Retry-After``). The speed targets (goodput, 429 share) live in
``scripts/bench.py quota``; here only correctness and loose sanity bounds are asserted.
``asyncio.timeout`` only guards against hangs; it never synchronises.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from support.nginx import NginxLimiter

import lookup
from lookup.domain.models import Limits, LookupResult
from lookup.domain.tiers import plan
from lookup.engine.batch import BatchRow, run_batch
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.mockapi.server import MockConfig, MockOrderServer
from lookup.orders.http import HttpOrderApi

ROOT = Path(__file__).resolve().parents[2]
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
GUARD = 60  # seconds: a hang fails the test instead of the run

QUOTA_MASK = "199****0000"
QUOTA_CITY = "广州"
NGINX_RATE = 100
NGINX_BURST = 20

NATIONAL = next(c for c in CASES if c["expected_tier"] == "national")  # 186****3357, 杭州


def province_hit() -> tuple[str, int]:
    """A number of the province tier of 199****0000 near 广州 (60 % into that tier), and
    how many candidates come before it in tier order."""
    tiers = plan(QUOTA_MASK, city=QUOTA_CITY).tiers
    city, province = tiers[0], tiers[1]
    assert (city.name, province.name) == ("city", "province")
    at = int(province.count * 0.6)
    return list(province)[at], city.count + at


def assert_national_hit(result: LookupResult) -> None:
    assert (result.status, result.phone, result.tier) == (
        "matched", NATIONAL["expected_phone"], "national",
    ), result.reason  # fmt: skip


# -- behind nginx limit_req: bare 429s are backpressure, not failures -----------------------


@pytest.mark.parametrize("ceiling", [None, 300.0, 100.0], ids=["no-ceiling", "300", "100"])
async def test_bare_429s_from_nginx_never_open_the_breaker(
    nginx_binary: str, ceiling: float | None
) -> None:
    hit, before = province_hit()
    limits = Limits(max_in_flight=20, max_per_second=ceiling, cache_ttl=0)
    async with MockOrderServer({hit: 2}) as mock:
        limiter = NginxLimiter(
            ("127.0.0.1", mock.port), rate=NGINX_RATE, burst=NGINX_BURST, binary=nginx_binary
        )
        async with (
            limiter as nginx,
            HttpOrderApi(nginx.orders_url) as api,
            asyncio.timeout(GUARD),
        ):
            checker = Checker(api, limits)
            result = await find(QUOTA_MASK, city=QUOTA_CITY, checker=checker, limits=limits)
        served = mock.stats

    assert (result.status, result.phone, result.tier) == ("matched", hit, "province")
    assert result.complete
    counters = checker.counters
    assert counters.breaker_opens == 0 and checker.breaker_state == "closed"
    assert counters.transient_errors == 0 and counters.fatal_errors == 0
    log = nginx.log()  # final: nginx has stopped
    counts = log.counts()
    assert set(counts) <= {200, 429}
    assert sum(counts.values()) == result.checks_sent == counters.requests
    assert log.passed() == counts.get(200, 0) == served.orders_requests
    assert log.rejected() == counters.throttled
    assert log.passed() >= before + 1  # every candidate up to the hit got an answer
    if ceiling is None or ceiling > NGINX_RATE:
        # Unpaced (or paced above the quota) the burst runs out: nginx must have said no.
        assert counters.throttled > 0
    assert log.throttled_share() < 0.5  # a loose sanity bound; the targets are in the bench


# -- throttle signals in a 200 body ---------------------------------------------------------

BODY_HIT = "13857152299"
BODY_MASK = "13857152***"  # 1,000 candidates in 杭州; the hit is the 300th
BODY_CONFIG = MockConfig(rate_limit=200, rate_limit_style="body")
BODY_LIMITS = Limits(max_in_flight=20, max_per_second=None, cache_ttl=0)


async def test_throttle_body_with_throttled_when_is_backpressure() -> None:
    async with (
        MockOrderServer({BODY_HIT: 1}, config=BODY_CONFIG) as mock,
        HttpOrderApi(mock.orders_url, throttled_when=["code=429"]) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, BODY_LIMITS)
        result = await find(BODY_MASK, city="杭州", checker=checker)
        served = mock.stats
    assert (result.status, result.phone) == ("matched", BODY_HIT), result.reason
    assert served.throttled > 0  # the mock really answered throttle bodies
    assert checker.counters.throttled == served.throttled
    assert checker.counters.breaker_opens == 0 and checker.counters.fatal_errors == 0
    assert served.orders_requests == result.checks_sent


async def test_throttle_body_without_throttled_when_is_a_fatal_missing_field() -> None:
    async with (
        MockOrderServer({BODY_HIT: 1}, config=BODY_CONFIG) as mock,
        HttpOrderApi(mock.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, BODY_LIMITS)
        result = await find(BODY_MASK, city="杭州", checker=checker)
        served = mock.stats
    assert served.throttled > 0
    assert result.status == "api_error" and result.phone is None
    assert result.reason is not None and "no field 'total'" in result.reason, result.reason
    assert checker.counters.fatal_errors >= 1 and checker.counters.throttled == 0


# -- sustained faults: patience, and every request counted ----------------------------------


@pytest.mark.parametrize("error_rate", [0.2, 0.3])
async def test_national_hit_under_errors_and_resets(error_rate: float) -> None:
    config = MockConfig(error_rate=error_rate, reset_rate=0.1, seed=8)
    # The default retry, budget and breaker settings: only pacing and the cache are off.
    limits = Limits(max_in_flight=32, max_per_second=None, cache_ttl=0)
    async with (
        MockOrderServer(config=config) as mock,
        HttpOrderApi(mock.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, limits)
        result = await find(NATIONAL["mask"], checker=checker, **NATIONAL["hints"])
        served = mock.stats
    assert_national_hit(result)
    assert served.resets > 0 and served.status(500) > 0  # the faults really happened
    assert result.retries > 0
    # Every request the server saw was one the lookup counted: aiohttp's silent resend of
    # a GET on a dead pooled connection is off, and nothing was sent outside the checker.
    assert served.orders_requests == result.checks_sent == checker.counters.requests
    counters = checker.counters
    assert counters.resets >= served.resets and counters.server_errors == served.status(500)


async def test_an_outage_in_the_middle_of_a_lookup_ends_matched() -> None:
    # 8 s of 503 without Retry-After, starting after 300 answered requests (in the
    # province tier, the hit is in the national one): the breaker opens, checks wait for
    # its probe instead of failing, and the lookup resumes once the API is back.
    config = MockConfig(outage_after=300, outage_seconds=8.0)
    limits = Limits(max_in_flight=32, max_per_second=None, cache_ttl=0, breaker_cooldown=2)
    async with (
        MockOrderServer(config=config) as mock,
        HttpOrderApi(mock.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, limits)
        result = await find(NATIONAL["mask"], checker=checker, **NATIONAL["hints"])
        served = mock.stats
    assert_national_hit(result)
    assert result.complete, result.reason
    assert served.status(503) > 0
    assert checker.counters.breaker_opens >= 1
    assert checker.breaker_state == "closed"
    assert served.orders_requests == result.checks_sent


# -- concurrent lookups through one checker -------------------------------------------------

FOUND = [c for c in CASES if c["expected_status"] == "matched"]
ROWS = [c for c in CASES for _ in range(4)]  # the 6 demo cases x 4: 24 lookups


def batch_row(n: int, case: dict[str, Any]) -> BatchRow:
    return BatchRow(row=n, mask=case["mask"], **case["hints"])


async def test_24_concurrent_finds_send_about_what_run_batch_sends() -> None:
    limits = Limits(max_in_flight=64, max_per_second=None, cache_ttl=0)
    async with MockOrderServer() as mock, HttpOrderApi(mock.orders_url) as api:
        async with asyncio.timeout(GUARD):
            shared = Checker(api, limits)
            results = await asyncio.gather(
                *(find(c["mask"], checker=shared, **c["hints"]) for c in ROWS)
            )
        concurrent_sent = sum(r.checks_sent for r in results)
        assert mock.stats.orders_requests == shared.counters.requests

        mock.reset_stats()
        async with asyncio.timeout(GUARD):
            batch_checker = Checker(api, limits)
            rows = [batch_row(n, c) for n, c in enumerate(ROWS, 1)]
            summary = await run_batch(rows, checker=batch_checker)
        assert mock.stats.orders_requests == batch_checker.counters.requests

    for case, result in zip(ROWS, results, strict=True):
        assert (result.status, result.phone) == (case["expected_status"], case["expected_phone"])
    assert summary.rows == 24 and summary.all_definite
    assert summary.by_status["matched"] == 4 * len(FOUND)
    assert concurrent_sent <= 1.05 * summary.checks_sent, (concurrent_sent, summary.checks_sent)


async def test_8_concurrent_finds_keep_to_max_in_flight_connections() -> None:
    limits = Limits(max_in_flight=16, max_per_second=None, cache_ttl=0)
    cases = ROWS[:8]
    async with (
        MockOrderServer(config=MockConfig(latency_ms=2)) as mock,
        HttpOrderApi(mock.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, limits)
        results = await asyncio.gather(
            *(find(c["mask"], checker=checker, **c["hints"]) for c in cases)
        )
        served = mock.stats
    for case, result in zip(cases, results, strict=True):
        assert (result.status, result.phone) == (case["expected_status"], case["expected_phone"])
    # A hit leaves requests already on the wire to land: their connections stay pooled.
    assert 1 <= served.connections <= limits.max_in_flight, served.connections
    assert served.max_concurrent <= limits.max_in_flight


# -- find_sync with an adapter that is not open ---------------------------------------------


async def test_find_sync_opens_an_adapter_that_is_not_open() -> None:
    case = FOUND[0]
    async with MockOrderServer() as mock, asyncio.timeout(GUARD):
        api = HttpOrderApi(mock.orders_url)
        assert not api.is_open
        # find_sync blocks its thread on its own loop: run it off the mock's loop.
        result = await asyncio.to_thread(
            lookup.find_sync, case["mask"], api=api, timeout=GUARD, **case["hints"]
        )
    assert (result.status, result.phone) == ("matched", case["expected_phone"]), result.reason
