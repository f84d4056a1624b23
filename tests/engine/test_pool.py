"""Tests of lookup.engine.pool: how many worker tasks a tier's pass runs.

A pass starts one worker and the rest of its pool once that worker waits for an answer:
a lookup answered from the outcome cache runs on one task, one that waits for the API
widens to its whole share at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

from test_matcher import CITY, SMALL, limits

from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import FakeOrderApi


class _TaskCounter:
    """Counts the tasks created on the running loop while installed."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Generator[Any, None, Any] | Coroutine[Any, Any, Any]
    ) -> asyncio.Task[Any]:
        self.created += 1
        return asyncio.Task(coro, loop=loop)


async def _counting(lookup: Coroutine[Any, Any, Any]) -> tuple[Any, int]:
    loop = asyncio.get_running_loop()
    counter = _TaskCounter()
    loop.set_task_factory(counter)
    try:
        result = await lookup
    finally:
        loop.set_task_factory(None)
    return result, counter.created


async def test_a_lookup_answered_from_the_cache_runs_on_one_worker() -> None:
    hit = "13857152042"
    api = FakeOrderApi.from_orders({hit: 1})
    checker = Checker(api, limits(max_in_flight=32, max_per_second=1e6, cache_ttl=60.0))
    first = await find(SMALL, checker=checker, city=CITY)
    sent = len(api.calls)
    assert first.phone == hit and sent > 1

    again, tasks = await _counting(find(SMALL, checker=checker, city=CITY))
    assert again.phone == hit and again.cache_hits == again.numbers_checked
    assert len(api.calls) == sent  # every answer came from the cache
    assert tasks == 1  # one worker for the city tier's pass, not its share of 32


async def test_a_pass_whose_checks_wait_widens_to_its_share() -> None:
    api = FakeOrderApi(lambda phone: False, latency=0.001)
    checker = Checker(api, limits(max_in_flight=16, max_per_second=1e6))
    result, tasks = await _counting(find(SMALL, checker=checker, city=CITY))
    assert result.status == "not_found" and result.numbers_checked == 100
    assert api.max_in_flight == 16
    assert tasks == 16  # the first worker, then the other 15 once it waited


async def test_a_pass_never_starts_more_workers_than_candidates() -> None:
    api = FakeOrderApi(lambda phone: False, latency=0.001)
    checker = Checker(api, limits(max_in_flight=500, max_per_second=1e6))
    result, tasks = await _counting(find(SMALL, checker=checker, city=CITY))
    assert result.numbers_checked == 100
    assert tasks <= 100 and api.max_in_flight == tasks
