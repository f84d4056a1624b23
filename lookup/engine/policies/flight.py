"""Single flight: identical checks running at once share one request."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

__all__ = ["SingleFlight"]

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """Runs ``fn`` once per key at a time; callers arriving meanwhile get its result.

    The leader runs ``fn`` inline in its own task (no task per call) and allocates
    nothing unless someone joins. A follower gets the leader's result or exception; if
    the leader is cancelled, followers try again themselves (one becomes the new leader).
    A cancelled follower does not cancel the leader.
    """

    __slots__ = ("_flights", "_private")

    def __init__(self, private: tuple[type[BaseException], ...] = ()) -> None:
        # Exceptions of the leader's own (its lookup ended): followers try again instead.
        self._private = private
        # key -> the future followers wait on (created by the first follower), or None.
        self._flights: dict[str, asyncio.Future[T | BaseException | None] | None] = {}

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, fn: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """``(result, joined)``: ``joined`` is true when another caller's request answered."""
        flights = self._flights
        while key in flights:
            waiter = flights[key]
            if waiter is None:
                waiter = asyncio.get_running_loop().create_future()
                flights[key] = waiter
            result = await asyncio.shield(waiter)
            if result is None:
                continue  # the leader was cancelled: try again, maybe as the new leader
            if isinstance(result, BaseException):
                raise result
            return result, True
        flights[key] = None
        outcome: T | BaseException | None = None  # stays None on cancellation
        try:
            value = await fn()
            outcome = value
            return value, False
        except Exception as exc:
            if not isinstance(exc, self._private):
                outcome = exc
            raise
        finally:
            waiter = flights.pop(key)
            if waiter is not None:
                waiter.set_result(outcome)
