"""Unit tests of each policy in lookup.engine.policies, alone, with a fake clock.

:class:`FakeTime` is the simplest virtual time there is: ``sleep(dt)`` moves ``now``
forward by ``dt`` at once and yields to the loop once. The policies compute every sleep
from the clock just before sleeping, so concurrent sleepers stay consistent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable

import pytest
from support.fakes import FakeTime

from lookup.domain.errors import CircuitOpenError
from lookup.engine.policies import (
    Breaker,
    ConcurrencyLimit,
    FairScheduler,
    Pacer,
    RetryBudget,
    RetryPolicy,
    SingleFlight,
    pacing,
)
from lookup.engine.policies.breaker import FIRST_CONTACT_COOLDOWN


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime(step=True)


async def settle(turns: int = 50) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def until(condition: Callable[[], bool], turns: int = 5_000) -> None:
    """Yield until ``condition`` holds (bounded, so a bug fails instead of hanging)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


# ---------------------------------------------------------------------------------------
# ConcurrencyLimit


async def test_concurrency_limit_grants_slots_in_fifo_order() -> None:
    slots = ConcurrencyLimit(1)
    await slots.acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await slots.acquire()
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(5)]
    await settle()
    assert slots.waiting == 5
    assert not slots.try_acquire()
    for _ in range(5):
        slots.release()
        await settle()
    assert order == [0, 1, 2, 3, 4]
    await asyncio.gather(*tasks)
    assert slots.active == 1


async def test_concurrency_limit_freed_slot_goes_to_the_waiter_not_a_newcomer() -> None:
    slots = ConcurrencyLimit(1)
    assert slots.try_acquire()
    waiter = asyncio.create_task(slots.acquire())
    await settle()
    slots.release()
    # Counted for the waiter at once, before it runs: a newcomer finds no free slot.
    assert slots.active == 1
    assert not slots.try_acquire()
    await waiter


async def test_concurrency_limit_shrinks_without_waking_and_grows_at_once() -> None:
    slots = ConcurrencyLimit(3, ceiling=6)
    for _ in range(3):
        assert slots.try_acquire()
    waiters = [asyncio.create_task(slots.acquire()) for _ in range(4)]
    await settle()
    slots.set_limit(1)
    assert slots.limit == 1
    slots.release()
    slots.release()
    await settle()
    assert slots.active == 1
    assert not any(w.done() for w in waiters)
    slots.release()
    await settle()
    assert slots.active == 1
    assert sum(w.done() for w in waiters) == 1
    slots.set_limit(100)  # clamped to the ceiling; wakes the other three at once
    assert slots.limit == 6
    await settle()
    assert all(w.done() for w in waiters)
    assert slots.active == 4
    slots.set_limit(0)
    assert slots.limit == 1


async def test_concurrency_limit_cancelled_waiter_never_leaks_a_slot() -> None:
    slots = ConcurrencyLimit(1)
    assert slots.try_acquire()
    queued = asyncio.create_task(slots.acquire())
    await settle()
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert slots.waiting == 0
    assert slots.active == 1

    # Granted and cancelled in the same step: the slot passes to the next waiter.
    granted = asyncio.create_task(slots.acquire())
    nxt = asyncio.create_task(slots.acquire())
    await settle()
    slots.release()
    granted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await granted
    await nxt
    assert slots.active == 1
    slots.release()
    assert slots.active == 0
    assert slots.try_acquire()


# ---------------------------------------------------------------------------------------
# Pacer: GCRA spacing and pause


def pacer(
    clock: FakeTime,
    ceiling: float | None,
    *,
    headroom: float = 0.02,
    start: float | None = pacing.START_RATE,
    on_change: Callable[[float | None, str], None] | None = None,
) -> Pacer:
    return Pacer(
        ceiling, clock=clock, sleep=clock.sleep, headroom=headroom, start=start,
        on_change=on_change,
    )  # fmt: skip


async def test_pacer_spaces_starts_and_allows_no_burst_after_idle(clock: FakeTime) -> None:
    p = pacer(clock, 10.0, headroom=0.0)
    assert p.rate == 10.0
    assert p.try_start()
    assert not p.try_start()
    starts = []
    for _ in range(4):
        assert await p.wait()
        starts.append(clock.now)
    assert starts == pytest.approx([0.1, 0.2, 0.3, 0.4])
    clock.now += 100.0  # a long idle spell earns no burst
    assert p.try_start()
    assert not p.try_start()
    assert await p.wait()
    assert clock.now == pytest.approx(100.5)


