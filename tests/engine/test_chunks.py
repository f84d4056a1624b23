"""Chunk sizes that follow the source's answer times, and whole segments in one chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest
from support.fakes import FakeTime

from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.engine.policies import ChunkSizer
from lookup.orders.fake import FakeOrderApi

FAST = Limits(max_per_second=None, start_rate=None, max_in_flight=1, cache_ttl=0)


def test_grows_while_fast_halves_when_slow_within_bounds() -> None:
    s = ChunkSizer(100)
    s.answered(100, 0.01)
    assert s.size == 150
    for _ in range(20):
        s.answered(s.size, 0.01)
    assert s.size == 1000 and s.largest == 1000  # the ceiling
    s.answered(1000, 0.5)
    assert s.size == 1000  # neither fast nor slow: kept
    s.answered(1000, 3.0)
    assert s.size == 500
    s.answered(1000, 3.0)  # sent before the change: does not halve again
    s.answered(77, 0.001)  # a short last chunk: no signal
    assert s.size == 500
    for _ in range(10):
        s.timed_out(s.size)
    assert s.size == 50  # the floor


def test_a_start_below_the_floor_is_the_sources_limit() -> None:
    s = ChunkSizer(20)
    s.answered(20, 0.001)
    s.timed_out(20)
    assert s.size == 20 and s.fixed
    with pytest.raises(ValueError, match="floor"):
        ChunkSizer(100, floor=0)


class _Timed(FakeOrderApi):
    """A batch fake whose answers take ``seconds(n)`` of the fake clock."""

    def __init__(self, clock: FakeTime, seconds: float) -> None:
        super().__init__(lambda phone: False, batch=True)
        self.clock, self.seconds = clock, seconds

    async def check_many(self, phones: Sequence[str]) -> Mapping[str, CheckOutcome]:
        self.clock.now += self.seconds
        return await super().check_many(phones)


async def test_the_matcher_asks_bigger_chunks_of_a_fast_source() -> None:
    clock = FakeTime()
    api = _Timed(clock, 0.01)
    checker = Checker(api, FAST, clock=clock, sleep=clock.sleep)
    result = await find("138****2046", checker=checker)  # 10,000 national candidates
    assert result.status == "not_found"
    sizes = [len(b) for b in api.batches]
    assert sizes[:6] == [100, 150, 225, 337, 505, 757]
    assert max(sizes) == 1000 and sum(sizes) == 10_000
    assert result.checks_sent == len(sizes) < 100


async def test_the_matcher_asks_smaller_chunks_of_a_slow_source() -> None:
    clock = FakeTime()
    api = _Timed(clock, 2.0)
    checker = Checker(api, FAST, clock=clock, sleep=clock.sleep)
    result = await find("13800000***", checker=checker)
    assert result.status == "not_found"
    assert [len(b) for b in api.batches][:3] == [100, 50, 50]
    assert checker.chunks.size == 50


async def test_a_whole_segment_is_one_chunk_for_a_source_with_segment_queries() -> None:
    api = FakeOrderApi.from_orders({"13857152046"}, batch=True)
    api.segment_queries = True  # type: ignore[attr-defined]
    checker = Checker(api, FAST)
    assert checker.supports_segments
    result = await find("1385715****", checker=checker)
    assert (result.status, result.phone, result.checks_sent) == ("matched", "13857152046", 1)
    assert [len(b) for b in api.batches] == [10_000]
    plain = FakeOrderApi.from_orders({"13857152046"}, batch=True)
    result = await find("1385715****", checker=Checker(plain, FAST))
    assert result.status == "matched" and len(plain.batches) > 1  # no segment queries: chunks
    assert len(plain.batches[0]) == 100
