"""One rate budget for many Ray actors without Redis: a token actor and its client.

:class:`RateTokens` is the budget's state, kept by one named Ray actor (``TokenActor``):
a :class:`~lookup.engine.policies.Pacer` whose start slots are reserved for callers elsewhere
(``reserve`` returns the delay before this request may start, so the actor never holds a
call open): a ``Retry-After`` pause for everyone, and AIMD on the throttle reports of
every client by the pacer's own rules. Times crossing processes are relative seconds: each side reads
its own monotonic clock.

:class:`RayQuota` is the client each lookup actor's checker paces by (the ``Quota``
protocol of :mod:`lookup.engine.policies.quota`): one round trip per request start while a rate
holds; none while the budget is unpaced (no ceiling and no throttle yet), when it only
refreshes the shared state every :data:`REFRESH` seconds. Clean answers and unpaced starts
are counted locally and ride on the next round trip. If the token actor is lost, the
client paces alone at ``fallback_rate`` (the ceiling split over the actors), which keeps
the total under the ceiling.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from lookup.engine.policies.pacing import Pacer
from lookup.engine.policies.quota import UNSHARED_BREAKER, SharedBreaker

__all__ = ["REFRESH", "RateTokens", "RayQuota", "TokenActor"]

log = logging.getLogger("lookup.raybatch")

REFRESH: Final = 0.1
"""Seconds an unpaced client goes without asking the token actor for the shared state."""

State = tuple[float | None, float]
"""``(rate, paused_for)``: the shared rate (``None``: unpaced) and seconds of pause left."""


class RateTokens:
    """The shared budget: a :class:`~lookup.engine.policies.Pacer` (GCRA slots under ``ceiling``,
    the pause, AIMD) whose slots are reserved for callers in other processes (see the
    module). With no ceiling it is unpaced until the first throttle report."""

    def __init__(self, ceiling: float | None, *, clock: Callable[[], float] = time.monotonic,
                 headroom: float = 0.02) -> None:  # fmt: skip
        self._clock = clock
        self._pacer = Pacer(ceiling, clock=clock, sleep=_no_sleep, headroom=headroom,
                            start=None)  # fmt: skip

    @property
    def ceiling(self) -> float | None:
        return self._pacer.ceiling

    @property
    def rate(self) -> float | None:
        return self._pacer.rate

    @property
    def decreases(self) -> int:
        return self._pacer.decreases

    def set_ceiling(self, ceiling: float | None) -> None:
        """A new ceiling (the engines' own, known once they open); the rate restarts at it."""
        self._pacer.set_ceiling(ceiling)

    def state(self) -> State:
        return self._pacer.rate, max(0.0, self._pacer.paused_until - self._clock())

    def reserve(self, max_wait: float = math.inf) -> float | None:
        """Reserve the next start slot: the seconds to wait for it, or ``None`` (nothing
        reserved) when it would come more than ``max_wait`` seconds from now."""
        return self._pacer.reserve(max_wait)

    def note(self, starts: int = 0, clean: int = 0) -> None:
        """Starts a client made without a reservation (unpaced) and its clean answers."""
        if starts:
            self._pacer.note_starts(starts)
        for _ in range(clean):
            self._pacer.on_clean()

    def throttle(self, sent_ago: float, retry_after: float | None) -> bool:
        """A request started ``sent_ago`` seconds ago was throttled; with ``retry_after``,
        pause everyone. Returns whether the rate was lowered."""
        if retry_after is not None and retry_after > 0:
            self._pacer.pause(retry_after)
        return self._pacer.on_throttle(self._clock() - max(sent_ago, 0.0))


async def _no_sleep(seconds: float) -> None:
    """The token actor never sleeps: callers sleep for the delays it hands out."""
    raise AssertionError("the token actor reserves slots; it never waits")


class TokenActor:
    """The named Ray actor holding one :class:`RateTokens` (async methods without an
    await: each call runs whole, so the state needs no lock)."""

    def __init__(self, ceiling: float | None) -> None:
        self._tokens = RateTokens(ceiling)

    async def set_ceiling(self, ceiling: float | None) -> None:
        self._tokens.set_ceiling(ceiling)

    async def reserve(self, max_wait: float, starts: int, clean: int) -> tuple[float | None, State]:
        self._tokens.note(starts, clean)
        return self._tokens.reserve(max_wait), self._tokens.state()

    async def throttle(self, sent_ago: float, retry_after: float | None) -> State:
        self._tokens.throttle(sent_ago, retry_after)
        return self._tokens.state()

    async def refresh(self, starts: int, clean: int) -> State:
        self._tokens.note(starts, clean)
        return self._tokens.state()

    async def decreases(self) -> int:
        return self._tokens.decreases


class RayQuota:
    """A lookup actor's client of the token actor: the ``Quota`` protocol (no shared
    breaker or outcomes: each checker keeps its own)."""

    breaker: SharedBreaker = UNSHARED_BREAKER
    outcomes: None = None
    slow_start = False
    """The token actor's budget is unpaced until the first throttle (no slow start here)."""

    def __init__(self, tokens: Any, *, fallback_rate: float | None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:  # fmt: skip
        self._tokens = tokens
        self.fallback_rate = fallback_rate
        self._clock = clock
        self._sleep = sleep
        self._rate: float | None = None
        self._learned = False  # the shared state was seen at least once
        self._paused_until = -math.inf
        self._refreshed = -math.inf
        self._starts = 0
        self._clean = 0
        self._fallback: Pacer | None = None

    @property
    def rate(self) -> float | None:
        return self._fallback.rate if self._fallback is not None else self._rate

    @property
    def paused_for(self) -> float:
        until = self._fallback.paused_until if self._fallback is not None else self._paused_until
        return max(0.0, until - self._clock())

    def _learn(self, state: State) -> None:
        rate, paused_for = state
        now = self._clock()
        self._rate = rate
        self._learned = True
        self._paused_until = now + paused_for if paused_for > 0 else -math.inf
        self._refreshed = now

    def _lost(self, exc: BaseException) -> Pacer:
        if self._fallback is None:
            log.warning("the Ray token actor is gone (%s): pacing this actor alone at %s",
                        type(exc).__name__,
                        f"{self.fallback_rate:g}/s" if self.fallback_rate else "no ceiling")  # fmt: skip
            self._fallback = Pacer(self.fallback_rate, clock=self._clock, sleep=self._sleep)
        return self._fallback

    async def _call(self, method: str, *args: object) -> Any:
        """``await tokens.method.remote(*args)``; ``None`` once the actor is lost."""
        from ray.exceptions import RayActorError

        try:
            return await getattr(self._tokens, method).remote(*args)
        except RayActorError as exc:
            self._lost(exc)
            return None

    async def admit(self, max_wait: float = math.inf) -> bool:
        if self._fallback is None:
            now = self._clock()
            if self._learned and self._rate is None and self._paused_until <= now:
                # Unpaced (no ceiling, no throttle yet): no round trip per start.
                self._starts += 1
                if now - self._refreshed >= REFRESH:
                    starts, clean, self._starts, self._clean = self._starts, self._clean, 0, 0
                    self._refreshed = now  # one refresh at a time
                    state = await self._call("refresh", starts, clean)
                    if state is not None:
                        self._learn(state)
                return True
            clean, self._clean = self._clean, 0
            answer = await self._call("reserve", max_wait, 0, clean)
            if answer is not None:
                delay, state = answer
                self._learn(state)
                if delay is None:
                    return False
                if delay > 0:
                    await self._sleep(delay)
                return True
        pacer = self._fallback
        assert pacer is not None
        return pacer.try_start() or await pacer.wait(self._clock() + max_wait)

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        if self._fallback is None:
            state = await self._call("throttle", sent_ago, retry_after)
            if state is not None:
                self._learn(state)
                return
        pacer = self._fallback
        assert pacer is not None
        if retry_after is not None:
            pacer.pause(max(retry_after, 0.0))
        pacer.on_throttle(self._clock() - max(sent_ago, 0.0))

    def try_admit(self) -> bool:
        """No slot without a word with the token actor (or the fallback's wait)."""
        return False

    def on_clean(self, sent_ago: float = 0.0) -> None:
        if self._fallback is not None:
            self._fallback.on_clean()
        else:
            self._clean += 1
