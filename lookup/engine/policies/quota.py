"""The quota a :class:`~lookup.engine.checker.Checker` paces by when many processes share one.

One checker per process enforces its limits for that process. When several processes (batch
runs, service workers, Ray actors) check against the *same* order-API identity, the rate
budget must be one, not one per process: that is a :class:`Quota`, e.g. the Redis one in
:mod:`lookup.scale.redis` or a Ray actor. A checker given a quota paces by it *instead of* its
own :class:`~lookup.engine.policies.Pacer`:

* :meth:`Quota.admit` reserves this request's start slot in the shared budget (GCRA: evenly
  spaced starts, no burst after idle time) and waits for it;
* :meth:`Quota.on_throttle` reports a throttle signal: the quota lowers the *shared* rate
  (AIMD, the same rules as the Pacer's) and pauses every process for a ``Retry-After``;
* :meth:`Quota.on_clean` reports an answer that was not throttled (what earns increases).

The local pacer is then not consulted and hears no throttle: the quota alone counts each
request once and decreases once per signal (no double counting, no double decrease).
``limits.max_per_second`` is the ceiling of the *shared* rate, not of one process.

Times are relative seconds (``max_wait``, ``sent_ago``, ``retry_after``), never one
process's clock values, so an implementation may keep its state on another machine.

Two optional parts, ``None`` when an implementation does not share them (the checker then
keeps them per process): :class:`SharedBreaker` (one process's open breaker is every
process's, one half-open probe in all) and :class:`SharedOutcomes` (an outcome cache and
single flight of identical checks across processes).

:class:`LocalQuota` is the in-process implementation over a :class:`Pacer`: the reference
for the semantics, a stand-in in tests, and the fallback of a shared quota whose store is away.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

from lookup.domain.models import CheckOutcome
from lookup.engine.policies.pacing import Pacer

__all__ = ["LocalQuota", "Quota", "SharedBreaker", "SharedOutcomes"]


class SharedBreaker(Protocol):
    """The circuit breaker's state, shared. Each process still counts its own failures;
    what is shared is the *open* state and the single half-open probe."""

    def open_for(self) -> float:
        """Seconds the shared breaker stays open, as last learned (``0.0``: not open).

        Synchronous: an implementation refreshes it on its own round trips (e.g. the one of
        :meth:`Quota.admit`), so reading it costs nothing.
        """
        ...

    async def opened(self, cooldown: float, error: str) -> None:
        """This process's breaker opened (or its probe failed): open it for everyone for
        ``cooldown`` seconds. ``error`` is a masked one-line description."""
        ...

    async def claim_probe(self) -> bool:
        """This process wants to send the half-open probe: ``True`` when no other process
        is probing (the claim expires by itself if this process dies)."""
        ...

    async def closed(self) -> None:
        """A probe (or any answer while half-open) succeeded: close it for everyone."""
        ...


class SharedOutcomes(Protocol):
    """An outcome cache and single flight of identical checks across processes.

    Keys are the implementation's business, but must never contain the number itself
    (hash it under the quota's namespace).
    """

    async def claim(self, phone: str) -> CheckOutcome | None:
        """The shared cached answer for ``phone``; or ``None`` once this process should
        check it itself: it holds the claim, or another holder's answer did not come in a
        bounded time."""
        ...

    async def publish(self, phone: str, outcome: CheckOutcome | None) -> None:
        """Store ``outcome`` for every process and release the claim (``None``: no answer;
        a waiting process checks it itself)."""
        ...


class Quota(Protocol):
    """A rate budget shared by every checker that uses it (see the module docstring)."""

    @property
    def rate(self) -> float | None:
        """The shared effective rate in requests per second (``None``: unpaced)."""
        ...

    @property
    def paused_for(self) -> float:
        """Seconds of a ``Retry-After`` pause left, as last learned (``0.0``: none)."""
        ...

    @property
    def breaker(self) -> SharedBreaker | None:
        """The shared breaker state, or ``None``: each checker keeps its own."""
        ...

    @property
    def outcomes(self) -> SharedOutcomes | None:
        """The shared cache and single flight, or ``None``: each checker keeps its own."""
        ...

    async def admit(self, max_wait: float = math.inf) -> bool:
        """Reserve this request's start slot and wait for it; ``False`` (nothing reserved)
        when the slot would come more than ``max_wait`` seconds from now."""
        ...

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        """A request started ``sent_ago`` seconds ago was throttled: lower the shared rate
        if it says something new; with ``retry_after`` (already capped), pause everyone."""
        ...

    def on_clean(self) -> None:
        """An answer that was not throttled. Synchronous: implementations batch these
        (e.g. onto the next :meth:`admit`) instead of a round trip per answer."""
        ...


class LocalQuota:
    """A :class:`Quota` inside one process, over a :class:`Pacer` (breaker and outcomes
    stay per checker). Two checkers given the same ``LocalQuota`` share one budget."""

    breaker: SharedBreaker | None = None
    outcomes: SharedOutcomes | None = None

    def __init__(
        self,
        ceiling: float | None,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headroom: float = 0.02,
    ) -> None:
        self._clock = clock
        self.pacer = Pacer(ceiling, clock=clock, sleep=sleep, headroom=headroom)

    @property
    def rate(self) -> float | None:
        return self.pacer.rate

    @property
    def paused_for(self) -> float:
        return max(0.0, self.pacer.paused_until - self._clock())

    async def admit(self, max_wait: float = math.inf) -> bool:
        pacer = self.pacer
        return pacer.try_start() or await pacer.wait(self._clock() + max_wait)

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        self.throttle(sent_ago, retry_after)

    def throttle(self, sent_ago: float, retry_after: float | None) -> bool:
        """:meth:`on_throttle` without the await; returns whether the rate was lowered."""
        if retry_after is not None:
            self.pacer.pause(max(retry_after, 0.0))
        return self.pacer.on_throttle(self._clock() - max(sent_ago, 0.0))

    def on_clean(self) -> None:
        self.pacer.on_clean()