async def test_pacer_headroom_paces_under_the_ceiling(clock: FakeTime) -> None:
    p = pacer(clock, 10.0)  # default headroom 2 %
    assert p.try_start()
    assert await p.wait()
    assert clock.now == pytest.approx(0.102)


async def test_pacer_pause_holds_everyone_and_resumes_spaced(clock: FakeTime) -> None:
    p = pacer(clock, 10.0, headroom=0.0)
    p.pause(2.0)
    assert p.paused_until == 2.0
    assert not p.try_start()
    times: list[float] = []

    async def start() -> None:
        assert await p.wait()
        times.append(clock.now)

    await asyncio.gather(*(start() for _ in range(3)))
    assert min(times) == 2.0  # nobody started during the pause
    # The three took the 2.0, 2.1 and 2.2 slots (the fake clock, shared by sleepers that
    # wake in turn, shows the times they ran): the next caller gets 2.3, not a burst.
    assert not p.try_start()
    assert await p.wait()
    assert clock.now == pytest.approx(2.3)
    p.pause(1.0)
    p.pause(0.5)  # a shorter pause does not cut the longer one
    assert p.paused_until == pytest.approx(clock.now + 1.0)


async def test_pacer_pause_during_a_wait_requeues_the_caller(clock: FakeTime) -> None:
    p = pacer(clock, 1.0, headroom=0.0)
    real_sleep = clock.sleep

    async def sleep(dt: float) -> None:
        if not clock.sleeps:  # the caller sleeps for its 1.0 slot; a 429 pauses meanwhile
            p.pause(3.0)
        await real_sleep(dt)

    p._sleep = sleep  # the pacer's injected sleep
    assert p.try_start()
    assert await p.wait()
    # The 1.0 slot fell inside the pause (0 .. 3): it queued behind it, spaced after it.
    assert clock.now >= 3.0


async def test_pacer_wait_gives_up_when_the_slot_falls_after_the_deadline(
    clock: FakeTime,
) -> None:
    p = pacer(clock, 1.0, headroom=0.0)
    assert p.try_start()
    assert not await p.wait(deadline=0.5)
    assert clock.sleeps == []  # gave up at once, without sleeping
    assert await p.wait(deadline=1.0)  # the slot was not taken by the refusal
    assert clock.now == 1.0
    p.pause(10.0)
    assert not await p.wait(deadline=5.0)
    assert clock.now == 1.0


# ---------------------------------------------------------------------------------------
# Pacer: AIMD


async def test_pacer_throttle_lowers_from_the_measured_rate_when_lower(clock: FakeTime) -> None:
    changes: list[tuple[float | None, str]] = []
    p = pacer(clock, 100.0, on_change=lambda rate, why: changes.append((rate, why)))
    for _ in range(10):  # callers send only 20/s, under the 100/s rate
        assert p.try_start()
        clock.now += 0.05
    clock.now -= 0.05
    measured = p.measured_rate()
    assert measured is not None
    assert measured == pytest.approx(10 / 0.45)
    assert p.on_throttle(sent_at=clock.now)
    assert p.rate == pytest.approx(measured * pacing.DECREASE)
    assert p.decreases == 1
    assert changes == [(p.rate, "throttled")]


async def test_pacer_throttle_lowers_from_the_rate_without_measurements(clock: FakeTime) -> None:
    p = pacer(clock, 100.0)
    assert p.try_start()
    assert p.on_throttle(sent_at=0.0)
    assert p.rate == pytest.approx(100.0 * pacing.DECREASE)


async def test_pacer_decreases_only_once_per_reaction(clock: FakeTime) -> None:
    p = pacer(clock, 100.0)
    clock.now = 1.0
    assert p.on_throttle(sent_at=0.9)
    after_first = p.rate
    clock.now = 1.1
    # Answers to requests sent before the decrease say nothing about the new rate.
    assert not p.on_throttle(sent_at=0.95)
    assert not p.on_throttle(sent_at=0.999)
    assert p.rate == after_first
    assert p.decreases == 1
    assert p.on_throttle(sent_at=1.05)  # sent after the decrease: a new signal
    assert p.rate == pytest.approx(100.0 * pacing.DECREASE**2)
    assert p.decreases == 2


