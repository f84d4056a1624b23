"""Tests of lookup.engine.matcher: the tier-by-tier match against an in-memory FakeOrderApi.

No network. Orders are planted in chosen tiers of a small plan: ``1**5715204*`` with the
hint 杭州 gives 340 city, 10 province, 140 national and 30 unlocated candidates
(and 20 in 1465715, 1485715, data-only blocks outside the numbering plan: excluded). Where
timing matters the tests synchronise on events, never on sleeps; the rate-limit test
runs on a virtual clock.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from itertools import islice, pairwise
from typing import Any

import pytest
from support.fakes import FakeTime

from lookup.domain.errors import (
    CircuitOpenError,
    ConfigError,
    FatalApiError,
    InputError,
    TooManyCandidatesError,
    TransientApiError,
    UnknownRegionError,
)
from lookup.domain.models import Limits, LookupResult
from lookup.domain.tiers import TierPlan, plan
from lookup.engine.checker import Checker
from lookup.engine.matcher import find, match_plan
from lookup.orders import FakeOrderApi

CITY = "杭州"
MASK = "1**5715204*"  # city 340, province 10, national 140, unlocated 30 (+ 20 excluded)
SMALL = "138571520**"  # 100 candidates, all in the city tier
PLAN: TierPlan = plan(MASK, city=CITY)
TIER_NAMES = ("city", "province", "national", "unlocated")
ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")


def tier(name: str, mask: str = MASK) -> list[str]:
    p = PLAN if mask == MASK else plan(mask, city=CITY)
    return list(p.tier(name))  # type: ignore[arg-type]


def limits(**overrides: Any) -> Limits:
    """No rate limit and no cache unless a test asks: every lookup starts from scratch.

    A 1 s deadline: failing checks are retried until the deadline (v2), so a lookup that
    must end ``inconclusive`` takes that long."""
    base: dict[str, Any] = {"max_per_second": None, "start_rate": None, "cache_ttl": 0.0,
                            "deadline": 1.0}
    return Limits(**(base | overrides))


def tiers_called(api: FakeOrderApi) -> set[str | None]:
    return {PLAN.tier_of(phone) for phone in api.calls}


def transient(phone: str) -> TransientApiError:
    return TransientApiError(f"HTTP 503 for {phone[:3]}****{phone[-4:]}", status=503)


@pytest.fixture(autouse=True)
def _layout() -> None:
    counts = {t.name: t.count for t in PLAN.tiers}
    assert counts == {"city": 340, "province": 10, "national": 140, "unlocated": 30}


# ---------------------------------------------------------------------------------------
# first positive wins, tier order


@pytest.mark.parametrize("index", [0, 37, 99])
async def test_positive_wins_over_faster_negatives(index: int) -> None:
    candidates = tier("city", SMALL)
    hit = candidates[index]
    negatives_left = len(candidates) - 1
    release = asyncio.Event()

    async def handler(phone: str) -> int:
        nonlocal negatives_left
        if phone == hit:
            await release.wait()  # answered only after every negative
            return 2
        negatives_left -= 1
        if negatives_left == 0:
            release.set()
        return 0

    api = FakeOrderApi(handler)
    result = await find(SMALL, api=api, city=CITY, limits=limits(max_in_flight=8))
    assert result.status == "matched"
    assert result.phone == hit
    assert result.tier == "city"
    assert result.tiers[0].checked == len(candidates)
    assert sorted(api.calls) == sorted(candidates)


@pytest.mark.parametrize(
    ("first", "later"),
    [("city", "province"), ("province", "national"), ("national", "unlocated"),
     ("city", "unlocated")],
)  # fmt: skip
async def test_earlier_tier_wins_and_later_tiers_are_never_checked(first: str, later: str) -> None:
    hit, other = tier(first)[3], tier(later)[0]
    api = FakeOrderApi.from_orders({hit: 1, other: 1})
    result = await find(MASK, api=api, city=CITY, limits=limits(max_in_flight=8))
    assert (result.status, result.phone, result.tier) == ("matched", hit, first)
    assert [h.phone for h in result.hits] == [hit]
    stop = TIER_NAMES.index(first)
    assert tiers_called(api) == set(TIER_NAMES[: stop + 1])
    for name in TIER_NAMES[:stop]:  # every earlier tier was checked in full
        assert set(tier(name)) <= set(api.calls)
    for report in result.tiers[stop + 1 :]:
        assert (report.status, report.checked) == ("skipped", 0)


async def test_province_hit_skips_national() -> None:
    province_hit, national_hit = tier("province")[6], tier("national")[1]
    api = FakeOrderApi.from_orders({province_hit: 1, national_hit: 1})
    result = await find(MASK, api=api, city=CITY, limits=limits())
    assert result.phone == province_hit
    assert result.tier == "province"
    assert not set(tier("national")) & set(api.calls)
    assert [r.status for r in result.tiers] == ["negative", "hit", "skipped", "skipped"]


# ---------------------------------------------------------------------------------------
# failed checks: retried at the end of the tier, else inconclusive


@pytest.mark.parametrize("hit_tier", [None, "province"])
async def test_transient_failures_resolved_by_end_of_tier_retry(hit_tier: str | None) -> None:
    failing = set(tier("city")[::17]) | set(tier("province")[::3])
    hit = tier("province")[3] if hit_tier else None  # fails on its first call too
    assert hit is None or hit in failing
    seen: set[str] = set()

    def handler(phone: str) -> bool:
        if phone in failing and phone not in seen:
            seen.add(phone)
            raise transient(phone)
        return phone == hit

    api = FakeOrderApi(handler)
    # One attempt per check: the checker does not retry, only the end-of-tier pass does.
    result = await find(
        MASK, api=api, city=CITY, limits=limits(max_attempts=1, breaker_threshold=1000)
    )
    city, province = result.tiers[0], result.tiers[1]
    assert (city.status, city.errors, city.unresolved) == ("negative", 20, 0)
    assert city.checked == city.candidates
    assert province.errors == 4 and province.unresolved == 0
    if hit is None:
        assert result.status == "not_found"
        assert [r.status for r in result.tiers] == ["negative"] * 4
        assert len(api.calls) == PLAN.total + len(failing)
    else:
        assert (result.status, result.phone, result.tier) == ("matched", hit, "province")
        assert province.status == "hit"
        assert api.calls.count(hit) == 2


@pytest.mark.parametrize("bad_tier", ["city", "province"])
async def test_always_failing_candidates_do_not_stop_the_search(bad_tier: str) -> None:
    """a tier left with unresolved candidates (after its share of the deadline) does
    not end the search; the later hit is ``matched`` with ``complete=False``."""
    always = {tier(bad_tier)[1], tier(bad_tier)[7]}
    later_hit = tier("national")[5]

    def handler(phone: str) -> bool:
        if phone in always:
            raise transient(phone)
        return phone == later_hit

    api = FakeOrderApi(handler)
    result = await find(
        MASK, api=api, city=CITY, limits=limits(max_attempts=1, breaker_threshold=1000)
    )
    assert (result.status, result.phone, result.tier) == ("matched", later_hit, "national")
    assert result.complete is False
    index = TIER_NAMES.index(bad_tier)
    report = result.tiers[index]
    assert (report.status, report.unresolved) == ("inconclusive", 2)
    assert report.errors >= 2
    assert report.checked == report.candidates - 2
    assert result.reason is not None and f"{bad_tier} 2" in result.reason
    assert "never answered" in result.reason
    for phone in always:  # first pass + deferred retries at the budget's pace
        assert api.calls.count(phone) >= 2


async def test_always_failing_candidates_and_no_hit_is_inconclusive() -> None:
    always = {tier("province")[1], tier("province")[7]}

    def handler(phone: str) -> bool:
        if phone in always:
            raise transient(phone)
        return False

    api = FakeOrderApi(handler)
    result = await find(
        MASK, api=api, city=CITY, limits=limits(max_attempts=1, breaker_threshold=1000)
    )
    assert result.status == "inconclusive"  # never not_found
    assert result.complete is False
    assert result.phone is None and result.hits == []
    assert result.tiers[1].unresolved == 2
    assert result.reason is not None and "province 2" in result.reason
    assert all(r.status in ("negative", "empty") for i, r in enumerate(result.tiers) if i != 1)


async def test_unresolved_candidate_with_checker_retries_is_still_inconclusive() -> None:
    bad = tier("city", SMALL)[42]

    def handler(phone: str) -> bool:
        if phone == bad:
            raise transient(phone)
        return False

    api = FakeOrderApi(handler)
    result = await find(SMALL, api=api, city=CITY, limits=limits(max_attempts=3, backoff_base=0.0))
    assert result.status == "inconclusive"
    assert result.tiers[0].unresolved == 1
    assert api.calls.count(bad) > 3  # deferred and retried past the checker's attempts
    assert result.checks_sent == len(api.calls)
    assert result.retries == result.checks_sent - 100  # every resend actually sent


# ---------------------------------------------------------------------------------------
# fatal errors and the breaker


async def test_fatal_error_ends_the_lookup_with_api_error() -> None:
    def handler(phone: str) -> bool:
        raise FatalApiError("GET /orders answered 401: not authorised", status=401)

    api = FakeOrderApi(handler)
    result = await find(MASK, api=api, city=CITY, limits=limits(max_in_flight=8))
    assert result.status == "api_error"
    assert result.phone is None
    assert result.reason is not None
    assert "city" in result.reason and "401" in result.reason
    assert result.tiers[0].status == "aborted"
    assert all(r.status == "skipped" for r in result.tiers[1:])
    assert len(api.calls) <= 8  # no new check after the first fatal answer
    assert tiers_called(api) == {"city"}


async def test_fatal_error_midway_stops_later_tiers() -> None:
    fatal_at = tier("province")[2]
    hit = tier("national")[0]

    def handler(phone: str) -> bool:
        if phone == fatal_at:
            raise FatalApiError("answered 400: bad request", status=400)
        return phone == hit

    api = FakeOrderApi(handler)
    result = await find(MASK, api=api, city=CITY, limits=limits())
    assert result.status == "api_error"
    assert [r.status for r in result.tiers] == ["negative", "aborted", "skipped", "skipped"]
    assert hit not in api.calls


async def test_breaker_open_ends_with_api_error_and_fails_fast_next_time() -> None:
    def handler(phone: str) -> bool:
        raise transient(phone)

    api = FakeOrderApi(handler)
    lim = limits(max_attempts=1, breaker_threshold=5, breaker_cooldown=600, max_in_flight=4)
    checker = Checker(api, lim)
    result = await find(MASK, checker=checker, city=CITY)
    assert result.status == "api_error"
    assert result.reason is not None and "city" in result.reason
    assert result.tiers[0].status == "aborted"
    assert checker.breaker_state == "open"
    assert checker.counters.breaker_opens == 1
    assert len(api.calls) <= 5 + 4
    sent = len(api.calls)

    again = await find(SMALL, checker=checker, city=CITY)
    assert again.status == "api_error"
    assert again.checks_sent == 0
    assert len(api.calls) == sent


async def test_circuit_open_error_from_the_api_is_api_error() -> None:
    def handler(phone: str) -> bool:
        raise CircuitOpenError("the upstream gateway's breaker is open")

    api = FakeOrderApi(handler)
    result = await find(SMALL, api=api, city=CITY, limits=limits(max_in_flight=4))
    assert result.status == "api_error"
    assert result.reason is not None and "breaker" in result.reason


# ---------------------------------------------------------------------------------------
# mode="all"


async def test_mode_all_reports_every_hit_of_the_tier_and_stops_there() -> None:
    province = tier("province")
    planted = {province[1], province[6], province[9]}
    api = FakeOrderApi.from_orders({**dict.fromkeys(planted, 2), tier("national")[0]: 1})
    result = await find(MASK, api=api, city=CITY, mode="all", limits=limits(max_in_flight=3))
    assert result.status == "matched"
    assert result.mode == "all"
    assert {h.phone for h in result.hits} == planted
    assert len(result.hits) == 3
    assert all(h.tier == "province" and h.order_count == 2 for h in result.hits)
    assert result.phone == result.hits[0].phone
    assert result.tier == "province"
    report = result.tiers[1]
    assert (report.status, report.hits, report.checked) == ("hit", 3, 10)
    assert set(province) <= set(api.calls)
    assert tiers_called(api) == {"city", "province"}

    first = await find(
        MASK, api=FakeOrderApi.from_orders(planted), city=CITY, limits=limits(max_in_flight=1)
    )
    assert len(first.hits) == 1 and first.phone == province[1]


# ---------------------------------------------------------------------------------------
# concurrency: in flight, tasks, cancellation


@pytest.mark.parametrize("n", [1, 7, 50])
async def test_never_more_than_max_in_flight(n: int) -> None:
    api = FakeOrderApi(lambda phone: False, latency=0.001)
    # A ceiling, however high, means no slow start: the window is max_in_flight at once.
    result = await find(
        SMALL, api=api, city=CITY, limits=limits(max_in_flight=n, max_per_second=1e6)
    )
    assert result.status == "not_found"
    assert api.max_in_flight == n  # reached, never exceeded


async def test_shared_checker_caps_concurrent_lookups_together() -> None:
    api = FakeOrderApi(lambda phone: False, latency=0.001)
    checker = Checker(api, limits(max_in_flight=7))
    results = await asyncio.gather(
        find(SMALL, checker=checker, city=CITY, limits=limits(max_in_flight=50)),
        find(MASK, checker=checker, city=CITY, limits=limits(max_in_flight=50)),
    )
    assert [r.status for r in results] == ["not_found", "not_found"]
    assert api.max_in_flight == 7
    assert checker.in_flight == 0


async def test_early_stop_lets_requests_on_the_wire_land_and_sends_nothing_more() -> None:
    """a request on the wire at the hit lands (its pooled connection stays open); no
    new check starts; nothing is left behind."""
    candidates = tier("city", SMALL)
    hit = candidates[20]
    release = asyncio.Event()
    landed: list[str] = []
    started = 0

    async def handler(phone: str) -> bool:
        nonlocal started
        started += 1
        if phone == hit:
            asyncio.get_running_loop().call_soon(release.set)
            return True
        await release.wait()
        landed.append(phone)
        return False

    api = FakeOrderApi(handler)
    # A ceiling (however high) means no slow start: 32 in flight from the first check.
    checker = Checker(api, limits(max_in_flight=32, max_per_second=1e6))
    before = asyncio.all_tasks()
    result = await find(SMALL, checker=checker, city=CITY)
    assert asyncio.all_tasks() == before
    assert result.phone == hit
    assert started == 32  # nothing new after the hit...
    assert len(landed) == 31  # ...and what was on the wire landed, uncancelled
    assert result.checks_sent == 32
    assert api.in_flight == 0
    assert checker.in_flight == 0


async def test_cancelling_find_mid_tier_leaves_nothing_behind() -> None:
    n = 16
    never = asyncio.Event()
    full = asyncio.Event()
    cancelled = 0

    async def handler(phone: str) -> bool:
        nonlocal cancelled
        if api.in_flight == n:
            full.set()
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return False

    api = FakeOrderApi(handler)
    checker = Checker(api, limits(max_in_flight=n, max_per_second=1e6))  # no slow start
    before = asyncio.all_tasks()
    task = asyncio.create_task(find(MASK, checker=checker, city=CITY))
    async with asyncio.timeout(10):
        await full.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() == before
    assert cancelled == n
    assert api.in_flight == 0
    assert checker.in_flight == 0

    # The checker is still good for the next lookup.
    never.set()
    api2_result = await find(SMALL, checker=checker, city=CITY)
    assert api2_result.status == "not_found"


async def test_workers_pull_lazily_from_a_10000_candidate_tier() -> None:
    mask = "1385715****"
    big = plan(mask, city=CITY)
    assert big.tier("city").count == 10_000
    hit = list(islice(big.tier("city"), 11))[10]
    assert hit == "13857150010"
    api = FakeOrderApi.from_orders({hit})
    loop = asyncio.get_running_loop()
    created: list[asyncio.Task[Any]] = []
    old_factory = loop.get_task_factory()

    def counting_factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    loop.set_task_factory(counting_factory)  # type: ignore[arg-type]
    try:
        result = await find(mask, api=api, city=CITY, limits=limits(max_in_flight=16))
    finally:
        loop.set_task_factory(old_factory)
    assert result.phone == hit
    assert len(created) <= 16 + 2  # the workers (the tiers after the hit make none)
    # Checks already in flight when the hit answers were sent; no new one starts after it.
    assert len(api.calls) <= 11 + 16
    assert result.checks_sent == len(api.calls)


async def test_no_check_is_sent_after_the_hit_is_known() -> None:
    candidates = tier("city", SMALL)
    hit = candidates[0]
    sent_before_hit: int | None = None

    def handler(phone: str) -> bool:
        nonlocal sent_before_hit
        if phone == hit:
            sent_before_hit = len(api.calls)
            return True
        return False

    api = FakeOrderApi(handler)  # latency 0: each check yields once; all answer in one turn
    result = await find(SMALL, api=api, city=CITY, limits=limits(max_in_flight=16))
    assert result.phone == hit
    assert sent_before_hit is not None
    assert api.calls[sent_before_hit:] == []


# ---------------------------------------------------------------------------------------
# rate limit on a virtual clock


def max_per_window(starts: list[float], width: float = 1.0) -> int:
    times = sorted(starts)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > width + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


async def test_rate_limit_holds_during_a_lookup_on_a_virtual_clock() -> None:
    ft = FakeTime()
    starts: list[float] = []

    def handler(phone: str) -> bool:
        starts.append(ft.now)
        return False

    api = FakeOrderApi(handler)
    checker = Checker(
        api, limits(max_per_second=20, max_in_flight=8, deadline=300.0), clock=ft.clock,
        sleep=ft.sleep,
    )  # fmt: skip
    result = await find(SMALL, checker=checker, city=CITY)
    await ft.idle()
    assert result.status == "not_found"
    assert len(starts) == 100
    gaps = [b - a for a, b in pairwise(starts)]
    assert min(gaps) >= 0.05 - 1e-9  # evenly spaced: no burst, not even at the start
    assert max_per_window(starts) <= 21  # a closed 1 s window holds both ends
    assert starts[-1] == pytest.approx(99 * 0.05 * 1.02)  # paced 2 % under the rate


async def paced_with_failures(
    phone: str, failures: int, *, hit: bool
) -> tuple[LookupResult, FakeOrderApi, list[float]]:
    """SMALL (100 city candidates) at 20/s on a virtual clock, one attempt per check:
    ``phone`` fails its first ``failures`` sends (and has orders when ``hit``). Returns
    the result, the API and the virtual times ``phone`` was sent at."""
    ft = FakeTime()
    sent_at: list[float] = []

    def handler(number: str) -> bool:
        if number != phone:
            return False
        sent_at.append(ft.now)
        if len(sent_at) <= failures:
            raise transient(number)
        return hit

    api = FakeOrderApi(handler)
    checker = Checker(
        api, limits(max_per_second=20, max_in_flight=4, max_attempts=1, deadline=300.0),
        clock=ft.clock, sleep=ft.sleep,
    )  # fmt: skip
    result = await find(SMALL, checker=checker, city=CITY)
    await ft.idle()
    return result, api, sent_at


async def test_a_hit_whose_first_check_failed_is_found_within_its_tier() -> None:
    # The city tier of SMALL takes 5 s; the hit fails once at t = 0.5 s. It is sent again
    # about 0.5 s later between fresh candidates (a budget token is there), not after the
    # other 89 candidates of its tier.
    hit = tier("city", SMALL)[10]
    result, api, (first, again) = await paced_with_failures(hit, 1, hit=True)
    assert (result.status, result.phone, result.tier) == ("matched", hit, "city")
    assert result.complete
    assert 0.5 <= again - first <= 1.0  # + the paced checks already queued
    assert len(api.calls) < 30  # the old end-of-tier retry sent all 100 first
    assert result.retries == 1 and result.checks_sent == len(api.calls)
    assert result.tiers[0].errors == 1 and result.tiers[0].unresolved == 0


async def test_a_check_failing_again_is_resent_later_each_time_within_the_pass() -> None:
    result, api, sent_at = await paced_with_failures(tier("city", SMALL)[3], 2, hit=False)
    assert result.status == "not_found" and result.complete
    assert len(sent_at) == 3 and len(api.calls) == 102
    first, second = sent_at[1] - sent_at[0], sent_at[2] - sent_at[1]
    assert 0.5 <= first < 1.0 <= second < 1.5  # backing off: 0.5 s, then 1 s
    assert sent_at[2] < 99 * 0.05  # answered before the tier's fresh candidates ran out
    assert result.tiers[0].errors == 2 and result.retries == 2


async def test_a_check_still_failing_at_the_end_of_the_pass_goes_to_the_retry_pass() -> None:
    # Near the end of the tier: no time for a resend within its first pass.
    result, _, sent_at = await paced_with_failures(tier("city", SMALL)[90], 1, hit=False)
    assert result.status == "not_found" and result.complete
    assert len(sent_at) == 2
    assert sent_at[1] >= 99 * 0.05  # sent in the retry pass, after every fresh candidate
    assert result.tiers[0].errors == 1


# ---------------------------------------------------------------------------------------
# input errors


@pytest.mark.parametrize(
    ("mask", "kwargs", "error"),
    [
        ("12345", {}, InputError),
        ("23812341234", {}, InputError),
        ("138****1234", {"city": "不存在的城市"}, UnknownRegionError),
        ("138*****234", {"city": CITY}, TooManyCandidatesError),
        (SMALL, {"city": CITY, "max_candidates": 50}, TooManyCandidatesError),
        (SMALL, {"city": CITY, "mode": "some"}, ConfigError),
    ],
)
async def test_input_errors_raise_before_any_call(
    mask: str, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    api = FakeOrderApi(lambda phone: True)
    with pytest.raises(error):
        await find(mask, api=api, limits=limits(), **kwargs)
    assert api.calls == []


# ---------------------------------------------------------------------------------------
# the result


async def test_result_fields_and_json_round_trip() -> None:
    hit = "13957758812"  # 温州: the province tier for a 杭州 hint
    mask = "139****8812"
    api = FakeOrderApi.from_orders({hit: 3})
    result = await find(mask, api=api, city=CITY, limits=limits(max_in_flight=4))
    assert result.status == "matched"
    assert result.mask == mask
    assert result.hint is not None and "杭州" in result.hint
    assert (result.phone, result.tier) == (hit, "province")
    assert result.region is not None
    assert (result.region.province, result.region.city) == ("浙江", "温州")
    assert result.region.segment == hit[:7]
    assert len(result.hits) == 1 and result.hits[0].order_count == 3
    assert result.hits[0].region == result.region
    assert [t.name for t in result.tiers] == list(TIER_NAMES)
    p = plan(mask, city=CITY)
    assert [t.candidates for t in result.tiers] == [t.count for t in p.tiers]
    city, province, national, _ = result.tiers
    assert (city.status, city.checked, city.errors) == ("negative", city.candidates, 0)
    assert province.status == "hit" and 0 < province.checked <= province.candidates
    assert province.hits == 1
    assert (national.status, national.checked) == ("skipped", 0)
    assert result.checks_sent == len(api.calls)
    assert result.checks_sent >= city.checked + province.checked
    assert (result.retries, result.cache_hits) == (0, 0)
    assert result.data_version
    assert result.elapsed_ms >= 0
    assert all(t.elapsed_ms >= 0 for t in result.tiers)
    assert LookupResult.model_validate_json(result.model_dump_json()) == result

    not_found = await find(SMALL, api=FakeOrderApi(lambda p: False), city=CITY, limits=limits())
    assert (not_found.status, not_found.phone, not_found.tier) == ("not_found", None, None)
    assert LookupResult.model_validate_json(not_found.model_dump_json()) == not_found


async def test_match_plan_runs_a_prepared_plan() -> None:
    hit = tier("unlocated")[4]
    api = FakeOrderApi.from_orders({hit})
    result = await match_plan(PLAN, Checker(api, limits()), max_in_flight=5)
    assert (result.status, result.phone, result.tier) == ("matched", hit, "unlocated")
    assert result.region is not None and not result.region.located
    assert api.max_in_flight <= 5


async def test_shared_checker_cache_answers_a_repeated_lookup() -> None:
    hit = tier("province")[4]
    api = FakeOrderApi.from_orders({hit})
    checker = Checker(api, Limits(max_per_second=None, cache_ttl=300))

    first = await find(SMALL, checker=checker, city=CITY)
    assert (first.status, first.checks_sent, first.cache_hits) == ("not_found", 100, 0)
    second = await find(SMALL, checker=checker, city=CITY)
    assert (second.status, second.checks_sent, second.cache_hits) == ("not_found", 0, 100)
    assert len(api.calls) == 100

    one = await find(MASK, checker=checker, city=CITY)
    sent = len(api.calls)
    two = await find(MASK, checker=checker, city=CITY)
    assert one.phone == two.phone == hit
    # MASK's city tier holds 1385715204x, ten numbers of SMALL: already cached.
    assert one.checks_sent > 0 and one.cache_hits == 10
    assert two.checks_sent == 0 and two.cache_hits >= 340 + 5
    assert len(api.calls) == sent


# ---------------------------------------------------------------------------------------
# progress and audit


async def test_progress_reports_every_tier_to_the_end() -> None:
    calls: list[tuple[str, int, int]] = []
    failing = {tier("city")[0]}
    seen: set[str] = set()

    def handler(phone: str) -> bool:
        if phone in failing and phone not in seen:
            seen.add(phone)
            raise transient(phone)
        return False

    api = FakeOrderApi(handler)
    result = await find(
        MASK,
        api=api,
        city=CITY,
        limits=limits(max_attempts=1),
        progress=lambda *args: calls.append(args),
    )
    assert result.status == "not_found"
    for t in PLAN.tiers:
        mine = [c for c in calls if c[0] == t.name]
        assert mine[0] == (t.name, 0, t.count)
        assert mine[-1] == (t.name, t.count, t.count)
        answered = [c[1] for c in mine]
        assert answered == sorted(answered)
        assert {c[2] for c in mine} == {t.count}
    assert [c[0] for c in calls] == sorted((c[0] for c in calls), key=TIER_NAMES.index)


async def test_progress_of_a_hit_tier_stops_early() -> None:
    calls: list[tuple[str, int, int]] = []
    hit = tier("city", SMALL)[10]
    result = await find(
        SMALL,
        api=FakeOrderApi.from_orders({hit}),
        city=CITY,
        limits=limits(max_in_flight=2),
        progress=lambda *args: calls.append(args),
    )
    assert result.phone == hit
    assert calls[0] == ("city", 0, 100)
    assert 11 <= calls[-1][1] < 100


@pytest.fixture
def audit_records(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> pytest.LogCaptureFixture:
    # Another test may have run lookup.runtime.logs.setup_logging, which stops propagation.
    monkeypatch.setattr(logging.getLogger("lookup"), "propagate", True)
    monkeypatch.setattr(logging.getLogger("lookup.audit"), "propagate", True)
    caplog.set_level(logging.INFO, logger="lookup.audit")
    return caplog


def audit_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "lookup.audit"]


async def test_one_audit_line_per_lookup_without_full_numbers(
    audit_records: pytest.LogCaptureFixture,
) -> None:
    hit = tier("province")[2]
    api = FakeOrderApi.from_orders({hit})
    matched = await find(MASK, api=api, city=CITY, limits=limits(), caller="tests")
    not_found = await find(SMALL, api=api, city=CITY, limits=limits())

    def fatal(phone: str) -> bool:
        raise FatalApiError("answered 403", status=403)

    failed = await find(SMALL, api=FakeOrderApi(fatal), city=CITY, limits=limits())
    with pytest.raises(InputError):
        await find("12345", api=api)

    records = audit_of(audit_records)
    assert len(records) == 3
    statuses = [getattr(r, "status", None) for r in records]
    assert statuses == [matched.status, not_found.status, failed.status]
    assert statuses == ["matched", "not_found", "api_error"]
    for record in records:
        message = record.getMessage()
        assert not ELEVEN_DIGITS.search(message), message
        assert record.levelno == logging.INFO
    assert f"{hit[:3]}****{hit[-4:]}" in records[0].getMessage()
    assert "caller=tests" in records[0].getMessage()
    assert getattr(records[0], "full_phone", None) == hit  # as an attribute only


async def test_audit_line_of_a_fully_revealed_mask_hides_the_number(
    audit_records: pytest.LogCaptureFixture,
) -> None:
    number = "13857152046"
    result = await find(number, api=FakeOrderApi.from_orders({number}), city=CITY)
    assert result.phone == number
    (record,) = audit_of(audit_records)
    assert not ELEVEN_DIGITS.search(record.getMessage()), record.getMessage()


async def test_find_takes_one_request_object_like_its_keywords() -> None:
    """``find(LookupRequest(...))`` is the same lookup as the keywords it replaces."""
    from lookup.domain.models import LookupRequest

    orders = {"13857152046": 2}
    by_keywords = await find("138****2046", api=FakeOrderApi.from_orders(orders), city="杭州")
    request = LookupRequest(mask="138****2046", city="杭州", also=["1385715****"])
    by_request = await find(request, api=FakeOrderApi.from_orders(orders))
    assert (by_request.status, by_request.phone) == (by_keywords.status, by_keywords.phone)
    assert by_request.phone == "13857152046"
    assert by_request.checks_sent == 1  # the sighting left one candidate
