"""Running checks against the order API within global limits.

One :class:`Checker` per process (or per client) is shared by every lookup, so its
limits hold across concurrent lookups, batch runs and the service:

* at most ``max_in_flight`` requests at once (adaptive when ``limits.adaptive``);
* at most ``max_per_second`` request starts, evenly spaced, no burst;
* retries of transient errors only, with full-jitter exponential backoff,
  ``Retry-After`` honoured (and capped) and a global retry budget;
* a circuit breaker that fails fast after repeated failures, with one probe when half-open;
* a TTL + LRU cache of definite outcomes and single-flight dedupe of identical checks.

The happy path creates no task and awaits nothing but the API call itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, NoReturn, Protocol

from .errors import CircuitOpenError, FatalApiError, TransientApiError
from .models import DEFAULT_LIMITS, CheckOutcome, Limits

__all__ = ["CheckStats", "Checker", "CheckerCounters"]

BreakerState = Literal["closed", "open", "half_open"]

# What a follower of a single-flight check receives from its leader: the outcome, the
# leader's error (raised again as is), or None when the leader was cancelled and the
# follower must try again itself.
_FlightResult = CheckOutcome | Exception | None


class _Checks(Protocol):
    """The one method of an order API the checker needs."""

    async def check(self, phone: str) -> CheckOutcome: ...


_BUDGET_WINDOW = 10.0  # seconds
_RATE_HEADROOM = 0.02


@dataclass(slots=True)
class CheckStats:
    """Counters of one lookup (or any caller) that passes itself to :meth:`Checker.check`."""

    sent: int = 0
    """Requests actually sent to the API, retries included."""
    retries: int = 0
    cache_hits: int = 0
    deduped: int = 0
    """Checks answered by joining an identical check already in flight."""


@dataclass(slots=True)
class CheckerCounters:
    """Process-wide counters of a :class:`Checker`, read by the metrics exporter.

    All are monotonic counters except ``in_flight``, a gauge of the concurrency slots
    held right now (a slot is held while waiting for the rate limiter and during the call).
    """

    requests: int = 0
    """Requests sent to the API (a batch request counts once)."""
    numbers: int = 0
    """Numbers those requests asked about (a batch request counts each of its numbers)."""
    hits: int = 0
    misses: int = 0
    transient_errors: int = 0
    """Transient failures of every kind, throttling excluded; split below."""
    timeouts: int = 0
    connect_errors: int = 0
    resets: int = 0
    server_errors: int = 0
    """5xx answers (503 with Retry-After is throttling, not this)."""
    fatal_errors: int = 0
    throttled: int = 0
    """Throttle signals: 429, 503 + Retry-After, a throttle code in a 200 body."""
    rate_limited: int = 0
    """Kept for v1 readers: the same as ``throttled``."""
    retries: int = 0
    retries_denied: int = 0
    cache_hits: int = 0
    deduped: int = 0
    breaker_opens: int = 0
    short_circuited: int = 0
    in_flight: int = 0


class Checker:
    """Checks phone numbers against an order API within the process-wide ``limits``.

    :param api: anything with ``async check(phone) -> CheckOutcome`` that raises
        :class:`TransientApiError` or :class:`FatalApiError`.
    :param limits: concurrency, rate, retry, breaker and cache settings.
    :param clock: monotonic seconds; injectable for tests (also times latency and the cache).
    :param sleep: ``asyncio.sleep`` or a fake; every wait of the checker goes through it.
    :param rng: source of backoff jitter; seed it for reproducible runs.
    :param on_latency: called after every attempt with its duration in seconds and one of
        ``"hit"``, ``"miss"``, ``"transient"``, ``"fatal"``.

    Example::

        checker = Checker(api, Limits(max_in_flight=8, max_per_second=20))
        stats = CheckStats()
        outcome = await checker.check("13800138000", stats)

    The checker binds to no event loop until used, but must then stay on one loop.
    """

    def __init__(
        self,
        api: _Checks,
        limits: Limits = DEFAULT_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_latency: Callable[[float, str], None] | None = None,
    ) -> None:
        self._api = api
        self._limits = limits
        self._last_error = ""
        self._clock = clock
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._on_latency = on_latency
        self._counters = CheckerCounters()

        # Concurrency slots. asyncio.Semaphore cannot shrink, and adaptive concurrency
        # needs a limit that changes at runtime, hence a counter and a FIFO of futures.
        self._limit = limits.max_in_flight
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._adaptive = limits.adaptive
        self._streak = 0

        # Rate limiter (GCRA / virtual scheduling) and the polite pause after a 429.
        rate = limits.max_per_second
        # Pace 2 % under the configured rate: a server enforcing N/s over a sliding window
        # rejects a client spaced exactly 1/N apart whenever network jitter bunches two
        # requests, and each 429 then pauses the whole checker for its Retry-After.
        self._interval = (1.0 + _RATE_HEADROOM) / rate if rate is not None else 0.0
        self._next_slot = float("-inf")
        self._paused_until = float("-inf")

        # Retry budget: retries may not outgrow a fraction of first attempts.
        # Retry budget over a sliding window (this one and the previous one), so that a long
        # healthy run does not bank an allowance that a failing API could then multiply.
        self._first_attempts = 0
        self._retries_total = 0
        self._prev_first_attempts = 0
        self._prev_retries = 0
        self._budget_window_start = clock()

        # Circuit breaker.
        self._state: BreakerState = "closed"
        self._failures = 0
        self._open_until = 0.0
        self._probing = False

        # Cache of definite outcomes: phone -> (expires at, outcome), oldest use first.
        self._cache_on = limits.cache_ttl > 0 and limits.cache_size > 0
        self._cache: OrderedDict[str, tuple[float, CheckOutcome]] = OrderedDict()

        # Single flight: phone -> the future followers wait on (created by the first one).
        self._flights: dict[str, asyncio.Future[_FlightResult] | None] = {}

    # -- public surface ------------------------------------------------------------------

    @property
    def limits(self) -> Limits:
        """The limits this checker enforces."""
        return self._limits

    @property
    def breaker_state(self) -> BreakerState:
        """``closed``, ``open`` (failing fast) or ``half_open`` (the cooldown is over)."""
        if self._state == "open" and self._clock() >= self._open_until:
            return "half_open"
        return self._state

    @property
    def in_flight(self) -> int:
        """Concurrency slots held right now (waiting for the rate limiter or calling)."""
        return self._active

    @property
    def concurrency_limit(self) -> int:
        """The current concurrency limit: ``max_in_flight``, or less after 429s if adaptive."""
        return self._limit

    @property
    def counters(self) -> CheckerCounters:
        """The live process-wide counters (the same object every time)."""
        return self._counters

    def clear_cache(self) -> None:
        """Forget every cached outcome."""
        self._cache.clear()

    async def check(self, phone: str, stats: CheckStats | None = None) -> CheckOutcome:
        """Return the API's definite answer for ``phone``, within the checker's limits.

        Served from the cache when fresh; joins an identical check already in flight;
        otherwise sends, retrying transient errors.

        :param stats: per-caller counters to update (sent, retries, cache hits, dedupe).
        :raises TransientApiError: the last error after the attempts or the retry budget ran out.
        :raises FatalApiError: at once; it is never retried.
        :raises CircuitOpenError: the breaker is open (or a half-open probe is running).
        """
        flights = self._flights
        while True:
            if self._cache_on:
                cached = self._cache_get(phone)
                if cached is not None:
                    self._counters.cache_hits += 1
                    if stats is not None:
                        stats.cache_hits += 1
                    return cached

            if phone in flights:
                waiter = flights[phone]
                if waiter is None:
                    # The leader allocates nothing: the first follower creates the future.
                    waiter = asyncio.get_running_loop().create_future()
                    flights[phone] = waiter
                # shield: a cancelled follower must not cancel the shared future.
                result = await asyncio.shield(waiter)
                if result is None:
                    continue  # the leader was cancelled: retry, maybe as the new leader
                self._counters.deduped += 1
                if stats is not None:
                    stats.deduped += 1
                if isinstance(result, CheckOutcome):
                    return result
                raise result

            # Leader: run inline in the caller's task (no task per check).
            flights[phone] = None
            result = None  # stays None on cancellation, so followers retry instead
            try:
                outcome = await self._run(phone, stats)
                result = outcome
                return outcome
            except Exception as exc:
                result = exc
                raise
            finally:
                waiter = flights.pop(phone)
                if waiter is not None:
                    waiter.set_result(result)

    # -- attempts and retries ------------------------------------------------------------

    async def _run(self, phone: str, stats: CheckStats | None) -> CheckOutcome:
        limits = self._limits
        counters = self._counters
        attempt = 0
        while True:
            probe = self._admit()
            try:
                if self._active < self._limit and not self._waiters:
                    self._active += 1
                    counters.in_flight = self._active
                else:
                    await self._acquire_slow()
                try:
                    # The rate wait happens while holding the slot, so a request starts
                    # the moment its rate slot comes and starts stay exactly 1/rate apart.
                    # Waiting for the rate first would let callers whose rate slots passed
                    # while they queued for a concurrency slot start together when slots
                    # free up: a burst above the rate. The price (a slot idles for at most
                    # (limit - 1) / rate) costs no throughput, which the rate bounds then.
                    now = self._clock()
                    if self._paused_until > now or self._next_slot > now:
                        await self._wait_rate()
                    else:
                        self._next_slot = now + self._interval
                    if not probe and self._state != "closed":
                        # The breaker opened while we waited: do not send.
                        self._short_circuit()

                    counters.requests += 1
                    if attempt == 0:
                        self._roll_budget_window()
                        self._first_attempts += 1
                    if stats is not None:
                        stats.sent += 1
                    start = self._clock()
                    try:
                        outcome = await self._api.check(phone)
                    except TransientApiError as exc:
                        self._record_transient(exc, probe, start)
                        error = exc
                    except FatalApiError:
                        self._record_fatal(start)
                        raise
                    else:
                        self._record_success(phone, outcome, probe, start)
                        return outcome
                finally:
                    self._release()
            finally:
                if probe:
                    # Whatever happened (even cancellation), the probe is over; a failed
                    # probe has re-opened the breaker, a cancelled one leaves it half-open.
                    self._probing = False

            # Out of the slot: backoff sleeps must not hold one.
            attempt += 1
            if attempt >= limits.max_attempts:
                raise error
            self._roll_budget_window()
            firsts = self._first_attempts + self._prev_first_attempts
            budget = limits.retry_budget_min + limits.retry_budget_ratio * firsts
            if self._retries_total + self._prev_retries >= budget:
                counters.retries_denied += 1
                raise error
            self._retries_total += 1
            counters.retries += 1
            if stats is not None:
                stats.retries += 1
            await self._sleep(self._backoff(error, attempt - 1))
            # The loop re-admits through the breaker: if it opened meanwhile, fail fast.

    def _roll_budget_window(self) -> None:
        now = self._clock()
        elapsed = now - self._budget_window_start
        if elapsed < _BUDGET_WINDOW:
            return
        if elapsed < 2 * _BUDGET_WINDOW:
            self._prev_first_attempts, self._prev_retries = (
                self._first_attempts,
                self._retries_total,
            )
        else:
            self._prev_first_attempts = self._prev_retries = 0
        self._first_attempts = self._retries_total = 0
        self._budget_window_start = now

    def _backoff(self, error: TransientApiError, retry: int) -> float:
        """Delay before retry number ``retry`` (from 0): Retry-After, or full jitter."""
        limits = self._limits
        if error.retry_after is not None:
            return min(max(error.retry_after, 0.0), limits.retry_after_cap)
        return self._rng.uniform(0.0, min(limits.backoff_cap, limits.backoff_base * 2.0**retry))

    def _record_success(self, phone: str, outcome: CheckOutcome, probe: bool, start: float) -> None:
        now = self._clock()
        if outcome.has_orders:
            self._counters.hits += 1
            label = "hit"
        else:
            self._counters.misses += 1
            label = "miss"
        self._failures = 0
        if probe:
            self._state = "closed"
        if self._adaptive:
            self._streak += 1
            if self._streak >= self._limit:
                self._streak = 0
                if self._limit < self._limits.max_in_flight:
                    # No wake here: this attempt's release, right after, wakes waiters
                    # up to the new limit.
                    self._limit += 1
        if self._cache_on:
            self._cache_put(phone, outcome, now)
        if self._on_latency is not None:
            self._on_latency(now - start, label)

    def _record_transient(self, exc: TransientApiError, probe: bool, start: float) -> None:
        now = self._clock()
        limits = self._limits
        self._counters.transient_errors += 1
        self._failures += 1
        self._last_error = str(exc)
        if probe or (self._state == "closed" and self._failures >= limits.breaker_threshold):
            self._open(now)
        if exc.status == 429:
            self._counters.rate_limited += 1
            if exc.retry_after is not None:
                # Polite: the whole checker waits, not only the caller that was told.
                self._pause(now + min(max(exc.retry_after, 0.0), limits.retry_after_cap))
            if self._adaptive:
                self._limit = max(1, self._limit // 2)
        if self._adaptive:
            self._streak = 0
        if self._on_latency is not None:
            self._on_latency(now - start, "transient")

    def _record_fatal(self, start: float) -> None:
        # A fatal error means the API answered: it does not count toward the breaker.
        now = self._clock()
        self._counters.fatal_errors += 1
        if self._adaptive:
            self._streak = 0
        if self._on_latency is not None:
            self._on_latency(now - start, "fatal")

    # -- circuit breaker -----------------------------------------------------------------

    def _admit(self) -> bool:
        """Let an attempt through the breaker; return whether it is the half-open probe."""
        state = self._state
        if state == "closed":
            return False
        if state == "open":
            if self._clock() < self._open_until:
                self._short_circuit()
            self._state = "half_open"
        if self._probing:
            self._short_circuit()
        self._probing = True
        return True

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._limits.breaker_cooldown
        self._counters.breaker_opens += 1

    def _short_circuit(self) -> NoReturn:
        self._counters.short_circuited += 1
        if self._state == "open":
            wait = max(0.0, self._open_until - self._clock())
            detail = f"; the next probe is allowed in {wait:.1f}s"
        else:
            detail = "; a probe request is testing the API"
        last = f" (last error: {self._last_error})" if self._last_error else ""
        raise CircuitOpenError(
            f"the order API failed {self._failures} times in a row{last}, so checks fail "
            f"fast{detail}"
        )

    # -- concurrency slots ---------------------------------------------------------------

    async def _acquire_slow(self) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # Granted a slot in the same step as the cancellation: pass it on.
                self._release()
            else:
                with contextlib.suppress(ValueError):  # _wake may have dropped it already
                    self._waiters.remove(fut)
            raise

    def _release(self) -> None:
        self._active -= 1
        if self._waiters:
            self._wake()
        self._counters.in_flight = self._active

    def _wake(self) -> None:
        # Hand free slots to waiters in FIFO order; the slot is counted here so that a
        # newcomer cannot take it before the woken waiter runs. A shrunk limit wakes nobody.
        waiters = self._waiters
        while waiters and self._active < self._limit:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                self._active += 1
        self._counters.in_flight = self._active

    # -- rate limiter --------------------------------------------------------------------

    async def _wait_rate(self) -> None:
        while True:
            now = self._clock()
            if self._paused_until > now:
                await self._sleep(self._paused_until - now)
                continue
            slot = max(now, self._next_slot)
            self._next_slot = slot + self._interval
            if slot > now:
                await self._sleep(slot - now)
            if self._paused_until <= slot:
                return
            # A 429 paused the checker while we waited and our slot fell inside the
            # pause: queue again behind the pause (the lost slot only spaces starts more).

    def _pause(self, until: float) -> None:
        self._paused_until = max(self._paused_until, until)
        # Resume spaced at the rate after the pause, not with a burst.
        self._next_slot = max(self._next_slot, until)

    # -- cache ---------------------------------------------------------------------------

    def _cache_get(self, phone: str) -> CheckOutcome | None:
        entry = self._cache.get(phone)
        if entry is None:
            return None
        expires, outcome = entry
        if expires <= self._clock():
            del self._cache[phone]
            return None
        self._cache.move_to_end(phone)
        return outcome

    def _cache_put(self, phone: str, outcome: CheckOutcome, now: float) -> None:
        cache = self._cache
        cache[phone] = (now + self._limits.cache_ttl, outcome)
        cache.move_to_end(phone)
        if len(cache) > self._limits.cache_size:
            cache.popitem(last=False)