async def test_pacer_never_goes_below_its_minimum_rate(clock: FakeTime) -> None:
    p = pacer(clock, 1.0)
    for i in range(30):
        clock.now = float(i)
        p.on_throttle(sent_at=clock.now)
    assert p.rate == pacing.MIN_RATE


async def hold_back(p: Pacer, clock: FakeTime) -> None:
    """One caller finds its slot taken and waits: the rate is holding callers back."""
    p.try_start()
    assert await p.wait()


async def test_pacer_clean_interval_with_callers_held_back_raises_the_rate(
    clock: FakeTime,
) -> None:
    changes: list[tuple[float | None, str]] = []
    p = pacer(clock, 100.0, on_change=lambda rate, why: changes.append((rate, why)))
    p.on_throttle(sent_at=0.0)
    assert p.rate == pytest.approx(70.0)
    step = 100.0 / 20  # a twentieth of the rate before the cut

    p.on_clean()  # no clean interval yet
    assert p.rate == pytest.approx(70.0)
    clock.now += 1.0
    p.on_clean()  # a clean interval, but nobody was held back: the rate was not the limit
    assert p.rate == pytest.approx(70.0)

    await hold_back(p, clock)
    clock.now += pacing.CLEAN_INTERVAL
    p.on_clean()
    assert p.rate == pytest.approx(70.0 + step)
    assert changes[-1] == (p.rate, "clean")
    p.on_clean()  # the next step needs another clean interval
    assert p.rate == pytest.approx(70.0 + step)

    await hold_back(p, clock)
    clock.now += pacing.CLEAN_INTERVAL
    p.on_clean()
    assert p.rate == pytest.approx(70.0 + 2 * step)  # additive: the same fixed step


async def test_pacer_increase_never_passes_the_ceiling(clock: FakeTime) -> None:
    p = pacer(clock, 100.0)
    p.on_throttle(sent_at=0.0)
    for _ in range(30):
        await hold_back(p, clock)
        clock.now += pacing.CLEAN_INTERVAL
        p.on_clean()
        assert p.rate is not None
        assert p.rate <= 100.0
    assert p.rate == 100.0


async def test_pacer_throttle_during_the_interval_earns_no_increase(clock: FakeTime) -> None:
    p = pacer(clock, 100.0)
    p.on_throttle(sent_at=0.0)
    await hold_back(p, clock)
    clock.now += 0.1
    assert not p.on_throttle(sent_at=-1.0)  # an old request: no decrease, still a signal
    clock.now += pacing.CLEAN_INTERVAL
    p.on_clean()
    assert p.rate == pytest.approx(70.0)  # the interval restarts
    await hold_back(p, clock)
    clock.now += pacing.CLEAN_INTERVAL
    p.on_clean()
    assert p.rate == pytest.approx(75.0)


async def test_pacer_decreases_once_per_reaction_window_and_keeps_to_the_accepted_rate(
    clock: FakeTime,
) -> None:
    p = pacer(clock, 150.0)
    for _ in range(50):  # the API accepted ~100/s over the last half second
        p.on_clean()
        clock.now += 0.01
    assert p.on_throttle(sent_at=clock.now)
    assert p.rate == pytest.approx(105.0)
    clock.now += 0.01  # a request sent after the decrease, throttled within the window
    assert not p.on_throttle(sent_at=clock.now - 0.005)
    assert p.rate == pytest.approx(105.0)
    for _ in range(3):
        clock.now += pacing.REACTION
        p.on_throttle(sent_at=clock.now)
    # never below nine tenths of the ~100/s accepted (v1 of this pacer fell to 2/s)
    assert p.rate is not None and 50.0 <= p.rate <= 105.0  # (the accepted rate ages out)


async def test_pacer_far_above_the_accepted_rate_cuts_by_the_accepted_share(
    clock: FakeTime,
) -> None:
    p = pacer(clock, 1000.0)
    # Since the last change: 2 answers accepted, then refusals, 1 ms apart (inside the
    # reaction window). Once refusals outnumber acceptances (and are at least 4), each
    # new one cuts, to the accepted share of the rate.
    p.on_clean()
    p.on_clean()
    assert p.on_throttle(sent_at=clock.now)  # the first signal: an ordinary cut
    assert p.rate == pytest.approx(700.0)
    p.on_clean()
    rates = []
    for _ in range(4):
        clock.now += 0.001
        rates.append(p.on_throttle(sent_at=clock.now))
    assert rates == [False, False, False, True]  # 4 refusals against 1 acceptance
    assert p.rate == pytest.approx(700.0 * max(pacing.DEEPEST_CUT, 1 / 5))


