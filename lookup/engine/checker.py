"""Running checks against the order API within global limits: the policies, composed.

One :class:`Checker` per process (or per client) is shared by every lookup, so its
limits hold across concurrent lookups, batch runs and the service. A check goes:

    cache -> single flight -> breaker (wait while open) -> concurrency slot -> quota
    -> the API -> outcome recorded (breaker, quota AIMD, retry budget, cache)

Every policy is reached through the same few hooks, in one loop: the attempts of a check,
run by the :class:`~lookup.engine.sending.Sender` (a synchronous ``try_*`` fast path and an
awaited wait before the request, then one report after it). The order is fixed, not a
list walked per check: the check path stays as short as a hand-written loop. The checker
composes that sender with the outcome cache, single flight and fair shares.

Throttling (429, 503 + ``Retry-After``, a throttle signal in the body) is backpressure:
the pacer lowers its rate (and pauses for ``Retry-After``) and the check is sent again
when its slot comes; it never counts toward the breaker or the retry budget. Transient
failures are retried with full-jitter backoff while the refilling retry budget has
tokens; what still fails is raised for the matcher to defer.

Each running lookup sees the checker through :meth:`Checker.lookup`, a view that keeps it
to its fair share of the in-flight slots (:mod:`lookup.engine.policies.fair`).

Pacing always goes through a :class:`~lookup.engine.policies.quota.Quota`: the checker's own
:class:`~lookup.engine.policies.quota.LocalQuota` (its pacer), or one budget for many processes
(Redis, the Ray token actor). The shared ones also open and probe the breaker with the
other processes, and may share the outcome cache and single flight (see
:mod:`lookup.engine.policies.quota`).

The happy path creates no task and awaits nothing but the API call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Mapping, Sequence
from typing import Protocol

from lookup.domain.errors import (
    TransientApiError,
)
from lookup.domain.models import DEFAULT_LIMITS, CheckOutcome, Limits
from lookup.engine.checkstate import (
    CheckerCounters,
    CheckerStatus,
    CheckHalted,
    Checks,
    CheckStats,
    State,
)
from lookup.engine.policies import (
    BreakerState,
    ChunkSizer,
    FairScheduler,
    Quota,
    SingleFlight,
)
from lookup.engine.policies.cache import CheckOutcomeCache
from lookup.engine.sending import Sender
from lookup.engine.view import LookupChecks

__all__ = [
    "CheckHalted",
    "CheckStats",
    "Checker",
    "CheckerCounters",
    "CheckerStatus",
    "Checks",
    "LookupChecks",
]

_THROTTLED_FOR = 5.0  # seconds after a throttle signal the status still says "throttled"


class _Api(Protocol):
    async def check(self, phone: str) -> CheckOutcome: ...


class Checker:
    """Checks phone numbers against an order API within the process-wide ``limits``.

    :param api: anything with ``async check(phone) -> CheckOutcome`` that raises from the
        ``OrderApiError`` tree (and optionally ``check_many``, used for chunks).
    :param limits: concurrency, rate ceiling, retry, breaker and cache settings.
    :param clock: monotonic seconds; injectable for tests (also times latency and the cache).
    :param sleep: ``asyncio.sleep`` or a fake; every wait of the checker goes through it.
    :param rng: source of backoff jitter; seed it for reproducible runs.
    :param on_latency: called after every attempt with its duration in seconds and one of
        ``"hit"``, ``"miss"``, ``"transient"``, ``"throttled"``, ``"fatal"``.
    :param one_lookup: this checker serves a single lookup, which never asks the same
        number twice: no outcome cache and no single flight (they could never hit).
    :param quota: a rate budget shared with other checkers (processes), and
        ``limits.max_per_second`` is then the shared ceiling; by default the checker's own
        :class:`~lookup.engine.policies.quota.LocalQuota` over ``limits``.

    Example::

        checker = Checker(api, Limits(max_in_flight=8, max_per_second=20))
        async with checker.lookup() as checks:
            outcome = await checks.check("13800138000", CheckStats())

    The checker binds to no event loop until used, but must then stay on one loop.
    """

    def __init__(
        self,
        api: _Api,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_latency: Callable[[float, str], None] | None = None,
        quota: Quota | None = None,
        one_lookup: bool = False,
    ) -> None:
        self._api = api
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        # A source that bounds each call itself (HTTP: its total timeout) needs no timer of
        # ours unless the deadline comes first.
        bound = getattr(api, "call_timeout", None)
        self._sender = sender = Sender(
            limits, clock=clock, sleep=sleep, rng=rng, on_latency=on_latency, quota=quota,
            self_bound=float(bound) if isinstance(bound, int | float) else math.inf,
        )  # fmt: skip
        # The policies, shared with the sender (the same objects).
        self._counters = sender.counters
        self._slots = sender.slots
        self._quota = sender.quota
        self._budget = sender.budget
        self._breaker = sender.breaker
        listen = getattr(api, "add_request_listener", None)
        if callable(listen):  # requests a source sends on its own (a followed redirect)
            listen(sender.extra_request)
        self._batch = callable(getattr(api, "check_many", None)) and bool(
            getattr(api, "batch_supported", True)
        )

        self._chunks = ChunkSizer(limits.batch_size, adapt=limits.adapt_batch_size)
        # A source that answers a whole segment in one query (a range scan) says so.
        self._segments = self._batch and bool(getattr(api, "segment_queries", False))
        self._cache: CheckOutcomeCache | None = (
            CheckOutcomeCache(limits.cache_size, limits.cache_ttl, clock=clock)
            if limits.cache_ttl > 0 and limits.cache_size > 0 and not one_lookup
            else None
        )
        self._flights: SingleFlight[CheckOutcome] | None = (
            None if one_lookup else SingleFlight((CheckHalted,))
        )
        self._fair = FairScheduler(lambda: self._slots.limit)
        sender.on_window = self._fair.rebalance
        self._background: set[asyncio.Future[None]] = set()
        # Chosen once: the shared outcome cache's claim and publish, or none.
        self._send_one = self._single if self._quota.outcomes is None else self._single_shared
        # One lookup with nothing shared: a check is the attempts loop and nothing else.
        self._direct = self._flights is None and self._quota.outcomes is None

    @property
    def _self_bound(self) -> float:
        """Seconds the source bounds each call by itself (``math.inf``: no bound)."""
        return self._sender.self_bound

    # -- public surface ------------------------------------------------------------------

    @property
    def limits(self) -> Limits:
        """The limits this checker enforces (the rate is a ceiling)."""
        return self._limits

    @property
    def breaker_state(self) -> BreakerState:
        """``closed``, ``open`` (checks wait) or ``half_open`` (a probe may go)."""
        return self._breaker.state

    @property
    def in_flight(self) -> int:
        """Concurrency slots held right now (waiting for pacing or calling)."""
        return self._slots.active

    @property
    def concurrency_limit(self) -> int:
        """The current concurrency limit (``max_in_flight``, or less while adapting)."""
        return self._slots.limit

    @property
    def rate(self) -> float | None:
        """The effective rate (checks/s): the ceiling, or what the quota has learned
        (``None``: unpaced)."""
        return self._quota.rate

    @property
    def quota(self) -> Quota:
        """The budget this checker paces by (its own :class:`LocalQuota`, or a shared one)."""
        return self._quota

    @property
    def counters(self) -> CheckerCounters:
        """The live process-wide counters (the same object every time)."""
        return self._counters

    @property
    def supports_batch(self) -> bool:
        """Whether the API answers many numbers per request (``check_many``)."""
        return self._batch

    @property
    def chunks(self) -> ChunkSizer:
        """The size of the chunks asked of a batch source now, following its answer times."""
        return self._chunks

    @property
    def supports_segments(self) -> bool:
        """Whether a chunk of one whole segment (its 10,000 numbers) is one cheap query."""
        return self._segments

    def clear_cache(self) -> None:
        """Forget every cached outcome."""
        if self._cache is not None:
            self._cache.clear()

    def status(self) -> CheckerStatus:
        """The state now: ``ok``, ``throttled``, ``paused``, ``down`` or ``probing``."""
        now = self._clock()
        breaker = self._breaker.state
        pause, throttled = self._quota.paused_for, self._sender.last_throttle
        state: State
        probe_in = paused_for = None
        if breaker == "open":
            state, probe_in = "down", self._breaker.probe_in()
        elif breaker == "half_open":
            state = "probing"
        elif pause > 0:
            state, paused_for = "paused", pause
        elif now - throttled < _THROTTLED_FOR:
            state = "throttled"
        else:
            state = "ok"
        return CheckerStatus(
            state, self.rate, self._slots.limit, self._slots.active, probe_in, paused_for
        )

    @contextlib.asynccontextmanager
    async def lookup(
        self, group: Hashable = None, *, deadline: float | None = None
    ) -> AsyncIterator[LookupChecks[Checker]]:
        """A view of the checker for one lookup: its fair share of the slots (split between
        ``group`` names first), checks bounded by ``deadline`` (seconds from now)."""
        gate = self._fair.open(group)
        at = self._clock() + deadline if deadline is not None else math.inf
        try:
            direct = (self._sender, self._api.check, self._record) if self._direct else None
            split = (self._cached, self._flight) if self._flights is not None else None
            yield LookupChecks(self, gate, at, direct, split)
        finally:
            self._fair.close(gate)

    async def wait_retry(self, deadline: float = math.inf) -> bool:
        """Wait for a retry token (a deferred check's turn); ``False`` past ``deadline``."""
        return await self._budget.take(deadline, self._sleep)

    def try_retry(self) -> bool:
        """Take a retry token if there is one, without waiting."""
        return self._budget.try_take()

    def clock(self) -> float:
        return self._clock()

    async def check(
        self,
        phone: str,
        stats: CheckStats | None = None,
        *,
        deadline: float = math.inf,
    ) -> CheckOutcome:
        """Return the API's definite answer for ``phone``, within the checker's limits.

        Served from the cache when fresh; joins an identical check already in flight;
        otherwise sends, resending after throttles and retrying transient errors.

        :param stats: per-caller counters (and the ``halt`` flag the checker obeys).
        :param deadline: clock time after which nothing is sent for this check.
        :raises TransientApiError: the last error, when attempts, budget or deadline ran out.
        :raises FatalApiError: at once; it is never retried.
        :raises CircuitOpenError: the breaker stayed open until ``deadline``.
        :raises CheckHalted: ``stats.halt`` was set.
        """
        if stats is None:
            stats = CheckStats()
        if self._direct:
            return self._record(phone, await self._sender.attempts(self._api.check, phone, 1, stats, deadline))
        flights = self._flights
        if flights is None:  # one lookup: nothing to find in a cache or join
            return await self._send_one(phone, stats, deadline)
        cached = self._cached(phone, stats)
        if cached is not None:
            return cached
        return await self._flight(phone, stats, deadline)

    def _cached(self, phone: str, stats: CheckStats) -> CheckOutcome | None:
        """The fresh cached outcome of ``phone`` (a cache hit, counted), without an await."""
        cache = self._cache
        if cache is None:
            return None
        cached = cache.get(phone)
        if cached is not None:
            self._counters.cache_hits += 1
            stats.cache_hits += 1
        return cached

    async def _flight(self, phone: str, stats: CheckStats, deadline: float) -> CheckOutcome:
        """A cache miss: send, or join an identical check already in flight."""
        assert self._flights is not None
        outcome, joined = await self._flights.run(
            phone, lambda: self._send_one(phone, stats, deadline)
        )
        if joined:
            self._counters.deduped += 1
            stats.deduped += 1
        return outcome

    async def check_many(
        self,
        phones: Sequence[str],
        stats: CheckStats | None = None,
        *,
        deadline: float = math.inf,
    ) -> dict[str, CheckOutcome]:
        """Check a chunk in one batch request (one request for the rate and the slots).

        Cached numbers are answered from the cache and left out of the request.
        """
        if stats is None:
            stats = CheckStats()
        found: dict[str, CheckOutcome] = {}
        wanted: list[str] = []
        cache = self._cache
        for phone in dict.fromkeys(phones):
            cached = cache.get(phone) if cache is not None else None
            if cached is not None:
                found[phone] = cached
            else:
                wanted.append(phone)
        if found:
            self._counters.cache_hits += len(found)
            stats.cache_hits += len(found)
        if wanted:
            answers: Mapping[str, CheckOutcome] = await self._sender.attempts(
                self._timed_many, wanted, len(wanted), stats, deadline
            )
            for phone in wanted:
                found[phone] = self._record(phone, answers[phone])
        return found

    async def _timed_many(self, wanted: list[str]) -> Mapping[str, CheckOutcome]:
        """One batch request, its answer time told to the chunk sizer."""
        many = getattr(self._api, "check_many")  # noqa: B009 - optional method
        started = self._clock()
        try:
            answers: Mapping[str, CheckOutcome] = await many(wanted)
        except TransientApiError as exc:
            if exc.kind == "timeout":
                self._chunks.timed_out(len(wanted))
            raise
        self._chunks.answered(len(wanted), self._clock() - started)
        return answers

    # -- attempts --------------------------------------------------------------------------

    async def _single(self, phone: str, stats: CheckStats, deadline: float) -> CheckOutcome:
        outcome = await self._sender.attempts(self._api.check, phone, 1, stats, deadline)
        return self._record(phone, outcome)

    async def _single_shared(self, phone: str, stats: CheckStats, deadline: float) -> CheckOutcome:
        """:meth:`_single` asking the quota's shared outcomes first, and telling them after."""
        api = self._api
        shared = self._quota.outcomes
        assert shared is not None
        known = await shared.claim(phone)
        if known is not None:  # another process's answer (cached, or its flight landed)
            self._counters.cache_hits += 1
            stats.cache_hits += 1
            if self._cache is not None:
                self._cache[phone] = known
            return known
        try:
            outcome = await self._sender.attempts(api.check, phone, 1, stats, deadline)
        except BaseException:
            # Release the claim so a waiting process checks it; not awaited here, as a
            # cancelled task must not wait on the store (the claim also expires by itself).
            task = asyncio.ensure_future(shared.publish(phone, None))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            raise
        await shared.publish(phone, outcome)
        return self._record(phone, outcome)

    def _record(self, phone: str, outcome: CheckOutcome) -> CheckOutcome:
        if outcome.has_orders:
            self._counters.hits += 1
        else:
            self._counters.misses += 1
        if self._cache is not None:
            self._cache[phone] = outcome
        return outcome
