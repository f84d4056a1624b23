"""The outcome cache alone, with a fake clock: TTL, LRU bound, no clock read on a miss."""

from __future__ import annotations

import gc
import tracemalloc

from lookup.domain.models import CheckOutcome
from lookup.engine.policies.cache import CheckOutcomeCache, OutcomeCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def test_an_answer_is_kept_for_its_ttl_and_then_forgotten() -> None:
    clock = Clock()
    cache: OutcomeCache[str, int] = OutcomeCache(10, 60.0, clock=clock)
    cache["a"] = 1
    clock.now = 59.9
    assert cache.get("a") == 1
    clock.now = 60.0
    assert cache.get("a") is None and len(cache) == 0


def test_the_least_recently_used_goes_first_when_full() -> None:
    cache: OutcomeCache[str, int] = OutcomeCache(2, 60.0, clock=Clock())
    cache["a"] = 1
    cache["b"] = 2
    assert cache.get("a") == 1  # a used again: b is now the oldest
    cache["c"] = 3
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache["a"] = 4  # a store refreshes the entry too
    assert cache.get("a") == 4 and len(cache) == 2
    cache.clear()
    assert len(cache) == 0 and cache.get("c") is None


def test_a_miss_reads_no_clock() -> None:
    clock = Clock()
    cache: OutcomeCache[str, int] = OutcomeCache(2, 60.0, clock=clock)
    for key in ("x", "y", "z"):
        assert cache.get(key) is None
    assert clock.reads == 0


def _outcomes(phone: str) -> list[CheckOutcome]:
    return [
        CheckOutcome(phone=phone, has_orders=True),
        CheckOutcome(phone=phone, has_orders=False),
        CheckOutcome(phone=phone, has_orders=True, order_count=3),
        CheckOutcome(phone=phone, has_orders=False, order_count=0),
        CheckOutcome(phone=phone, has_orders=True, order_count=1_000),
        CheckOutcome(phone=phone, has_orders=False, order_count=None),  # set, though None
        CheckOutcome(phone=phone, has_orders=True, details={"orders": ["A1"]}),
        CheckOutcome(phone="13900000000", has_orders=True),  # another number's answer
    ]


def test_the_checkers_cache_gives_back_what_it_was_given() -> None:
    cache = CheckOutcomeCache(100, 60.0, clock=Clock())
    for i, given in enumerate(_outcomes("13857152046")):
        key = f"1385715{i:04d}" if given.phone != "13900000000" else "13857159999"
        given = given.model_copy(update={"phone": key}) if given.phone != "13900000000" else given
        cache[key] = given
        got = cache.get(key)
        assert got == given and type(got) is CheckOutcome
        assert got.model_dump() == given.model_dump()
        assert got.model_dump(exclude_unset=True) == given.model_dump(exclude_unset=True)
        assert got.model_fields_set == given.model_fields_set
        if given.details is None:
            assert hash(got) == hash(given)  # frozen: hashable alike
    assert cache.get("13800000000") is None
    assert len(cache) == 8
    cache.clear()
    assert len(cache) == 0


def test_the_checkers_cache_holds_a_plain_answer_in_under_300_bytes() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        cache = CheckOutcomeCache(20_000, 60.0, clock=Clock())
        before = tracemalloc.get_traced_memory()[0]
        for i in range(20_000):
            phone = f"1385715{i:04d}"
            cache[phone] = CheckOutcome(phone=phone, has_orders=i % 7 == 0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(cache) == 20_000
    assert held / 20_000 < 300, held / 20_000