async def test_pacer_decrease_respaces_callers_already_waiting(clock: FakeTime) -> None:
    p = pacer(clock, 100.0, headroom=0.0)
    assert p.try_start()  # t=0; the next slot is 0.01
    wake = asyncio.Event()

    async def sleep(dt: float) -> None:  # sleepers wait here; time stands still
        await wake.wait()

    p._sleep = sleep
    waiters = [asyncio.create_task(p.wait()) for _ in range(3)]
    await settle()  # they reserved 0.01, 0.02 and 0.03 at 100/s and sleep
    assert p.on_throttle(sent_at=0.0)
    assert p.rate == pytest.approx(70.0)
    wake.set()
    assert await asyncio.gather(*waiters) == [True, True, True]
    # Slots reserved at the old rate are not kept: the three queued again behind the cut
    # at the new spacing, so no burst at the old rate follows a throttle.
    assert list(p._sent) == pytest.approx([0.0, 1 / 70, 2 / 70, 3 / 70])


async def test_pacer_accepted_rate_counts_from_the_first_refusal(clock: FakeTime) -> None:
    p = pacer(clock, 1000.0)
    for _ in range(20):  # a burst allowance: 20 accepted at once, then 100/s
        p.on_clean()
    assert p.accepted_rate() is None  # no refusal yet: the burst says nothing
    clock.now += 0.001
    p.on_throttle(sent_at=clock.now)
    for _ in range(20):
        clock.now += 0.01
        p.on_clean()
    accepted = p.accepted_rate()
    assert accepted is not None
    assert accepted == pytest.approx(100.0, rel=0.05)  # not inflated by the burst


async def test_pacer_without_ceiling_starts_modest_and_doubles(clock: FakeTime) -> None:
    changes: list[tuple[float | None, str]] = []
    p = pacer(clock, None, on_change=lambda rate, why: changes.append((rate, why)))
    assert p.rate == pacing.START_RATE and p.slow_start
    rates = []
    for _ in range(4):
        for _ in range(pacing.SLOW_START_ANSWERS):
            await hold_back(p, clock)
            sent = clock.now
            p.on_clean(sent_at=sent)
        rates.append(p.rate)
    assert rates == [100.0, 200.0, 400.0, 800.0]
    # An answer to a request sent before the last doubling does not count for the next.
    for _ in range(pacing.SLOW_START_ANSWERS):
        p.on_clean(sent_at=-1.0)
    assert p.rate == 800.0
    assert changes[-1] == (800.0, "clean")


async def test_pacer_slow_start_ends_at_the_first_throttle(clock: FakeTime) -> None:
    p = pacer(clock, None)
    for _ in range(20):
        await hold_back(p, clock)
        p.on_clean(sent_at=clock.now)
    fast = p.rate
    assert fast is not None and fast > pacing.START_RATE
    assert p.on_throttle(sent_at=clock.now)
    assert not p.slow_start
    assert p.rate is not None and p.rate <= fast * pacing.SLOW_START_DECREASE
    low = p.rate
    for _ in range(20):  # from now on: additive steps after clean intervals, no doubling
        await hold_back(p, clock)
        p.on_clean(sent_at=clock.now)
    assert low <= p.rate <= low + fast / 20


async def test_pacer_without_ceiling_starts_unpaced_then_halves_the_measured_rate(
    clock: FakeTime,
) -> None:
    p = pacer(clock, None, start=None)
    assert p.rate is None
    for _ in range(20):
        assert p.try_start()  # unpaced: no spacing at all
        clock.now += 0.01
    clock.now -= 0.01
    measured = p.measured_rate()
    assert measured is not None
    assert measured == pytest.approx(20 / 0.19)
    assert p.on_throttle(sent_at=clock.now)
    assert p.rate == pytest.approx(measured * pacing.SLOW_START_DECREASE)
    assert p.try_start()
    assert not p.try_start()  # paced from now on


async def test_pacer_without_ceiling_or_measurements_starts_low(clock: FakeTime) -> None:
    p = pacer(clock, None, start=None)
    p.on_throttle(sent_at=0.0)
    assert p.rate == pytest.approx(10.0 * pacing.SLOW_START_DECREASE)
    for _ in range(10):  # no ceiling: the additive increase is unbounded
        await hold_back(p, clock)
        clock.now += 1.0
        p.on_clean()
    assert p.rate is not None
    assert p.rate > 5.0


