"""Running checks against the order API within global limits: the policies, composed.

One :class:`Checker` per process (or per client) is shared by every lookup, so its
limits hold across concurrent lookups, batch runs and the service. A check goes:

    cache -> single flight -> breaker (wait while open) -> concurrency slot -> quota
    -> the API -> outcome recorded (breaker, quota AIMD, retry budget, cache)

Every policy is reached through the same few hooks, in one loop (:meth:`Checker._attempts`):
a synchronous ``try_*`` fast path and an awaited wait before the request
(``breaker.admit``, ``slots.try_acquire``/``acquire``, ``quota.try_admit``/``admit``), then
one report after it: an answer (``on_success``, ``on_clean``), a throttle (``on_throttle``)
or a failure (``on_failure``). The order is fixed, not a list walked per check: the check
path stays as short as a hand-written loop.

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
from typing import Protocol, TypeVar

from lookup.domain.errors import (
    FatalApiError,
    OrderApiError,
    ThrottledApiError,
    TransientApiError,
)
from lookup.domain.models import DEFAULT_LIMITS, CheckOutcome, Limits
from lookup.engine.checkstate import (
    KIND_COUNTER,
    CheckerCounters,
    CheckerStatus,
    CheckHalted,
    Checks,
    CheckStats,
    DeadlineReached,
    State,
)
from lookup.engine.policies import (
    UNSHARED_BREAKER,
    Breaker,
    BreakerState,
    ChunkSizer,
    FairScheduler,
    FifoSlots,
    Gate,
    LocalQuota,
    Quota,
    RetryBudget,
    RetryPolicy,
    SingleFlight,
)
from lookup.engine.policies.cache import CheckOutcomeCache
from lookup.orders.base import check_failure, is_own_cancellation

__all__ = [
    "CheckHalted",
    "CheckStats",
    "Checker",
    "CheckerCounters",
    "CheckerStatus",
    "Checks",
    "LookupChecks",
]

T = TypeVar("T")
A = TypeVar("A")

_THROTTLED_FOR = 5.0  # seconds after a throttle signal the status still says "throttled"
_PROBE_RETRY = 0.5  # seconds before asking again when another process holds the probe


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
        self._last_throttle = -math.inf
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._on_latency = on_latency
        self._counters = CheckerCounters()
        # A source that bounds each call itself (HTTP: its total timeout) needs no timer of
        # ours unless the deadline comes first.
        bound = getattr(api, "call_timeout", None)
        self._self_bound = float(bound) if isinstance(bound, int | float) else math.inf
        listen = getattr(api, "add_request_listener", None)
        if callable(listen):  # requests a source sends on its own (a followed redirect)
            listen(self._extra_request)
        self._batch = callable(getattr(api, "check_many", None)) and bool(
            getattr(api, "batch_supported", True)
        )

        self._chunks = ChunkSizer(limits.batch_size, adapt=limits.adapt_batch_size)
        # A source that answers a whole segment in one query (a range scan) says so.
        self._segments = self._batch and bool(getattr(api, "segment_queries", False))
        self._latency = 0.0  # EWMA of answer times, for sizing the window to the rate
        # With no ceiling the pacer starts modest and doubles (its slow start): the pacer
        # spaces the starts; the window follows the rate once the first throttle ends it.
        self._slots = FifoSlots(limits.max_in_flight)
        self._quota: Quota = (
            quota
            if quota is not None
            else LocalQuota(
                limits.max_per_second, clock=clock, sleep=sleep, start=limits.start_rate,
                on_change=self._rate_changed,
            )
        )  # fmt: skip
        self._quota_rate = self._quota.rate
        # Only a quota from elsewhere can change its rate without telling _rate_changed.
        self._watch_rate = quota is not None
        # The local quota's pacer is asked directly (one call, one clock read fewer).
        pacer = self._quota.pacer if type(self._quota) is LocalQuota else None
        self._try_admit = pacer.try_start if pacer is not None else self._quota.try_admit
        self._clean_since = pacer.on_clean if pacer is not None else None
        self._retry = RetryPolicy(
            limits.max_attempts,
            base=limits.backoff_base,
            cap=limits.backoff_cap,
            retry_after_cap=limits.retry_after_cap,
            rng=rng if rng is not None else random.Random(),
        )
        self._budget = RetryBudget(
            limits.retry_budget_min,
            per_success=limits.retry_budget_ratio,
            per_second=limits.retry_budget_rate,
            clock=clock,
        )
        self._breaker = Breaker(
            limits.breaker_threshold, limits.breaker_cooldown, clock=clock, sleep=sleep
        )
        self._cache: CheckOutcomeCache | None = (
            CheckOutcomeCache(limits.cache_size, limits.cache_ttl, clock=clock)
            if limits.cache_ttl > 0 and limits.cache_size > 0 and not one_lookup
            else None
        )
        self._flights: SingleFlight[CheckOutcome] | None = (
            None if one_lookup else SingleFlight((CheckHalted,))
        )
        self._fair = FairScheduler(lambda: self._slots.limit)
        self._background: set[asyncio.Future[None]] = set()
        # Chosen once: the shared outcome cache's claim and publish, or none.
        self._send_one = self._single if self._quota.outcomes is None else self._single_shared
        # One lookup with nothing shared: a check is the attempts loop and nothing else.
        self._direct = self._flights is None and self._quota.outcomes is None

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
        pause, throttled = self._quota.paused_for, self._last_throttle
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
    ) -> AsyncIterator[LookupChecks]:
        """A view of the checker for one lookup: its fair share of the slots (split between
        ``group`` names first), checks bounded by ``deadline`` (seconds from now)."""
        gate = self._fair.open(group)
        at = self._clock() + deadline if deadline is not None else math.inf
        try:
            yield LookupChecks(self, gate, at)
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
            return self._record(phone, await self._attempts(self._api.check, phone, 1, stats, deadline))
        flights = self._flights
        if flights is None:  # one lookup: nothing to find in a cache or join
            return await self._send_one(phone, stats, deadline)
        cache = self._cache
        if cache is not None:
            cached = cache.get(phone)
            if cached is not None:
                self._counters.cache_hits += 1
                stats.cache_hits += 1
                return cached
        outcome, joined = await flights.run(
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
            answers: Mapping[str, CheckOutcome] = await self._attempts(
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
        outcome = await self._attempts(self._api.check, phone, 1, stats, deadline)
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
            outcome = await self._attempts(api.check, phone, 1, stats, deadline)
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

    async def _attempts(
        self,
        send: Callable[[A], Awaitable[T]],
        arg: A,
        numbers: int,
        stats: CheckStats,
        deadline: float,
    ) -> T:
        """``send(arg)`` through the policies until it has an answer (see the module doc).

        The happy path is one turn of the loop: a slot, a start slot, the request, one
        report; a timer only when the source's own bound would end after ``deadline``."""
        counters = self._counters
        breaker = self._breaker
        slots = self._slots
        quota = self._quota
        shared = quota.breaker
        clock = self._clock
        attempt = 0
        resend = stats.deferred
        while True:
            if stats.halt:
                raise CheckHalted
            probe = False
            if not breaker.closed:
                turn = await self._admit_probe(deadline)
                if turn is None:
                    continue  # another process probes: wait with the others
                probe = turn
            held = False
            try:
                if not slots.try_acquire():
                    await slots.acquire()
                held = True
                counters.in_flight = slots.active
                if not (self._try_admit() or await quota.admit(deadline - clock())):
                    raise DeadlineReached(
                        "the lookup's deadline came before this check could be sent"
                    )
                if self._watch_rate and quota.rate != self._quota_rate:
                    self._rate_changed(quota.rate, "shared")
                if stats.halt:
                    raise CheckHalted
                if not probe:
                    if shared is not UNSHARED_BREAKER and breaker.closed:
                        open_for = shared.open_for()
                        if open_for > 0:  # another process's breaker opened: ours too
                            breaker.hold(open_for)
                    if not breaker.closed:
                        # The breaker opened while this check queued for its slot or its
                        # pacing: send nothing, wait for the probe with the others.
                        continue
                counters.requests += 1
                counters.numbers += numbers
                stats.sent += 1
                if resend:
                    stats.retries += 1
                    counters.retries += 1
                start = clock()
                stats.on_wire = True
                try:
                    try:
                        if deadline - start < self._self_bound:
                            result = await self._bounded(send, arg, deadline - start)
                        else:  # the source's own bound ends first: no timer of ours
                            result = await send(arg)
                    except OrderApiError:
                        raise
                    except BaseException as exc:
                        if is_own_cancellation(exc):
                            raise
                        # Whatever else a source raises is a failed check, never a "no".
                        raise check_failure(exc) from exc
                except DeadlineReached:
                    stats.on_wire = False
                    raise
                except ThrottledApiError as exc:
                    stats.on_wire = False
                    retry_after = self._throttled(exc, probe, start)
                    if probe:
                        await shared.closed()
                    probe = False
                    resend = True
                    await quota.on_throttle(clock() - start, retry_after)
                    continue  # sent again when the lowered rate allows
                except TransientApiError as exc:
                    stats.on_wire = False
                    opened = self._failed(exc, probe, start)
                    probe = False
                    error = exc
                    if opened:
                        await shared.opened(self._limits.breaker_cooldown, str(exc))
                except FatalApiError:
                    stats.on_wire = False
                    self._refused(probe, start)
                    counters.fatal_errors += 1
                    if probe:
                        await shared.closed()
                    probe = False
                    raise
                else:
                    stats.on_wire = False
                    self._answered(probe, start, result)
                    if stats.deferred and attempt == 0:
                        self._budget.refund()  # its wait_retry token was well spent
                    if probe:
                        await shared.closed()
                        probe = False
                    return result
            finally:
                if held:
                    slots.release()
                    counters.in_flight = slots.active
                if probe:  # cancelled (or halted) before its answer: let another caller probe
                    breaker.probe_cancelled()

            # Out of the slot: backoff sleeps must not hold one.
            attempt += 1
            if attempt >= self._retry.attempts:
                raise error
            if not self._budget.try_take():
                counters.retries_denied += 1
                raise error
            delay = self._retry.backoff(attempt - 1, error.retry_after)
            if clock() + delay > deadline:
                raise error
            await self._sleep(delay)
            resend = True

    async def _admit_probe(self, deadline: float) -> bool | None:
        """The breaker is not closed: wait for it (``False``: closed meanwhile, ``True``:
        this caller sends the probe); ``None`` when another process holds the probe."""
        breaker = self._breaker
        try:
            probe = await breaker.admit(deadline)
        except Exception:
            self._counters.short_circuited += 1
            raise
        if probe:
            shared = self._quota.breaker
            if not await shared.claim_probe():
                # Another process probes (or re-opened it): wait with the others.
                breaker.hold(max(shared.open_for(), _PROBE_RETRY))
                breaker.probe_cancelled()
                return None
        return probe

    def _extra_request(self) -> None:
        self._counters.requests += 1

    async def _bounded(self, send: Callable[[A], Awaitable[T]], arg: A, left: float) -> T:
        """``send(arg)`` over by the lookup's deadline, ``left`` seconds from now."""
        scope = asyncio.timeout(max(left, 0.0))
        try:
            async with scope:
                return await send(arg)
        except TimeoutError:
            if scope.expired():
                raise DeadlineReached(
                    "the lookup's deadline came while this check was on the wire"
                ) from None
            raise

    def _answered(self, probe: bool, start: float, result: object) -> None:
        """The API answered with outcomes: it is up, and was not throttled."""
        elapsed = self._clock() - start
        self._latency = elapsed if self._latency == 0.0 else 0.9 * self._latency + 0.1 * elapsed
        breaker = self._breaker
        if probe or breaker.failures:
            breaker.on_success(probe)
        self._counters.answered += 1
        self._budget.on_success()
        if self._clean_since is not None:
            self._clean_since(start)  # LocalQuota.on_clean(elapsed), one call shorter
        else:
            self._quota.on_clean(elapsed)
        if self._on_latency is not None:
            self._on_latency(elapsed, _answer_label(result))

    def _refused(self, probe: bool, start: float) -> None:
        """A fatal refusal: an answer too (the API is up), but no outcome."""
        elapsed = self._clock() - start
        self._latency = elapsed if self._latency == 0.0 else 0.9 * self._latency + 0.1 * elapsed
        self._breaker.on_success(probe)
        if self._on_latency is not None:
            self._on_latency(elapsed, "fatal")

    def _throttled(self, exc: ThrottledApiError, probe: bool, start: float) -> float | None:
        """Count a throttle. Returns the capped ``Retry-After`` (for the quota, which the
        caller tells: it pauses and lowers the rate)."""
        counters = self._counters
        counters.throttled += 1
        counters.rate_limited += 1
        self._breaker.on_success(probe)  # a throttle is an answer: the API is up
        retry_after = None
        if exc.retry_after is not None:
            retry_after = min(max(exc.retry_after, 0.0), self._limits.retry_after_cap)
        self._last_throttle = self._clock()
        if self._on_latency is not None:
            self._on_latency(self._clock() - start, "throttled")
        return retry_after

    def _failed(self, exc: TransientApiError, probe: bool, start: float) -> bool:
        """Count a transient failure; ``True`` when it opened the breaker."""
        counters = self._counters
        counters.transient_errors += 1
        name = KIND_COUNTER.get(exc.kind)
        if name is not None:
            setattr(counters, name, getattr(counters, name) + 1)
        opens = self._breaker.opens
        self._breaker.on_failure(probe, str(exc))
        counters.breaker_opens += self._breaker.opens - opens
        if self._on_latency is not None:
            self._on_latency(self._clock() - start, "transient")
        return self._breaker.opens > opens

    def _rate_changed(self, rate: float | None, why: str) -> None:
        """The concurrency window follows the rate: what the rate keeps busy, plus room."""
        self._quota_rate = rate
        if rate is None or self._quota.slow_start:
            return
        latency = self._latency or 0.05
        slots = self._slots
        before = slots.limit
        slots.set_limit(math.ceil(rate * latency * 2.0) + 2)
        if slots.limit != before:
            self._fair.rebalance()  # the lookups' shares follow the window


