"""Retries: full-jitter exponential backoff and a refilling retry budget (a token bucket)."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable

__all__ = ["RetryBudget", "RetryPolicy"]

_WHOLE = 1.0 - 1e-9
"""A token, give or take float rounding: refilling for exactly the computed wait can leave
0.9999999999999998 tokens, and a sleep of 4e-16 s does not move a clock at 4.0 s."""


class RetryBudget:
    """A token bucket of retries that refills, as gRPC retry throttling and the AWS retry
    quota do: a retry takes a token; a success puts back ``per_success``; time puts back
    ``per_second``; the bucket holds at most ``capacity``.

    Under sustained failure the successes stop refilling it, so retries slow down to the
    time refill instead of multiplying the load, and they never stop for good: a lookup
    waiting for a token (:meth:`take`) is paced, not refused. A deferred check that is
    answered gives its token back (:meth:`refund`): a retry pass is then paced by its
    failures, not by the ratio, so 5 % of a tier deferred does not crawl at 15/s after the
    API recovered.
    """

    __slots__ = ("_clock", "_last", "_tokens", "capacity", "per_second", "per_success")

    def __init__(
        self,
        capacity: float,
        *,
        per_success: float,
        per_second: float,
        clock: Callable[[], float],
    ) -> None:
        self.capacity = float(capacity)
        self.per_success = per_success
        self.per_second = per_second
        self._clock = clock
        self._tokens = float(capacity)
        self._last = clock()

    @property
    def tokens(self) -> float:
        self._refill()
        return self._tokens

    def _refill(self) -> None:
        now = self._clock()
        if now > self._last:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.per_second)
        self._last = now

    def on_success(self) -> None:
        if self._tokens >= self.capacity:
            return  # full: a refill would change nothing (it caps at the capacity)
        self._refill()
        self._tokens = min(self.capacity, self._tokens + self.per_success)

    def refund(self) -> None:
        """Give back a token whose retry was answered: a deferred check that got its answer
        was not a wasted request, so only the failures of a retry pass drain the bucket."""
        self._refill()
        self._tokens = min(self.capacity, self._tokens + 1.0)

    def try_take(self) -> bool:
        """Take a token if there is one."""
        self._refill()
        if self._tokens >= _WHOLE:
            self._tokens = max(0.0, self._tokens - 1.0)
            return True
        return False

    def wait_time(self) -> float | None:
        """Seconds until a token is there by time refill alone (``None``: never)."""
        self._refill()
        if self._tokens >= _WHOLE:
            return 0.0
        if self.per_second <= 0:
            return None
        return (1.0 - self._tokens) / self.per_second

    async def take(self, deadline: float, sleep: Callable[[float], Awaitable[None]]) -> bool:
        """Wait for a token until ``deadline`` (clock time); ``False`` if it did not come."""
        while not self.try_take():
            wait = self.wait_time()
            now = self._clock()
            if wait is None or now + wait > deadline:
                if deadline > now:
                    await sleep(deadline - now)
                return self.try_take()
            await sleep(wait)
        return True


class RetryPolicy:
    """When and how long to wait before retrying a transient failure.

    ``attempts`` in all (the first included); the delay before retry ``n`` (from 0) is
    uniform in ``[0, min(cap, base * 2**n)]`` ("full jitter"), or the server's
    ``Retry-After`` (capped at ``retry_after_cap``) when it sent one.
    """

    __slots__ = ("attempts", "base", "cap", "retry_after_cap", "rng")

    def __init__(
        self,
        attempts: int,
        *,
        base: float,
        cap: float,
        retry_after_cap: float,
        rng: random.Random,
    ) -> None:
        self.attempts = attempts
        self.base = base
        self.cap = cap
        self.retry_after_cap = retry_after_cap
        self.rng = rng

    def backoff(self, retry: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap)
        return self.rng.uniform(0.0, min(self.cap, self.base * 2.0**retry))