async def test_pacer_clean_answers_change_nothing_while_unpaced(clock: FakeTime) -> None:
    changes: list[tuple[float | None, str]] = []
    p = pacer(clock, None, start=None, on_change=lambda rate, why: changes.append((rate, why)))
    clock.now += 10.0
    p.on_clean()
    assert p.rate is None
    assert changes == []


# ---------------------------------------------------------------------------------------
# RetryBudget and RetryPolicy


async def test_retry_budget_capacity_and_refill_per_success(clock: FakeTime) -> None:
    budget = RetryBudget(3, per_success=0.5, per_second=0.0, clock=clock)
    assert [budget.try_take() for _ in range(4)] == [True, True, True, False]
    budget.on_success()
    assert not budget.try_take()  # half a token
    budget.on_success()
    assert budget.try_take()
    for _ in range(100):
        budget.on_success()
    assert budget.tokens == 3.0  # never above capacity
    assert budget.wait_time() == 0.0


async def test_retry_budget_refills_per_second(clock: FakeTime) -> None:
    budget = RetryBudget(2, per_success=0.0, per_second=2.0, clock=clock)
    assert budget.try_take() and budget.try_take()
    assert budget.wait_time() == pytest.approx(0.5)
    clock.now += 0.25
    assert budget.tokens == pytest.approx(0.5)
    assert not budget.try_take()
    assert budget.wait_time() == pytest.approx(0.25)
    clock.now += 0.25
    assert budget.try_take()
    clock.now += 100.0
    assert budget.tokens == 2.0

    empty = RetryBudget(0, per_success=0.0, per_second=0.0, clock=clock)
    assert empty.wait_time() is None


async def test_retry_budget_take_waits_for_the_refill(clock: FakeTime) -> None:
    budget = RetryBudget(1, per_success=0.0, per_second=2.0, clock=clock)
    assert await budget.take(10.0, clock.sleep)
    assert clock.now == 0.0
    assert await budget.take(10.0, clock.sleep)
    assert clock.now == pytest.approx(0.5)


async def test_retry_budget_take_gives_up_at_the_deadline(clock: FakeTime) -> None:
    budget = RetryBudget(1, per_success=0.0, per_second=2.0, clock=clock)
    assert budget.try_take()
    assert not await budget.take(0.1, clock.sleep)
    assert clock.now == pytest.approx(0.1)  # waited until the deadline, not past it
    assert not await budget.take(0.1, clock.sleep)  # at the deadline: no wait at all
    assert clock.now == pytest.approx(0.1)

    never = RetryBudget(0, per_success=0.0, per_second=0.0, clock=clock)
    assert not await never.take(3.0, clock.sleep)
    assert clock.now == pytest.approx(3.0)


async def test_retries_slow_down_under_failure_but_never_stop(clock: FakeTime) -> None:
    budget = RetryBudget(5, per_success=0.5, per_second=1.0, clock=clock)
    times = []
    for _ in range(20):  # nothing succeeds: only time refills the bucket
        assert await budget.take(float("inf"), clock.sleep)
        times.append(clock.now)
    assert times[:5] == [0.0] * 5
    assert times[5:] == pytest.approx([float(i) for i in range(1, 16)])


async def test_answered_retries_give_their_token_back(clock: FakeTime) -> None:
    # A retry pass paced by its failures: answered retries refund, failed ones drain.
    budget = RetryBudget(2, per_success=0.0, per_second=0.0, clock=clock)
    for _ in range(50):  # every retry answered: the bucket never empties
        assert budget.try_take()
        budget.refund()
    assert budget.tokens == pytest.approx(2.0)
    assert budget.try_take() and budget.try_take()  # two failed retries: empty
    assert not budget.try_take()
    budget.refund()
    budget.refund()
    budget.refund()
    assert budget.tokens == pytest.approx(2.0)  # never past the capacity


async def test_retry_budget_take_survives_float_rounding(clock: FakeTime) -> None:
    # Refilling for exactly the computed wait can leave 0.9999999999999998 tokens; the
    # next wait (4e-16 s) does not move a clock near 4.0 s. take() must not spin on it.
    clock.now = 2.0000000000000004
    budget = RetryBudget(1, per_success=0.0, per_second=0.5, clock=clock)
    assert budget.try_take()

    async def bounded_sleep(dt: float) -> None:
        assert len(clock.sleeps) < 100, "take() is spinning on a rounding error"
        await clock.sleep(dt)

    for _ in range(10):
        assert await budget.take(float("inf"), bounded_sleep)
    assert clock.now == pytest.approx(22.0)