def _answer_label(result: object) -> str:
    if isinstance(result, CheckOutcome):
        return "hit" if result.has_orders else "miss"
    return "batch"


class LookupChecks:
    """One lookup's view of a :class:`Checker` (a :class:`Checks`): at most its fair
    share of the in-flight slots, every check bounded by the lookup's deadline."""

    __slots__ = ("_checker", "_gate", "deadline")

    def __init__(self, checker: Checker, gate: Gate, deadline: float) -> None:
        self._checker = checker
        self._gate = gate
        self.deadline = deadline

    @property
    def checker(self) -> Checker:
        return self._checker

    @property
    def share(self) -> int:
        """Checks this lookup may have in flight now."""
        return self._gate.share

    @property
    def fair_width(self) -> int:
        """This lookup's share of ``max_in_flight`` (what it may widen to as the checker's
        window grows): how many workers it is worth running."""
        return self._gate.share_of(self._checker.limits.max_in_flight)

    async def check(self, phone: str, stats: CheckStats) -> CheckOutcome:
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            checker = self._checker
            if checker._direct:  # the attempts loop without the checker's frame
                outcome = await checker._attempts(
                    checker._api.check, phone, 1, stats, self.deadline
                )
                return checker._record(phone, outcome)
            return await checker.check(phone, stats, deadline=self.deadline)
        finally:
            gate.leave()

    async def check_many(self, phones: Sequence[str], stats: CheckStats) -> dict[str, CheckOutcome]:
        gate = self._gate
        if not gate.try_enter():
            await gate.enter()
        try:
            return await self._checker.check_many(phones, stats, deadline=self.deadline)
        finally:
            gate.leave()
