"""The matcher with ``check_many``: chunks of ``Limits.batch_size`` through the checker.

Every test runs against the in-memory ``FakeOrderApi(batch=True)`` and, where the backend
is parametrised, against the real mock order API on loopback (``MockOrderServer`` +
``HttpOrderApi(orders_url, batch_url=...)``). A thin wrapper (:class:`Spy`) around either
backend holds chosen chunks back and fails chunks holding a chosen number, so that the
order in which chunks answer is fixed by events, never by sleeps.

The plan is the one of tests/test_matcher.py: ``1**5715204*`` with the hint 杭州 gives 340
city, 10 province, 140 national and 30 unlocated candidates; with chunks of 100 that is
4 + 1 + 2 + 1 = 8 requests for the whole plan.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import pytest
from support.fakes import FakeTime
from test_matcher import CITY, MASK, PLAN, SMALL, limits, max_per_window, tier

from lookup.domain.errors import TransientApiError
from lookup.domain.models import CheckOutcome, LookupResult
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.mockapi.server import MockOrderServer
from lookup.orders import FakeOrderApi, HttpOrderApi

ROOT = Path(__file__).resolve().parents[2]
GUARD = 30.0  # seconds: a hung test fails instead of hanging
CHUNKS_OF_PLAN = 4 + 1 + 2 + 1  # 340, 10, 140, 30 candidates in chunks of 100

Hook = Callable[[list[str]], Awaitable[None]]


class Spy:
    """An order API delegating to a batch-capable backend, recording every chunk.

    ``before(chunk)`` runs before a chunk is sent (it may wait on an event or raise);
    ``after(chunk)`` runs once its answer is in, before the matcher sees it. ``started``
    and ``landed`` list the chunks in the order they were sent and answered.
    """

    batch_supported = True

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.before: Hook | None = None
        self.after: Hook | None = None
        self.started: list[list[str]] = []
        self.landed: list[list[str]] = []
        self.singles: list[str] = []

    async def check(self, phone: str) -> CheckOutcome:
        self.singles.append(phone)
        if self.before is not None:
            await self.before([phone])
        outcome: CheckOutcome = await self.backend.check(phone)
        return outcome

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        chunk = list(phones)
        self.started.append(chunk)
        if self.before is not None:
            await self.before(chunk)
        answers: Mapping[str, CheckOutcome] = await self.backend.check_many(chunk)
        self.landed.append(chunk)
        if self.after is not None:
            await self.after(chunk)
        return answers

    async def aclose(self) -> None:
        await self.backend.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


@pytest.fixture(params=["fake", "mock"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_spy(backend: str) -> AsyncIterator[Callable[[Mapping[str, int]], Awaitable[Spy]]]:
    """``await make_spy(orders)``: a :class:`Spy` over the chosen backend holding ``orders``."""
    opened: list[Any] = []

    async def make(orders: Mapping[str, int]) -> Spy:
        if backend == "fake":
            return Spy(FakeOrderApi.from_orders(orders, batch=True))
        server = await MockOrderServer(dict(orders)).start()
        opened.append(server)
        api = await HttpOrderApi(server.orders_url, batch_url=server.batch_url).__aenter__()
        opened.append(api)
        spy = Spy(api)
        spy.server = server  # type: ignore[attr-defined]
        return spy

    yield make
    for thing in reversed(opened):
        if isinstance(thing, MockOrderServer):
            await thing.close()
        else:
            await thing.aclose()


def chunks_with(spy: Spy, phone: str) -> list[int]:
    """The sizes of the chunks that carried ``phone``, in the order they were sent."""
    return [len(c) for c in spy.started if phone in c]


# ---------------------------------------------------------------------------------------
# first hit in tier order across chunk boundaries


async def test_earlier_hit_wins_even_when_the_later_chunk_answers_first(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    city = tier("city")
    early, late = city[150], city[250]  # chunks 1 and 2 of the city tier
    spy = await make_spy({early: 1, late: 3, tier("province")[0]: 1})
    late_landed = asyncio.Event()

    async def before(chunk: list[str]) -> None:
        if early in chunk:
            await late_landed.wait()  # the earlier chunk answers only after the later one

    async def after(chunk: list[str]) -> None:
        if late in chunk:
            late_landed.set()

    spy.before, spy.after = before, after
    async with asyncio.timeout(GUARD):
        result = await find(MASK, api=spy, city=CITY, limits=limits(max_in_flight=8))
    assert (result.status, result.phone, result.tier, result.complete) == (
        "matched", early, "city", True,
    )  # fmt: skip
    assert [h.phone for h in result.hits] == [early]
    assert spy.landed.index(next(c for c in spy.landed if late in c)) < spy.landed.index(
        next(c for c in spy.landed if early in c)
    )
    assert all(len(c) == 100 for c in spy.started[:3])
    assert PLAN.tier_of(spy.started[0][0]) == "city"
    assert not any(PLAN.tier_of(p) != "city" for c in spy.started for p in c)
    assert spy.singles == []  # chunks only: no single check for a 100-candidate tier
    assert result.tiers[0].status == "hit"
    assert [r.status for r in result.tiers[1:]] == ["skipped"] * 3


async def test_chunks_follow_tier_order_and_a_later_tier_hit_is_found(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    hit = tier("national")[120]  # the second national chunk (of 100: sizes fixed here)
    spy = await make_spy({hit: 2})
    fixed = limits(max_in_flight=8, adapt_batch_size=False)
    async with asyncio.timeout(GUARD):
        result = await find(MASK, api=spy, city=CITY, limits=fixed)
    assert (result.status, result.phone, result.tier) == ("matched", hit, "national")
    assert result.hits[0].order_count == 2
    order = ["city", "province", "national", "unlocated"]
    seen = [order.index(PLAN.tier_of(c[0]) or "") for c in spy.started]
    assert seen == sorted(seen)  # a tier's chunks all go before the next tier's
    assert all(len({PLAN.tier_of(p) for p in c}) == 1 for c in spy.started)  # never straddle
    assert [r.status for r in result.tiers] == ["negative", "negative", "hit", "skipped"]
    assert result.checks_sent == len(spy.started) == 4 + 1 + 2


# ---------------------------------------------------------------------------------------
# mode="all"


async def test_mode_all_reports_every_hit_of_the_tier_across_chunks(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    city = tier("city")
    hits = {city[5]: 1, city[150]: 2, city[339]: 3}
    spy = await make_spy({**hits, tier("province")[0]: 1})
    async with asyncio.timeout(GUARD):
        result = await find(MASK, api=spy, city=CITY, limits=limits(max_in_flight=8), mode="all")
    assert result.status == "matched" and result.complete
    assert [h.phone for h in result.hits] == sorted(hits, key=city.index)
    assert [h.order_count for h in result.hits] == [1, 2, 3]
    assert result.phone == city[5]
    assert result.tiers[0].checked == 340 and result.tiers[0].hits == 3
    assert sorted(p for c in spy.started for p in c) == sorted(city)  # the whole tier, no more


# ---------------------------------------------------------------------------------------
# a failing chunk: retried as a chunk, then split


def fail_with(bad: str) -> Hook:
    async def before(chunk: list[str]) -> None:
        if bad in chunk:
            raise TransientApiError(f"HTTP 503 for a batch of {len(chunk)}", status=503)

    return before


async def test_a_failing_chunk_is_retried_then_split_so_the_other_99_get_answers(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    candidates = tier("city", SMALL)  # 100 candidates, one chunk
    bad = candidates[42]
    spy = await make_spy({})
    spy.before = fail_with(bad)
    async with asyncio.timeout(GUARD):
        result = await find(SMALL, api=spy, city=CITY, limits=limits(max_attempts=2, deadline=2.0))
    assert result.status == "inconclusive" and not result.complete
    report = result.tiers[0]
    assert (report.candidates, report.checked, report.unresolved) == (100, 99, 1)
    sizes = chunks_with(spy, bad)
    assert sizes[:2] == [100, 100]  # retried as a chunk by the checker first
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] < 100  # then split
    assert bad in spy.singles  # down to the bad number alone
    answered = {p for c in spy.landed for p in c} | set(spy.singles) - {bad}
    assert answered >= set(candidates) - {bad}
    assert result.reason is not None and "1 candidates" in result.reason


async def test_a_failing_chunk_before_a_later_hit_is_matched_incomplete(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    bad, hit = tier("city")[7], tier("province")[3]
    spy = await make_spy({hit: 1})
    spy.before = fail_with(bad)
    # The bad number alone keeps failing until the city tier's time is up: with the default
    # threshold that run of failures would open the breaker (as with single checks).
    few = limits(max_attempts=2, deadline=2.0, breaker_threshold=1000)
    async with asyncio.timeout(GUARD):
        result = await find(MASK, api=spy, city=CITY, limits=few)
    assert (result.status, result.phone, result.tier) == ("matched", hit, "province")
    assert result.complete is False
    assert (result.tiers[0].checked, result.tiers[0].unresolved) == (339, 1)
    assert result.reason is not None and "city 1" in result.reason


async def test_a_bad_number_stays_out_of_the_other_chunks(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]],
) -> None:
    hit = tier("city")[260]  # a chunk of its own, far from the bad one
    bad = tier("city")[10]
    spy = await make_spy({hit: 1})
    spy.before = fail_with(bad)
    async with asyncio.timeout(GUARD):
        result = await find(MASK, api=spy, city=CITY, limits=limits(max_attempts=2, deadline=2.0))
    # The hit's chunk answered: the tier ends at it, the failing chunk does not hold it up.
    assert (result.status, result.phone) == ("matched", hit)
    assert all(bad not in c for c in spy.landed)


# ---------------------------------------------------------------------------------------
# cancellation after a hit


async def test_no_chunk_starts_after_the_hit_and_chunks_on_the_wire_land() -> None:
    city = tier("city")
    hit = city[10]  # the first chunk of 50
    spy = Spy(FakeOrderApi.from_orders({hit: 1}, batch=True))
    hit_known = asyncio.Event()
    on_wire: list[list[str]] = []
    started_after_hit: list[list[str]] = []

    async def before(chunk: list[str]) -> None:
        if hit_known.is_set():
            started_after_hit.append(chunk)
        if hit not in chunk:
            on_wire.append(chunk)
            await hit_known.wait()  # on the wire while the hit lands

    async def after(chunk: list[str]) -> None:
        if hit in chunk:
            hit_known.set()

    spy.before, spy.after = before, after
    checker = Checker(spy, limits(max_in_flight=4, batch_size=50))
    async with asyncio.timeout(GUARD):
        result = await find(MASK, checker=checker, city=CITY)
        await asyncio.sleep(0)  # one turn: nothing may start even after find returned
    assert (result.status, result.phone) == ("matched", hit)
    assert started_after_hit == []
    assert on_wire, "some chunks were on the wire when the hit landed"
    assert all(c in spy.landed for c in on_wire)  # left to land, not cancelled
    assert len(spy.started) == len(spy.landed) == result.checks_sent
    assert len(spy.started) < -(-340 // 50)  # the tier's later chunks never went
    assert checker.in_flight == 0 and checker.counters.in_flight == 0


# ---------------------------------------------------------------------------------------
# the rate limit counts requests; the counters count both


async def test_rate_limit_counts_requests_not_numbers_on_a_virtual_clock() -> None:
    ft = FakeTime()
    starts: list[float] = []

    class Timed(FakeOrderApi):
        async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
            starts.append(ft.now)
            return await super().check_many(phones)

    api = Timed(lambda phone: False, batch=True)
    checker = Checker(api, limits(max_per_second=4, max_in_flight=8, deadline=300.0),
                      clock=ft.clock, sleep=ft.sleep)  # fmt: skip
    result = await find(MASK, checker=checker, city=CITY)
    await ft.idle()
    assert result.status == "not_found"
    assert len(starts) == CHUNKS_OF_PLAN
    assert max_per_window(starts) <= 5  # 4 requests a second, 520 numbers in all
    # 8 requests at 4/s take under 2 s; pacing numbers would have taken 130 s
    assert starts[-1] == pytest.approx(7 * 0.25 * 1.02)
    assert checker.counters.requests == CHUNKS_OF_PLAN


async def test_counters_count_requests_and_numbers(
    make_spy: Callable[[Mapping[str, int]], Awaitable[Spy]], backend: str
) -> None:
    spy = await make_spy({})
    checker = Checker(spy, limits(max_in_flight=8, adapt_batch_size=False))  # chunks of 100
    async with asyncio.timeout(GUARD):
        result = await find(MASK, checker=checker, city=CITY)
    assert result.status == "not_found" and result.complete
    assert [r.checked for r in result.tiers] == [340, 10, 140, 30]
    counters = checker.counters
    assert (counters.requests, counters.numbers) == (CHUNKS_OF_PLAN, 520)
    assert (counters.hits, counters.misses) == (0, 520)
    assert result.checks_sent == CHUNKS_OF_PLAN
    if backend == "mock":
        stats = spy.server.stats  # type: ignore[attr-defined]
        assert (stats.batch_requests, stats.orders_requests) == (CHUNKS_OF_PLAN, CHUNKS_OF_PLAN)
        assert stats.phones_checked == 520


async def test_cached_numbers_are_left_out_of_the_next_chunks() -> None:
    api = FakeOrderApi(lambda phone: False, batch=True)
    checker = Checker(api, limits(max_in_flight=8, cache_ttl=60.0))
    first = await find(SMALL, checker=checker, city=CITY)
    again = await find(SMALL, checker=checker, city=CITY)
    assert first.status == again.status == "not_found"
    assert len(api.batches) == 1 and len(api.batches[0]) == 100
    assert (again.checks_sent, again.cache_hits) == (0, 100)
    assert (checker.counters.requests, checker.counters.numbers) == (1, 100)


# ---------------------------------------------------------------------------------------
# the CLI: --batch-url reaches the batch endpoint


async def test_cli_find_with_batch_url_uses_the_batch_endpoint() -> None:
    hit = tier("province")[3]
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("LOOKUP_")}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONIOENCODING": "utf-8"})
    async with MockOrderServer({hit: 2}) as server, asyncio.timeout(90):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lookup", "find", MASK, "--city", CITY, "--json",
            "--api", server.orders_url, "--batch-url", server.batch_url, "--rate", "none",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await proc.communicate()
        stats = server.stats
    assert proc.returncode == 0, err.decode()
    result = LookupResult.model_validate_json(out)
    assert (result.status, result.phone, result.tier) == ("matched", hit, "province")
    assert stats.batch_requests > 0
    assert stats.batch_requests == stats.orders_requests == result.checks_sent == 4 + 1
    assert stats.phones_checked == 350