def test_retry_policy_full_jitter_within_bounds_and_seeded() -> None:
    policy = RetryPolicy(4, base=0.1, cap=1.0, retry_after_cap=30.0, rng=random.Random(42))
    expected = random.Random(42)
    for retry in range(8):
        upper = min(1.0, 0.1 * 2**retry)
        for _ in range(50):
            delay = policy.backoff(retry)
            assert 0.0 <= delay <= upper
            assert delay == expected.uniform(0.0, upper)


def test_retry_policy_honours_retry_after_capped() -> None:
    policy = RetryPolicy(4, base=0.1, cap=1.0, retry_after_cap=30.0, rng=random.Random(1))
    assert policy.backoff(0, retry_after=2.5) == 2.5
    assert policy.backoff(5, retry_after=100.0) == 30.0
    assert policy.backoff(0, retry_after=-3.0) == 0.0


# ---------------------------------------------------------------------------------------
# Breaker


def state(b: Breaker) -> str:
    """Read fresh (a plain str, so mypy does not narrow it across reads)."""
    return b.state


def breaker(clock: FakeTime, threshold: int = 3, cooldown: float = 10.0) -> Breaker:
    return Breaker(threshold, cooldown, clock=clock, sleep=clock.sleep)


async def test_breaker_opens_after_a_run_of_failures_and_answers_reset_it(
    clock: FakeTime,
) -> None:
    b = breaker(clock)
    b.on_failure(False, "HTTP 503")
    b.on_failure(False, "HTTP 503")
    b.on_success(False)  # an answer (a throttle counts as one too) resets the run
    assert b.failures == 0
    b.on_failure(False, "HTTP 503")
    b.on_failure(False, "HTTP 503")
    assert state(b) == "closed"
    assert b.opens == 0
    b.on_failure(False, "HTTP 503")
    assert state(b) == "open"
    assert not b.closed
    assert b.opens == 1
    assert b.probe_in() == 10.0
    clock.now = 10.0
    assert state(b) == "half_open"


async def test_breaker_closed_admits_at_once(clock: FakeTime) -> None:
    b = breaker(clock)
    assert await b.admit() is False
    assert clock.sleeps == []


async def test_breaker_waiters_wait_for_one_probe_which_closes_it(clock: FakeTime) -> None:
    b = breaker(clock, threshold=1)
    b.on_failure(False, "HTTP 503")
    tasks = [asyncio.create_task(b.admit()) for _ in range(3)]
    await until(lambda: any(t.done() for t in tasks))
    await settle()
    assert clock.now == 10.0  # nobody went before the cooldown
    probes = [t for t in tasks if t.done()]
    assert len(probes) == 1 and probes[0].result() is True
    assert b.probing
    assert state(b) == "half_open"
    b.on_success(probe=True)
    results = await asyncio.gather(*tasks)
    assert sorted(results) == [False, False, True]  # the others proceed, not as probes
    assert state(b) == "closed"
    assert not b.probing


async def test_breaker_failed_probe_reopens_and_waiters_keep_waiting(clock: FakeTime) -> None:
    b = breaker(clock, threshold=1, cooldown=5.0)
    b.on_failure(False, "HTTP 503")
    clock.now = 5.0
    assert await b.admit() is True
    waiters = [asyncio.create_task(b.admit()) for _ in range(2)]
    await settle()
    assert not any(w.done() for w in waiters)
    b.on_failure(True, "HTTP 503")
    assert b.opens == 2
    await until(lambda: any(w.done() for w in waiters))
    await settle()
    # They waited out the second cooldown; then one of them is the next probe.
    assert clock.now == 10.0
    done = [w for w in waiters if w.done()]
    assert [w.result() for w in done] == [True]
    b.on_success(probe=True)
    assert sorted(await asyncio.gather(*waiters)) == [False, True]


