"""The Redis quota: one rate budget (and breaker, cache, single flight) for many processes.

:class:`RedisQuota` implements :class:`lookup.engine.policies.quota.Quota` over a
``redis.asyncio`` client: one script call (:data:`~lookup.scale.redis.scripts.ADMIT`) per
request on the happy path, which also brings back the shared rate, the pause and the
breaker state, and carries the clean answers seen since the last call (no round trip per
answer).

When Redis cannot be reached during a run (connection refused or reset, a timeout), the
:class:`Link` falls back: this process paces alone at ``fallback_rate`` (default: the
last shared rate, at most the ceiling, divided by the expected processes), logs it once
at WARNING, tries Redis again at most once a second and logs INFO when it is back. While
away, the breaker, cache and single flight are this process's own. After rejoining, a
process keeps its fallback pacing for :data:`REJOIN_GRACE` seconds *as well as* the
shared budget: the others may still be pacing alone until their next try, and the two
together must not pass the global rate.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from lookup.engine.policies.quota import LocalQuota
from lookup.scale.redis import scripts
from lookup.scale.redis.link import RETRY_EVERY, Link, down_reason
from lookup.scale.redis.state import RedisBreaker, RedisOutcomes

__all__ = ["REJOIN_GRACE", "RETRY_EVERY", "START_RATE", "Link", "RedisQuota", "down_reason"]

log = logging.getLogger("lookup.shared")

START_RATE = 10.0
"""Without a ceiling, the shared rate starts here and probes upward (slow start)."""
REJOIN_GRACE = 1.5
"""Seconds after rejoining during which the fallback pacing still applies (> RETRY_EVERY:
by then every process that was pacing alone has tried Redis again)."""
IDLE_EXPIRY_MS = 600_000
"""A namespace's state expires after ten idle minutes (a new run starts from the ceiling)."""

