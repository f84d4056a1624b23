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
from typing import Final, Generic, TypeVar

from lookup.domain.models import CheckOutcome

__all__ = ["CheckOutcomeCache", "OutcomeCache"]

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


_NO_COUNT_HAS_ORDERS: Final = -1
_NO_COUNT_NONE: Final = -2
_SET = object.__setattr__


def _outcome(phone: str, has_orders: bool, count: int | None) -> CheckOutcome:
    """A :class:`CheckOutcome` equal to the one validated from the same fields (and the
    same fields set), built without validating again: the fields came from one."""
    outcome = object.__new__(CheckOutcome)
    _SET(outcome, "__dict__", {"phone": phone, "has_orders": has_orders,
                               "order_count": count, "details": None})  # fmt: skip
    fields = {"phone", "has_orders"} if count is None else {"phone", "has_orders", "order_count"}
    _SET(outcome, "__pydantic_fields_set__", fields)
    _SET(outcome, "__pydantic_extra__", None)
    _SET(outcome, "__pydantic_private__", None)
    return outcome


class CheckOutcomeCache:
    """The checker's cache (an :class:`OutcomeCache`): a plain answer (no ``details``) is
    kept as one small int (the count, or -1 / -2 for "has orders" / "none" without one)
    and made into a :class:`CheckOutcome` again when asked for. An entry is about 230
    bytes instead of about 710 (the model, its ``__dict__`` and its set of fields): a
    full cache of 100,000 numbers holds about 22 MiB, not 68."""

    __slots__ = ("_kept",)

    def __init__(self, size: int, ttl: float, *, clock: Callable[[], float]) -> None:
        self._kept: OutcomeCache[str, int | CheckOutcome] = OutcomeCache(size, ttl, clock=clock)

    def __len__(self) -> int:
        return len(self._kept)

    def get(self, key: str) -> CheckOutcome | None:
        found = self._kept.get(key)
        if type(found) is int:
            if found >= 0:
                return _outcome(key, found > 0, found)
            return _outcome(key, found == _NO_COUNT_HAS_ORDERS, None)
        return found  # type: ignore[return-value]  # a CheckOutcome or None

    def __setitem__(self, key: str, value: CheckOutcome) -> None:
        packed: int | CheckOutcome = value
        if value.details is None and value.phone == key and type(value) is CheckOutcome:
            count = value.order_count
            fields = value.__pydantic_fields_set__
            if count is None and "order_count" not in fields:
                packed = _NO_COUNT_HAS_ORDERS if value.has_orders else _NO_COUNT_NONE
            elif count is not None and (count > 0) == value.has_orders and "order_count" in fields:
                packed = count
        self._kept[key] = packed

    def clear(self) -> None:
        self._kept.clear()
