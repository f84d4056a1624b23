"""The quota a :class:`~lookup.engine.checker.Checker` paces by when many processes share one.

A checker always paces through a :class:`Quota`. Alone, it is a :class:`LocalQuota` over the
checker's own :class:`~lookup.engine.policies.Pacer`. When several processes (batch runs,
service workers, Ray actors) check against the *same* order-API identity, the rate budget
must be one, not one per process: the checker is then given the shared one (the Redis one
in :mod:`lookup.scale.redis`, the Ray token actor's client in :mod:`lookup.scale.ray`), and
the same hooks reach it:

* :meth:`Quota.try_admit` takes a start slot at once if one is free (the fast path: no
  await, no round trip; a shared quota answers from slots it leased);
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

Two more parts: :class:`SharedBreaker` (one process's open breaker is every process's, one
half-open probe in all; :data:`UNSHARED_BREAKER` when an implementation does not share it:
each checker's breaker is then its own) and :class:`SharedOutcomes` (an outcome cache and
single flight of identical checks across processes; ``None`` when not shared).

:class:`LocalQuota` is the in-process implementation over a :class:`Pacer`: the reference
for the semantics, a stand-in in tests, and the fallback of a shared quota whose store is away.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Protocol

from lookup.domain.models import CheckOutcome
from lookup.engine.policies.pacing import START_RATE, Pacer

__all__ = [
    "UNSHARED_BREAKER",
    "LocalQuota",
    "Quota",
    "SharedBreaker",
    "SharedOutcomes",
    "UnsharedBreaker",
]


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


class UnsharedBreaker:
    """The :class:`SharedBreaker` of a quota that shares none: never open elsewhere, every
    probe this process's own, nothing to tell."""

    __slots__ = ()

    def open_for(self) -> float:
        return 0.0

    async def opened(self, cooldown: float, error: str) -> None:
        return None

    async def claim_probe(self) -> bool:
        return True

    async def closed(self) -> None:
        return None


UNSHARED_BREAKER: SharedBreaker = UnsharedBreaker()


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
    def slow_start(self) -> bool:
        """Whether the rate is still doubling from its start (no ceiling, no throttle yet):
        the checker's concurrency window does not follow the rate meanwhile."""
        ...

    @property
    def breaker(self) -> SharedBreaker:
        """The shared breaker state (:data:`UNSHARED_BREAKER`: each checker keeps its own)."""
        ...

    @property
    def outcomes(self) -> SharedOutcomes | None:
        """The shared cache and single flight, or ``None``: each checker keeps its own."""
        ...

    def try_admit(self) -> bool:
        """Take a start slot now if one is free, without waiting or a round trip (``False``:
        call :meth:`admit`)."""
        ...

    async def admit(self, max_wait: float = math.inf) -> bool:
        """Reserve this request's start slot and wait for it; ``False`` (nothing reserved)
        when the slot would come more than ``max_wait`` seconds from now."""
        ...

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        """A request started ``sent_ago`` seconds ago was throttled: lower the shared rate
        if it says something new; with ``retry_after`` (already capped), pause everyone."""
        ...

    def on_clean(self, sent_ago: float = 0.0) -> None:
        """An answer that was not throttled, to a request started ``sent_ago`` seconds ago.
        Synchronous: implementations batch these (e.g. onto the next :meth:`admit`) instead
        of a round trip per answer."""
        ...


class LocalQuota:
    """A :class:`Quota` inside one process, over a :class:`Pacer` (breaker and outcomes
    stay per checker). A checker given none paces by its own; two checkers given the same
    ``LocalQuota`` share one budget.

    :param start: with no ceiling, the slow start's first rate (see :class:`Pacer`).
    :param on_change: called by the pacer with the new rate after a change.
    """

    breaker: SharedBreaker = UNSHARED_BREAKER
    outcomes: SharedOutcomes | None = None

    def __init__(
        self,
        ceiling: float | None,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        headroom: float = 0.02,
        start: float | None = START_RATE,
        on_change: Callable[[float | None, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self.pacer = Pacer(
            ceiling, clock=clock, sleep=sleep, headroom=headroom, start=start,
            on_change=on_change,
        )  # fmt: skip

    @property
    def rate(self) -> float | None:
        return self.pacer.rate

    @property
    def slow_start(self) -> bool:
        return self.pacer.slow_start

    @property
    def paused_for(self) -> float:
        return max(0.0, self.pacer.paused_until - self._clock())

    def try_admit(self) -> bool:
        return self.pacer.try_start()

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

    def on_clean(self, sent_ago: float = 0.0) -> None:
        self.pacer.on_clean(self._clock() - sent_ago)