class RedisQuota:
    """A :class:`~lookup.engine.policies.quota.Quota` in Redis, namespaced by ``namespace``.

    :param client: a ``redis.asyncio.Redis`` (owned by the caller).
    :param url: the Redis URL, for messages only (shown redacted).
    :param namespace: hash of the API identity; every key starts with ``lookup:{namespace}:``.
    :param secret: keys the hashes of phone numbers (HMAC); never stored.
    :param ceiling: the shared rate ceiling (``None``: start at :data:`START_RATE`, probe up).
    :param fallback_rate: this process's rate while Redis is away (``None``: the last shared
        rate, at most ``ceiling``, divided by ``processes``).
    :param cache_ttl: seconds a shared outcome is kept. ``0`` (no cache) shares no outcomes
        and no flights either: one round trip per request, the ADMIT call.
    """

    def __init__(
        self,
        client: Redis,
        url: str,
        *,
        namespace: str,
        secret: bytes,
        ceiling: float | None,
        fallback_rate: float | None = None,
        processes: int = 2,
        cache_ttl: float = 300.0,
        breaker_cooldown: float = 10.0,
        headroom: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.ceiling = ceiling
        self.namespace = namespace
        self.key = f"lookup:{namespace}:quota"
        self._fallback = fallback_rate
        self._processes = max(1, processes)
        self._headroom = headroom
        self._clock = clock
        self._sleep = sleep
        self.link = Link(
            client, url, clock=clock, on_away=self._away, on_back=self._back,
            fallback_text=self._away_text,
        )  # fmt: skip
        self._rate: float = ceiling if ceiling is not None else START_RATE
        self._paused_until = -math.inf  # local clock, as last learned
        self._clean = 0
        self._local: LocalQuota | None = None  # pacing alone (away, or in the rejoin grace)
        self._grace_until = -math.inf
        self._last_slot = -math.inf  # local clock time of the latest slot granted by Redis
        self._breaker = RedisBreaker(self, breaker_cooldown)
        self._outcomes = (
            RedisOutcomes(self, secret=secret, cache_ttl=cache_ttl, clock=clock, sleep=sleep)
            if cache_ttl > 0
            else None
        )
        self.granted = 0  # requests admitted through the shared budget (for tests, metrics)

    # -- Quota ---------------------------------------------------------------------------

    @property
    def rate(self) -> float | None:
        if self.link.away and self._local is not None:
            return self._local.rate
        return self._rate

    @property
    def paused_for(self) -> float:
        if self.link.away and self._local is not None:
            return self._local.paused_for
        return max(0.0, self._paused_until - self._clock())

    @property
    def slow_start(self) -> bool:
        """The window follows the shared rate from the start (Redis keeps the slow start)."""
        return False

    def try_admit(self) -> bool:
        """No slot without a round trip."""
        return False

    @property
    def breaker(self) -> RedisBreaker:
        return self._breaker

    @property
    def outcomes(self) -> RedisOutcomes | None:
        return self._outcomes

    def clock(self) -> float:
        return self._clock()

    @property
    def away(self) -> bool:
        """Whether Redis is unreachable now (this process paces alone)."""
        return self.link.away

    def args(self, *first: object) -> list[Any]:
        """Script arguments: ``first`` then the ceiling, headroom, start rate, expiry."""
        return [*first, self.ceiling or 0, self._headroom, START_RATE, IDLE_EXPIRY_MS]

    async def start(self) -> None:
        """The first read, raising what the client raised (so that a Redis that cannot
        serve the quota is an error at start, not a fallback)."""
        script = self.link.script(scripts.ADMIT)
        result = await script(keys=[self.key], args=self.args(-1.0, 0))
        self._rate = _f(result[2])

    async def read(self) -> bool:
        """Refresh the shared rate, pause and breaker without reserving (``False``: away)."""
        return await self._admit_shared(-1.0) is not None

    async def admit(self, max_wait: float = math.inf) -> bool:
        start = self._clock()
        local = self._local
        if local is not None and not self.link.away and start >= self._grace_until:
            self._local = local = None  # the rejoin grace is over
        if local is not None and not await local.admit(max_wait):
            return False
        left = max(0.0, max_wait - (self._clock() - start))
        shared = await self._admit_shared(left)
        if shared is not None:
            return shared
        if local is not None:
            return True  # away (and not due for a try): the local slot is all there is
        fallback = self._local  # Redis went away on this very call: pace alone from here
        assert fallback is not None
        return await fallback.admit(left)

    async def _admit_shared(self, max_wait: float) -> bool | None:
        """One ADMIT call: ``True`` granted (after its wait), ``False`` late, ``None`` away."""
        clean, self._clean = self._clean, 0
        wait_arg = -1.0 if max_wait < 0 else min(max_wait, 3600.0)
        result = await self.link.call(scripts.ADMIT, [self.key], self.args(wait_arg, clean))
        if result is None:
            self._clean += clean
            return None
        status, wait, rate, pause, open_for = (_f(v) for v in result[:5])
        now = self._clock()
        if rate != self._rate and int(result[5]):
            log.debug("no throttling for a while: shared rate %.0f/s -> %.0f/s", self._rate, rate)
        self._rate = rate
        self._paused_until = now + pause if pause > 0 else -math.inf
        self._breaker.learn(open_for, now)
        if max_wait < 0 or not status:
            return False
        self.granted += 1
        slot = now + wait
        self._last_slot = max(self._last_slot, slot)
        if wait > 0:
            await self._sleep(wait)
            if self._paused_until > slot:
                # A Retry-After came (to this process) while we waited and our slot fell
                # inside the pause: queue again behind it, as the Pacer does.
                return await self._admit_shared(max(0.0, max_wait - (self._clock() - now)))
        return True

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        if self._local is not None:
            self._local.throttle(sent_ago, retry_after)
        ra = -1.0 if retry_after is None else max(retry_after, 0.0)
        args = self.args(max(sent_ago, 0.0), ra)
        result = await self.link.call(scripts.THROTTLE, [self.key], args)
        if result is None:
            return
        lowered, old, new, pause = int(result[0]), _f(result[1]), _f(result[2]), _f(result[3])
        self._rate = new
        self._paused_until = self._clock() + pause if pause > 0 else -math.inf
        if lowered:
            log.info("order API throttled: shared rate %.0f/s -> %.0f/s", old, new)
        if ra > 0 and pause >= ra - 0.05:  # this signal set the pause (not an older one)
            log.info("order API asked to wait: pausing every process for %.1f s (Retry-After)",
                     ra)  # fmt: skip

    def on_clean(self, sent_ago: float = 0.0) -> None:
        self._clean += 1
        if self._local is not None:
            self._local.on_clean()

    # -- fallback ------------------------------------------------------------------------

    def fallback_rate(self) -> float:
        """This process's rate while Redis is away."""
        if self._fallback is not None:
            return self._fallback
        shared = self._rate if self.ceiling is None else min(self._rate, self.ceiling)
        return max(shared / self._processes, 0.2)

    def _away_text(self) -> str:
        return f"this process paces alone at {self.fallback_rate():.4g}/s until it returns"

    def _away(self) -> None:
        local = LocalQuota(
            self.fallback_rate(), clock=self._clock, sleep=self._sleep, headroom=self._headroom
        )
        # Slots Redis granted are still to come (callers sleep until them): start after.
        rate = local.rate or 1.0
        local.pacer.defer(self._last_slot + (1.0 + self._headroom) / rate)
        self._local = local
        self._grace_until = math.inf

    def _back(self) -> None:
        self._grace_until = self._clock() + REJOIN_GRACE


def _f(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    return float(value)