async def test_breaker_waiter_past_its_deadline_gets_circuit_open(clock: FakeTime) -> None:
    b = breaker(clock, threshold=2, cooldown=10.0)
    b.on_failure(False, "HTTP 503")
    b.on_failure(False, "HTTP 503")
    with pytest.raises(CircuitOpenError, match=r"2 times in a row.*HTTP 503"):
        await b.admit(deadline=4.0)
    assert clock.now == 4.0  # waited until its deadline, then gave up
    clock.now = 10.0
    assert await b.admit(deadline=20.0) is True  # the probe
    with pytest.raises(CircuitOpenError, match="probe request"):
        await b.admit(deadline=10.0)  # the probe runs and this waiter has no time left


async def test_breaker_cancelled_probe_lets_another_caller_probe(clock: FakeTime) -> None:
    b = breaker(clock, threshold=1, cooldown=1.0)
    b.on_failure(False, "HTTP 503")
    clock.now = 1.0
    assert await b.admit() is True
    other = asyncio.create_task(b.admit())
    await settle()
    assert not other.done()
    b.probe_cancelled()
    assert await other is True  # the next probe
    assert b.probing


async def test_breaker_fatal_and_throttle_answers_do_not_open(clock: FakeTime) -> None:
    b = breaker(clock, threshold=2)
    for _ in range(10):
        b.on_failure(False, "HTTP 503")
        b.on_success(False)
    assert state(b) == "closed"
    assert b.opens == 0


# ---------------------------------------------------------------------------------------
# SingleFlight


class Private(Exception):
    pass


def blocking(
    calls: list[int], gate: asyncio.Event, result: Callable[[], str]
) -> Callable[[], Awaitable[str]]:
    async def fn() -> str:
        calls.append(1)
        await gate.wait()
        return result()

    return fn


async def test_single_flight_one_call_per_key() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[int] = []
    gate = asyncio.Event()
    fn = blocking(calls, gate, lambda: "answer")
    tasks = [asyncio.create_task(flights.run("k", fn)) for _ in range(4)]
    other = asyncio.create_task(flights.run("other", blocking(calls, gate, lambda: "x")))
    await settle()
    assert len(flights) == 2
    assert len(calls) == 2  # one per key
    gate.set()
    results = await asyncio.gather(*tasks)
    assert results == [("answer", False)] + [("answer", True)] * 3
    assert await other == ("x", False)
    assert len(flights) == 0


async def test_single_flight_followers_get_the_leaders_exception() -> None:
    flights: SingleFlight[str] = SingleFlight()
    gate = asyncio.Event()
    error = ValueError("fatal")

    async def fn() -> str:
        await gate.wait()
        raise error

    tasks = [asyncio.create_task(flights.run("k", fn)) for _ in range(3)]
    await settle()
    gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results == [error, error, error]


async def test_single_flight_cancelled_leader_makes_a_follower_lead() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[int] = []
    gate = asyncio.Event()
    fn = blocking(calls, gate, lambda: "answer")
    leader = asyncio.create_task(flights.run("k", fn))
    followers = [asyncio.create_task(flights.run("k", fn)) for _ in range(2)]
    await settle()
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await settle()
    assert len(calls) == 2  # a follower took over
    gate.set()
    assert sorted(await asyncio.gather(*followers)) == [("answer", False), ("answer", True)]


async def test_single_flight_cancelled_follower_leaves_the_leader_alone() -> None:
    flights: SingleFlight[str] = SingleFlight()
    calls: list[int] = []
    gate = asyncio.Event()
    fn = blocking(calls, gate, lambda: "answer")
    leader = asyncio.create_task(flights.run("k", fn))
    follower = asyncio.create_task(flights.run("k", fn))
    await settle()
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    assert await leader == ("answer", False)
    assert calls == [1]


async def test_single_flight_private_exceptions_make_followers_retry() -> None:
    flights: SingleFlight[str] = SingleFlight((Private,))
    gate = asyncio.Event()
    calls: list[int] = []

    async def leader_fn() -> str:
        calls.append(1)
        await gate.wait()
        raise Private  # the leader's own lookup ended

    async def follower_fn() -> str:
        calls.append(2)
        return "answer"

    leader = asyncio.create_task(flights.run("k", leader_fn))
    await settle()
    follower = asyncio.create_task(flights.run("k", follower_fn))
    await settle()
    gate.set()
    with pytest.raises(Private):
        await leader
    assert await follower == ("answer", False)  # sent its own request, did not inherit
    assert calls == [1, 2]


# ---------------------------------------------------------------------------------------
# FairScheduler and Gate


def fill(gate_try_enter: Callable[[], bool]) -> int:
    """Enter until refused; how many got in (bounded)."""
    n = 0
    while n < 1000 and gate_try_enter():
        n += 1
    return n


