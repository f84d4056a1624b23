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

from lookup.engine.policies.pacing import START_RATE
from lookup.engine.policies.quota import LocalQuota
from lookup.scale.redis import scripts
from lookup.scale.redis.lease import LEASE_SPAN, MAX_LEASE, Block, Leases
from lookup.scale.redis.link import RETRY_EVERY, Link, down_reason
from lookup.scale.redis.state import RedisBreaker, RedisOutcomes

__all__ = ["REJOIN_GRACE", "RETRY_EVERY", "START_RATE", "Link", "RedisQuota", "down_reason"]

log = logging.getLogger("lookup.shared")

HORIZON = LEASE_SPAN
"""Seconds ahead of now a lease may begin: further, the caller waits before asking again."""
IDLE = 0.005
"""Seconds without a start after which this process gives back the slots it did not use."""
SLOW_SPAN = LEASE_SPAN / 4
"""Seconds of budget one lease takes at most in the slow start: the rate doubles on answers
to requests sent at the current rate, which begin only when the previous lease ends."""
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
    :param ceiling: the shared rate ceiling (``None``: start at :data:`START_RATE`, the
        local pacer's, and double in a slow start until the first throttle).
    :param fallback_rate: this process's rate while Redis is away (``None``: the last shared
        rate, at most ``ceiling``, divided by ``processes``).
    :param cache_ttl: seconds a shared outcome is kept. ``0`` (no cache) shares no outcomes
        and no flights either: only the leases' round trips.
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
        self._slow = ceiling is None
        self._rate_since = -math.inf  # local clock time the current rate was first learned
        self._paused_until = -math.inf  # local clock, as last learned
        self._clean = 0
        self._local: LocalQuota | None = None  # pacing alone (away, or in the rejoin grace)
        self._grace_until = -math.inf
        self._leases = Leases()
        self._generation = 0  # bumped when the leases are dropped (throttle, pause, away)
        self._fetching: asyncio.Future[bool | None] | None = None
        self._refill_at = -1  # ask for the next lease when this few slots are left
        self._idle: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._last_wait = 0.0  # seconds to the first slot, as the last ADMIT said
        self._held = False  # a caller waited for its slot since the last ADMIT
        self._breaker = RedisBreaker(self, breaker_cooldown)
        self._outcomes = (
            RedisOutcomes(self, secret=secret, cache_ttl=cache_ttl, clock=clock, sleep=sleep)
            if cache_ttl > 0
            else None
        )
        self.granted = 0  # start slots handed to callers (for tests, metrics)
        self.leased = 0  # leases granted by Redis
        self.returned = 0  # leases given back (the unused slots of)

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
        """Whether the shared rate is still doubling from its start (no ceiling, no throttle
        yet): the checker's window does not follow it meanwhile."""
        if self.link.away and self._local is not None:
            return self._local.slow_start
        return self._slow

    def try_admit(self) -> bool:
        """A slot from this process's lease, if one serves now (no round trip)."""
        if self._local is not None or not self._leases.try_take(self._clock()):
            return False
        self.granted += 1
        if self._leases.left <= self._refill_at and self._fetching is None:
            self._refill_at = -1
            self._start_fetch(HORIZON)
        return True

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
        self._learn(result, self._clock())

    async def read(self) -> bool:
        """Refresh the shared rate, pause and breaker without reserving (``False``: away)."""
        return await self._lease(-1.0) is not None

    async def admit(self, max_wait: float = math.inf) -> bool:
        start = self._clock()
        local = self._local
        if local is not None and not self.link.away and start >= self._grace_until:
            self._local = local = None  # the rejoin grace is over
        if local is not None and not await local.admit(max_wait):
            return False
        shared = await self._admit_shared(start + max_wait)
        if shared is not None:
            return shared
        if local is not None:
            return True  # away (and not due for a try): the local slot is all there is
        fallback = self._local  # Redis went away on this very call: pace alone from here
        assert fallback is not None
        return await fallback.admit(max(0.0, start + max_wait - self._clock()))

    async def aclose(self) -> None:
        """Give back the slots not used and send the outcomes not yet published."""
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self._fetching is not None:
            await asyncio.wait([self._fetching])
        if self._background:
            await asyncio.wait(self._background)
        await self._give_back()
        if self._outcomes is not None:
            await self._outcomes.flush()

    # -- leases ----------------------------------------------------------------------------

    async def _admit_shared(self, deadline: float) -> bool | None:
        """A leased slot, after its wait: ``True``, ``False`` (after ``deadline``: nothing
        reserved) or ``None`` (away). One lease is asked for at a time."""
        leases = self._leases
        while True:
            now = self._clock()
            slot = leases.reserve(now, deadline)
            if slot is None:
                self._held = True
                fetching = self._fetching
                if fetching is not None and fetching.done():
                    fetching = self._fetching = None  # its callback has not run yet
                own = fetching is None
                if fetching is None:
                    ahead = leases.booked_until - now - HORIZON
                    if ahead > 0:  # our own slots reach far enough: book no further yet
                        if now + ahead > deadline:
                            return False
                        await self._sleep(ahead)
                        continue
                    fetching = self._start_fetch(max(0.0, min(deadline - now, HORIZON)))
                got = await asyncio.shield(fetching)
                if got is None:
                    return None
                if got or not own:
                    continue  # a lease came (or someone else's ask was refused): look again
                if now + self._last_wait > deadline:
                    return False
                # The budget is booked further ahead than HORIZON: ask again nearer the time.
                await self._sleep(max(self._last_wait - HORIZON, 0.001))
                continue
            if slot == math.inf:
                return False
            self.granted += 1
            if slot > now:
                self._held = True
                generation = self._generation
                await self._sleep(slot - now)
                if generation != self._generation:
                    # A throttle or a pause came while we waited: the slot was leased at the
                    # old terms; queue again behind it (the lost slot only spaces starts more).
                    continue
            return True

    def _start_fetch(self, max_wait: float) -> asyncio.Future[bool | None]:
        task = asyncio.ensure_future(self._lease(max_wait))
        self._fetching = task
        task.add_done_callback(self._fetched)
        return task

    def _fetched(self, task: asyncio.Future[bool | None]) -> None:
        if self._fetching is task:
            self._fetching = None
        if not task.cancelled():
            task.exception()  # retrieved here; the callers awaiting it see it too

    async def _lease(self, max_wait: float) -> bool | None:
        """One ADMIT call: ``True`` a lease was granted, ``False`` its first slot would come
        too late (see ``_last_wait``), ``None`` away."""
        clean, self._clean = self._clean, 0
        want = 0
        if max_wait >= 0:
            want = self._leases.size(self._clock(), self.granted, bool(self.leased), MAX_LEASE)
            max_wait = min(max_wait, 3600.0)
        held, self._held = self._held, False
        span = SLOW_SPAN if self._slow else LEASE_SPAN
        args = [*self.args(max_wait, clean), want, span, 1 if held else 0]
        result = await self.link.call(scripts.ADMIT, [self.key], args)
        if result is None:
            self._clean += clean
            return None
        now = self._clock()
        count = self._learn(result, now)
        self._last_wait = wait = _f(result[1])
        if count == 0:
            return False
        interval = (1.0 + self._headroom) / self._rate
        block = Block(count, now + wait, interval, _s(result[7]), _s(result[8]))
        self._leases.add(block)
        self.leased += 1
        self._refill_at = count // 2 if count >= 4 else -1
        if self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(IDLE, self._idle_check)
        return True

    def _learn(self, result: list[Any], now: float) -> int:
        """The shared state an ADMIT brought back; the slots it granted."""
        rate, pause, open_for = _f(result[2]), _f(result[3]), _f(result[4])
        if rate != self._rate:
            if int(result[5]):
                log.debug("no throttling for a while: shared rate %.0f/s -> %.0f/s",
                          self._rate, rate)  # fmt: skip
            self._rate = rate
            self._rate_since = now
        self._slow = bool(int(result[6]))
        self._paused_until = now + pause if pause > 0 else -math.inf
        self._breaker.learn(open_for, now)
        return int(result[0])

    def _drop(self) -> None:
        """Forget the leases (a throttle, a pause, Redis away): callers sleeping until a
        leased slot queue again."""
        self._leases.clear()
        self._generation += 1

    def _idle_check(self) -> None:
        """No start for :data:`IDLE` seconds: give back what is left (or look again)."""
        self._idle = None
        leases = self._leases
        if not leases.left:
            return
        quiet = self._clock() - leases.last
        loop = asyncio.get_running_loop()
        if quiet < IDLE or self._fetching is not None:
            self._idle = loop.call_later(max(IDLE - quiet, 0.001), self._idle_check)
            return
        task = loop.create_task(self._give_back())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _give_back(self) -> None:
        """Give the unused slots of the latest lease back to the budget (when no lease was
        granted after it), and forget every lease."""
        leases = self._leases
        block = leases.tail
        if block is None or not leases.left:
            leases.clear()
            return
        after = max(leases.next - self._clock(), 0.0)
        leases.clear()
        args = [block.redis_first, block.redis_end, *self.args(), after]
        result = await self.link.call(scripts.RETURN, [self.key], args)
        if result is not None and int(result):
            self.returned += 1

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        if self._local is not None:
            self._local.throttle(sent_ago, retry_after)
        ra = -1.0 if retry_after is None else max(retry_after, 0.0)
        args = self.args(max(sent_ago, 0.0), ra)
        result = await self.link.call(scripts.THROTTLE, [self.key], args)
        if result is None:
            return
        lowered, old, new, pause = int(result[0]), _f(result[1]), _f(result[2]), _f(result[3])
        now = self._clock()
        if lowered:
            self._slow = False
            self._rate_since = now
        self._rate = new
        paused_until = now + pause if pause > 0 else -math.inf
        if lowered or paused_until > self._paused_until + 0.001:
            self._drop()  # the slots leased at the old terms: queue again at the new ones
        self._paused_until = paused_until
        if lowered:
            log.info("order API throttled: shared rate %.0f/s -> %.0f/s", old, new)
        if ra > 0 and pause >= ra - 0.05:  # this signal set the pause (not an older one)
            log.info("order API asked to wait: pausing every process for %.1f s (Retry-After)",
                     ra)  # fmt: skip

    def on_clean(self, sent_ago: float = 0.0) -> None:
        # In the slow start, only answers to requests sent at the current rate count.
        if not self._slow or self._clock() - sent_ago >= self._rate_since:
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
        local.pacer.defer(self._leases.booked_until)
        self._drop()
        self._local = local
        self._grace_until = math.inf

    def _back(self) -> None:
        self._grace_until = self._clock() + REJOIN_GRACE


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _f(value: Any) -> float:
    if isinstance(value, bytes):
        value = value.decode()
    return float(value)
