"""The outcome cache alone, with a fake clock: TTL, LRU bound, no clock read on a miss."""

from __future__ import annotations

from lookup.engine.policies.cache import OutcomeCache


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
