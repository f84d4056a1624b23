"""The outcome cache: answers kept ``ttl`` seconds, at most ``size`` of them, least recently
used out first.

One C-level ordered dict of ``(answer, expires)``: a miss is one dict lookup (no clock
read, no allocation); a hit reads the clock and moves the entry to the end; a store
evicts the least recently used entry when full. Expired entries go when they are next
asked for or evicted (the size bounds the memory either way).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["OutcomeCache"]

K = TypeVar("K")
V = TypeVar("V")


class OutcomeCache(Generic[K, V]):
    """``get`` / ``cache[key] = value`` / ``clear``, timed by ``clock``."""

    __slots__ = ("_clock", "_data", "_size", "_ttl")

    def __init__(self, size: int, ttl: float, *, clock: Callable[[], float]) -> None:
        self._data: OrderedDict[K, tuple[V, float]] = OrderedDict()
        self._size = size
        self._ttl = ttl
        self._clock = clock

    def __len__(self) -> int:
        return len(self._data)

    def get(self, key: K) -> V | None:
        data = self._data
        entry = data.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            del data[key]
            return None
        data.move_to_end(key)
        return entry[0]

    def __setitem__(self, key: K, value: V) -> None:
        data = self._data
        data[key] = (value, self._clock() + self._ttl)
        data.move_to_end(key)
        if len(data) > self._size:
            data.popitem(last=False)

    def clear(self) -> None:
        self._data.clear()
