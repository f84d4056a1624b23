"""End to end: ``find`` with ``HttpOrderApi`` against the bundled ``MockOrderServer`` on loopback.

Every test runs the real mock (aiohttp server, SQLite orders, fault knobs) in the test's
event loop. ``asyncio.timeout`` only guards against hangs; it never synchronises.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import pytest

from lookup.domain.models import Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.mockapi.server import MockConfig, MockOrderServer
from lookup.orders.http import HttpOrderApi, Timeouts

ROOT = Path(__file__).resolve().parent.parent
CASES: list[dict[str, Any]] = json.loads((ROOT / "data" / "demo_cases.json").read_text("utf-8"))
with (ROOT / "data" / "demo_orders.csv").open(encoding="utf-8-sig", newline="") as _f:
    ORDERS = {row["phone"]: int(row["total"]) for row in csv.DictReader(_f)}
FAST = Limits(max_in_flight=64, max_per_second=None)
GUARD = 30  # seconds: a hang fails the test instead of the run


def case_named(tier: str | None) -> dict[str, Any]:
    return next(c for c in CASES if c["expected_tier"] == tier and "area_code" not in c["hints"])


def check_case(result: Any, case: dict[str, Any]) -> None:
    assert result.status == case["expected_status"], (case["name"], result.reason)
    assert result.phone == case["expected_phone"], case["name"]
    assert result.tier == case["expected_tier"], case["name"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_demo_case(case: dict[str, Any]) -> None:
    async with (
        MockOrderServer() as server,
        HttpOrderApi(server.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        result = await find(case["mask"], api=api, limits=FAST, **case["hints"])
        check_case(result, case)
        report = {t.name: t for t in result.tiers}
        assert {name: t.candidates for name, t in report.items()} == case["tiers"]
        if case["expected_phone"]:
            assert result.hits[0].order_count == ORDERS[case["expected_phone"]]
            assert report[case["expected_tier"]].status == "hit"
        else:
            assert all(t.status in ("negative", "empty") for t in result.tiers)
        stats = server.stats
        assert stats.status(200) <= result.checks_sent
        assert stats.orders_requests <= result.checks_sent
        assert result.retries == 0


@pytest.mark.parametrize("tier", ["city", "province", "national"])
async def test_right_answer_despite_errors_and_resets(tier: str) -> None:
    case = case_named(tier)
    config = MockConfig(error_rate=0.2, reset_rate=0.1, seed=1)
    limits = Limits(
        max_in_flight=32,
        max_per_second=None,
        max_attempts=8,
        backoff_base=0.001,
        backoff_cap=0.01,
        breaker_threshold=1000,
        retry_budget_ratio=1.0,
        retry_budget_min=1000,
    )
    async with (
        MockOrderServer(config=config) as server,
        HttpOrderApi(server.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        result = await find(case["mask"], api=api, limits=limits, **case["hints"])
        check_case(result, case)
        stats = server.stats
        assert stats.status(500) > 0 and stats.resets > 0  # the faults really happened
        assert result.retries > 0
        assert result.checks_sent >= sum(t.checked for t in result.tiers) + result.retries


async def test_hanging_server_gives_inconclusive_in_bounded_time() -> None:
    mask = "138571520**"  # 100 candidates in 杭州
    limits = Limits(
        max_in_flight=100,
        max_per_second=None,
        start_rate=None,  # unpaced: all 100 go at once (a paced start sends ~50/s)
        max_attempts=2,
        backoff_base=0.001,
        breaker_threshold=10_000,
        deadline=4.0,  # failing checks are retried until the deadline; room for a loaded CI
    )
    timeouts = Timeouts(total=0.3, read=0.3, connect=0.3)
    async with (
        MockOrderServer(config=MockConfig(hang_rate=1)) as server,
        HttpOrderApi(server.orders_url, timeouts=timeouts) as api,
        asyncio.timeout(GUARD),
    ):
        result = await find(mask, api=api, city="杭州", limits=limits)
        assert result.status == "inconclusive"
        assert result.phone is None
        city = result.tiers[0]
        assert (city.name, city.status, city.unresolved, city.checked) == (
            "city", "inconclusive", 100, 0
        )  # fmt: skip
        assert result.reason is not None and "city" in result.reason
        # Every candidate was sent at least once. Counted by the client: on a starved loop
        # (the mock shares it) a connect can time out before the server sees the request.
        assert result.requests >= 100, (result.requests, server.stats)
        assert server.stats.hangs > 0 and server.stats.hangs <= result.requests


async def test_rate_limited_server_is_respected() -> None:
    hit = "13857152299"
    mask = "13857152***"  # 1,000 candidates; the hit is the 300th
    limits = Limits(max_in_flight=20, max_per_second=150)
    async with (
        MockOrderServer({hit: 1}, config=MockConfig(rate_limit=200)) as server,
        HttpOrderApi(server.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        result = await find(mask, api=api, city="杭州", limits=limits)
        assert (result.status, result.phone) == ("matched", hit)
        stats = server.stats
        assert stats.orders_requests >= 300
        assert stats.status(429) <= 0.02 * stats.orders_requests


async def test_429_with_retry_after_is_honoured() -> None:
    mask = "139057100**"  # 100 candidates, no orders
    in_flight = 10
    limits = Limits(max_in_flight=in_flight, max_per_second=None, breaker_threshold=1000)
    # 50 per second: half the tier is refused with Retry-After: 1 (whole seconds).
    async with (
        MockOrderServer({}, config=MockConfig(rate_limit=50)) as server,
        HttpOrderApi(server.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, limits)
        result = await find(mask, checker=checker, city="杭州")
        assert result.status == "not_found"
        assert result.tiers[0].checked == 100
        refused = server.stats.status(429)
        assert refused > 0
        assert checker.counters.rate_limited == refused
        # The first 429 pauses the whole checker: only requests already in flight meet one.
        assert refused <= 2 * in_flight
        assert result.retries >= refused


async def test_early_stop_leaves_the_connection_pool_healthy() -> None:
    early: dict[str, Any] = {  # the hit is the 47th of 1,000: the stop cancels checks in flight
        "name": "early city hit",
        "mask": "13857152***",
        "hints": {"city": "杭州"},
        "expected_status": "matched",
        "expected_tier": "city",
        "expected_phone": "13857152046",
    }
    async with (
        MockOrderServer(config=MockConfig(latency_ms=2)) as server,
        HttpOrderApi(server.orders_url, max_connections=1) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, Limits(max_in_flight=8, max_per_second=None))
        for case in (early, CASES[4], early):
            checker.clear_cache()
            result = await find(case["mask"], checker=checker, **case["hints"])
            check_case(result, case)
            if case is early:
                # requests on the wire at the hit land (nothing is cut), so every
                # request sent got its answer.
                assert result.checks_sent == sum(t.checked for t in result.tiers)
        assert checker.in_flight == 0
        # A plain check afterwards goes through on the one connection.
        outcome = await api.check(early["expected_phone"])
        assert outcome.has_orders


async def test_breaker_opens_against_a_failing_server() -> None:
    threshold, in_flight, attempts = 10, 8, 3
    limits = Limits(
        max_in_flight=in_flight,
        max_per_second=None,
        breaker_threshold=threshold,
        max_attempts=attempts,
        backoff_base=0.001,
        deadline=1.0,  # lookups wait for the breaker's probe until their deadline
    )
    async with (
        MockOrderServer(config=MockConfig(error_rate=1)) as server,
        HttpOrderApi(server.orders_url) as api,
        asyncio.timeout(GUARD),
    ):
        checker = Checker(api, limits)
        result = await find("13857152***", checker=checker, city="杭州")
        assert result.status == "api_error"
        assert result.reason is not None and "before the lookup's deadline" in result.reason
        assert "circuit breaker" in result.reason
        assert result.tiers[0].status == "aborted"
        assert checker.breaker_state == "open"
        requests = server.stats.orders_requests
        assert server.stats.status(200) == 0
        # Requests cancelled at the abort may not have reached the server: <=, not ==.
        assert requests <= result.checks_sent <= threshold + in_flight * attempts
        assert requests >= threshold


async def test_batch_endpoint_returns_the_right_totals() -> None:
    phones = [c["expected_phone"] for c in CASES if c["expected_phone"]]
    unknown = ["13905710000", "13905710001"]
    wanted = [*phones, *unknown, phones[0]]  # a duplicate is sent once
    async with (
        MockOrderServer() as server,
        HttpOrderApi(server.orders_url, batch_url=server.batch_url) as api,
        asyncio.timeout(GUARD),
    ):
        assert api.batch_supported
        outcomes = await api.check_many(wanted)
        assert list(outcomes) == [*phones, *unknown]
        for phone in phones:
            assert outcomes[phone].has_orders
            assert outcomes[phone].order_count == ORDERS[phone]
        for phone in unknown:
            assert not outcomes[phone].has_orders
            assert outcomes[phone].order_count == 0
        stats = server.stats
        assert (stats.batch_requests, stats.orders_requests) == (1, 1)
        assert stats.phones_checked == len(phones) + len(unknown)
        assert await api.check_many([]) == {}
        assert server.stats.batch_requests == 1
