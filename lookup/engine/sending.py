"""Sending one check (or chunk) through the checker's policies, and what its answer means.

:class:`Sender` holds the policies a request passes (concurrency slots, the quota, the
breaker, retries and their budget) and runs the one loop of a check's attempts
(:meth:`Sender.attempts`): a synchronous ``try_*`` fast path and an awaited wait before the
request (``breaker.admit``, ``slots.try_acquire``/``acquire``, ``quota.try_admit``/``admit``),
then one report after it: an answer (``on_success``, ``on_clean``), a throttle
(``on_throttle``) or a failure (``on_failure``). The order is fixed, not a list walked per
check: the path stays as short as a hand-written loop. Whatever a source raises besides
the ``OrderApiError`` tree (and this task's own cancellation) is a failed check.

The :class:`~lookup.engine.checker.Checker` composes a sender with the outcome cache,
single flight and fair shares.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from lookup.domain.errors import (
    FatalApiError,
    OrderApiError,
    ThrottledApiError,
    TransientApiError,
)
from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checkstate import (
    KIND_COUNTER,
    CheckerCounters,
    CheckHalted,
    CheckStats,
    DeadlineReached,
)
from lookup.engine.policies import (
    UNSHARED_BREAKER,
    Breaker,
    FifoSlots,
    LocalQuota,
    Quota,
    RetryBudget,
    RetryPolicy,
)
from lookup.orders.base import check_failure, is_own_cancellation

__all__ = ["Sender"]

T = TypeVar("T")
A = TypeVar("A")

_PROBE_RETRY = 0.5  # seconds before asking again when another process holds the probe


class Sender:
    """The policies around one request and the loop of a check's attempts.

    :param limits: concurrency, rate ceiling, retry and breaker settings.
    :param quota: a budget shared with other processes; by default a
        :class:`~lookup.engine.policies.quota.LocalQuota` over ``limits``.
    :param self_bound: seconds a source bounds each call by itself (``math.inf``: none); a
        check whose deadline comes first gets a timer of its own.
    :param on_window: called when the concurrency window moved (the fair shares follow).
    """

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random | None,
        on_latency: Callable[[float, str], None] | None,
        quota: Quota | None,
        self_bound: float,
        on_window: Callable[[], None] | None = None,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._on_latency = on_latency
        self.on_window = on_window
        self.self_bound = self_bound
        self.counters = CheckerCounters()
        self.last_throttle = -math.inf
        self._latency = 0.0  # EWMA of answer times, for sizing the window to the rate
        # With no ceiling the pacer starts modest and doubles (its slow start): the pacer
        # spaces the starts; the window follows the rate once the first throttle ends it.
        self.slots = FifoSlots(limits.max_in_flight)
        self.quota: Quota = (
            quota
            if quota is not None
            else LocalQuota(
                limits.max_per_second, clock=clock, sleep=sleep, start=limits.start_rate,
                on_change=self.rate_changed,
            )
        )  # fmt: skip
        self._quota_rate = self.quota.rate
        # Only a quota from elsewhere can change its rate without telling rate_changed.
        self._watch_rate = quota is not None
        # The local quota's pacer is asked directly (one call, one clock read fewer).
        pacer = self.quota.pacer if type(self.quota) is LocalQuota else None
        self._try_admit = pacer.try_start if pacer is not None else self.quota.try_admit
        self._clean_since = pacer.on_clean if pacer is not None else None
        self._retry = RetryPolicy(
            limits.max_attempts,
            base=limits.backoff_base,
            cap=limits.backoff_cap,
            retry_after_cap=limits.retry_after_cap,
            rng=rng if rng is not None else random.Random(),
        )
        self.budget = RetryBudget(
            limits.retry_budget_min,
            per_success=limits.retry_budget_ratio,
            per_second=limits.retry_budget_rate,
            clock=clock,
        )
        self.breaker = Breaker(
            limits.breaker_threshold, limits.breaker_cooldown, clock=clock, sleep=sleep
        )

    def extra_request(self) -> None:
        """A request the source sent on its own (a followed redirect): counted too."""
        self.counters.requests += 1

    async def attempts(
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
        counters = self.counters
        breaker = self.breaker
        slots = self.slots
        quota = self.quota
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
                    self.rate_changed(quota.rate, "shared")
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
                        if deadline - start < self.self_bound:
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
                        self.budget.refund()  # its wait_retry token was well spent
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
            if not self.budget.try_take():
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
        breaker = self.breaker
        try:
            probe = await breaker.admit(deadline)
        except Exception:
            self.counters.short_circuited += 1
            raise
        if probe:
            shared = self.quota.breaker
            if not await shared.claim_probe():
                # Another process probes (or re-opened it): wait with the others.
                breaker.hold(max(shared.open_for(), _PROBE_RETRY))
                breaker.probe_cancelled()
                return None
        return probe


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
        breaker = self.breaker
        if probe or breaker.failures:
            breaker.on_success(probe)
        self.counters.answered += 1
        self.budget.on_success()
        if self._clean_since is not None:
            self._clean_since(start)  # LocalQuota.on_clean(elapsed), one call shorter
        else:
            self.quota.on_clean(elapsed)
        if self._on_latency is not None:
            self._on_latency(elapsed, _answer_label(result))

    def _refused(self, probe: bool, start: float) -> None:
        """A fatal refusal: an answer too (the API is up), but no outcome."""
        elapsed = self._clock() - start
        self._latency = elapsed if self._latency == 0.0 else 0.9 * self._latency + 0.1 * elapsed
        self.breaker.on_success(probe)
        if self._on_latency is not None:
            self._on_latency(elapsed, "fatal")

    def _throttled(self, exc: ThrottledApiError, probe: bool, start: float) -> float | None:
        """Count a throttle. Returns the capped ``Retry-After`` (for the quota, which the
        caller tells: it pauses and lowers the rate)."""
        counters = self.counters
        counters.throttled += 1
        counters.rate_limited += 1
        self.breaker.on_success(probe)  # a throttle is an answer: the API is up
        retry_after = None
        if exc.retry_after is not None:
            retry_after = min(max(exc.retry_after, 0.0), self._limits.retry_after_cap)
        self.last_throttle = self._clock()
        if self._on_latency is not None:
            self._on_latency(self._clock() - start, "throttled")
        return retry_after

    def _failed(self, exc: TransientApiError, probe: bool, start: float) -> bool:
        """Count a transient failure; ``True`` when it opened the breaker."""
        counters = self.counters
        counters.transient_errors += 1
        name = KIND_COUNTER.get(exc.kind)
        if name is not None:
            setattr(counters, name, getattr(counters, name) + 1)
        opens = self.breaker.opens
        self.breaker.on_failure(probe, str(exc), connect=exc.kind == "connect")
        counters.breaker_opens += self.breaker.opens - opens
        if self._on_latency is not None:
            self._on_latency(self._clock() - start, "transient")
        return self.breaker.opens > opens

    def rate_changed(self, rate: float | None, why: str) -> None:
        """The concurrency window follows the rate: what the rate keeps busy, plus room."""
        self._quota_rate = rate
        if rate is None or self.quota.slow_start:
            return
        latency = self._latency or 0.05
        slots = self.slots
        before = slots.limit
        slots.set_limit(math.ceil(rate * latency * 2.0) + 2)
        if slots.limit != before and self.on_window is not None:
            self.on_window()  # the lookups' shares follow the window


def _answer_label(result: object) -> str:
    if isinstance(result, CheckOutcome):
        return "hit" if result.has_orders else "miss"
    return "batch"