def test_fair_shares_split_between_the_lookups_of_a_group() -> None:
    limit = 8
    fair = FairScheduler(lambda: limit)
    a = fair.open("svc")
    assert a.share == 8
    b = fair.open("svc")
    assert a.share == b.share == 4
    c = fair.open("svc")
    assert a.share == 3  # ceil(8 / 3)
    assert fair.lookups == 3
    fair.close(c)
    fair.close(b)
    assert a.share == 8
    limit = 2
    d, e, f = (fair.open("svc") for _ in range(3))
    assert d.share == e.share == f.share == 1  # never below one


def test_fair_groups_split_first() -> None:
    fair = FairScheduler(lambda: 12)
    alone = fair.open("token#1")
    crowd = [fair.open("token#2") for _ in range(3)]
    assert alone.share == 6
    assert [g.share for g in crowd] == [2, 2, 2]
    assert fill(alone.try_enter) == 6
    assert sum(fill(g.try_enter) for g in crowd) == 6  # 50/50 of the slots


async def test_fair_share_widens_when_a_lookup_closes() -> None:
    fair = FairScheduler(lambda: 4)
    a, b = fair.open(), fair.open()
    assert fill(a.try_enter) == 2
    assert fill(b.try_enter) == 2
    waiters = [asyncio.create_task(b.enter()) for _ in range(3)]
    await settle()
    assert not any(w.done() for w in waiters)
    for _ in range(2):
        a.leave()
    await settle()
    assert not any(w.done() for w in waiters)  # a's slots are not b's while a is open
    fair.close(a)
    await settle()
    assert sum(w.done() for w in waiters) == 2
    assert b.active == 4
    b.leave()
    await settle()
    assert all(w.done() for w in waiters)


async def test_fair_gate_is_fifo_and_a_cancelled_waiter_leaks_nothing() -> None:
    fair = FairScheduler(lambda: 1)
    gate = fair.open()
    assert gate.try_enter()
    order: list[int] = []

    async def enter(i: int) -> None:
        await gate.enter()
        order.append(i)

    tasks = [asyncio.create_task(enter(i)) for i in range(4)]
    await settle()
    tasks[1].cancel()
    for _ in range(3):
        gate.leave()
        await settle()
    assert order == [0, 2, 3]
    assert tasks[1].cancelled()
    assert gate.active == 1
    gate.leave()

    # Granted and cancelled in the same step: passed on to the next waiter.
    assert gate.try_enter()
    granted = asyncio.create_task(gate.enter())
    nxt = asyncio.create_task(gate.enter())
    await settle()
    gate.leave()
    granted.cancel()
    with pytest.raises(asyncio.CancelledError):
        await granted
    await nxt
    assert gate.active == 1


async def test_fair_wake_all_lets_waiters_in_when_the_limit_grows() -> None:
    limit = 1
    fair = FairScheduler(lambda: limit)
    gate = fair.open()
    assert gate.try_enter()
    waiters = [asyncio.create_task(gate.enter()) for _ in range(3)]
    await settle()
    limit = 4
    fair.wake_all()
    await settle()
    assert all(w.done() for w in waiters)
    assert gate.active == 4


async def test_breaker_probes_sooner_when_it_cannot_connect_to_an_api_never_answered(
    clock: FakeTime,
) -> None:
    b = breaker(clock, threshold=2)
    b.on_failure(False, "connection refused", connect=True)
    b.on_failure(False, "connection refused", connect=True)
    assert state(b) == "open"
    assert b.probe_in() == FIRST_CONTACT_COOLDOWN  # a wrong address shows within seconds
    assert await b.admit() is True  # the probe, after 2 s, not 10
    assert clock.now == FIRST_CONTACT_COOLDOWN
    b.on_failure(True, "connection refused", connect=True)
    assert b.probe_in() == FIRST_CONTACT_COOLDOWN
    clock.now += FIRST_CONTACT_COOLDOWN
    assert await b.admit() is True
    b.on_success(True)  # it answered once: from now on an outage gets the full cooldown
    b.on_failure(False, "connection refused", connect=True)
    b.on_failure(False, "connection refused", connect=True)
    assert b.probe_in() == 10.0
    fresh = breaker(clock, threshold=1)  # a 503 is an answer of a kind: the full cooldown
    fresh.on_failure(False, "HTTP 503")
    assert fresh.probe_in() == 10.0
