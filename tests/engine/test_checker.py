"""Tests of lookup.engine.checker (engine v2): the policies composed, at the checker's interface.

Limits, throttling as backpressure (AIMD, Retry-After pause), retries and the refilling
budget, the waiting breaker, cache, single flight, cancellation, status and counters,
slow start and the fair share of :meth:`Checker.lookup`. The policies alone are tested in
``test_policies.py``.

Time is virtual: :class:`FakeTime` parks sleepers on timers and, once every task is
blocked, jumps the clock to the earliest timer (like trio's autojump clock), so tests
are instant and deterministic. Most tests use a tiny local fake API that records start
times; the fair-share tests use ``lookup.orders.FakeOrderApi``.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from support.fakes import FakeTime

from lookup.domain.errors import (
    CircuitOpenError,
    FatalApiError,
    OrderApiError,
    ThrottledApiError,
    TransientApiError,
)
from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker, CheckerCounters, CheckHalted, CheckStats
from lookup.orders import FakeOrderApi

# ---------------------------------------------------------------------------------------
# fakes


Respond = Callable[[str, int], "CheckOutcome | Exception | Awaitable[CheckOutcome | Exception]"]


def answer(phone: str, n: int = 0) -> CheckOutcome:
    """The default answer: numbers ending in 8 have orders."""
    return CheckOutcome(phone=phone, has_orders=phone.endswith("8"))


class FakeApi:
    """Records calls, start times and concurrency; ``respond(phone, n)`` gives the answer
    (or an exception to raise) for the ``n``-th call for ``phone``."""

    def __init__(
        self,
        time: FakeTime,
        respond: Respond = answer,
        *,
        latency: float = 0.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.time = time
        self.respond = respond
        self.latency = latency
        self.gate = gate
        self.calls: list[str] = []
        self.starts: list[float] = []
        self.running = 0
        self.max_running = 0

    async def check(self, phone: str) -> CheckOutcome:
        n = self.calls.count(phone)
        self.calls.append(phone)
        self.starts.append(self.time.now)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.latency:
                await self.time.sleep(self.latency)
            result = self.respond(phone, n)
            if inspect.isawaitable(result):
                result = await result
        finally:
            self.running -= 1
        if isinstance(result, Exception):
            raise result
        return result


def phones(n: int, start: int = 0) -> list[str]:
    return [f"138{i:08d}" for i in range(start, start + n)]


def limits(**overrides: Any) -> Limits:
    """Test limits: no rate ceiling, unpaced until a throttle, no cache, unless asked."""
    base: dict[str, Any] = {"max_per_second": None, "start_rate": None, "cache_ttl": 0.0}
    return Limits(**(base | overrides))


def make(
    time: FakeTime, api: FakeApi, *, seed: int = 1234, **overrides: Any
) -> tuple[Checker, list[tuple[float, str]]]:
    latencies: list[tuple[float, str]] = []
    checker = Checker(
        api,
        limits(**overrides),
        clock=time.clock,
        sleep=time.sleep,
        rng=random.Random(seed),
        on_latency=lambda seconds, outcome: latencies.append((seconds, outcome)),
    )
    return checker, latencies


async def until(condition: Callable[[], bool], turns: int = 20_000) -> None:
    """Yield to the loop until ``condition`` holds (bounded, so a bug fails, not hangs)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


async def settle(turns: int = 100) -> None:
    for _ in range(turns):
        await asyncio.sleep(0)


async def outcome_or_error(aw: Awaitable[CheckOutcome]) -> CheckOutcome | OrderApiError:
    try:
        return await aw
    except OrderApiError as exc:
        return exc


def transient(status: int = 503, retry_after: float | None = None) -> TransientApiError:
    return TransientApiError(f"HTTP {status}", status=status, retry_after=retry_after)


def throttled(status: int = 429, retry_after: float | None = None) -> ThrottledApiError:
    """What the HTTP adapter raises for a 429 (bare without ``retry_after``)."""
    return ThrottledApiError(f"HTTP {status}", status=status, retry_after=retry_after)


async def warm_up(checker: Checker, n: int) -> None:
    """``n`` clean answers: with no ceiling, slow start grows the window by one each."""
    for p in phones(n, start=90_000):
        await checker.check(p)


def max_per_window(starts: Iterable[float], width: float = 1.0) -> int:
    """The most starts in any closed window ``[t, t + width]``."""
    times = sorted(starts)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] > width + 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def state(checker: Checker) -> str:
    """The breaker state, read fresh (plain str so mypy does not narrow across reads)."""
    return checker.breaker_state


@pytest.fixture
def ft() -> FakeTime:
    return FakeTime()


# ---------------------------------------------------------------------------------------
# concurrency cap


async def test_cap_never_exceeded_with_200_concurrent_checks(ft: FakeTime) -> None:
    api = FakeApi(ft)
    checker, _ = make(ft, api, max_in_flight=8)
    assert checker.concurrency_limit == 8
    gate = api.gate = asyncio.Event()
    tasks = [asyncio.create_task(checker.check(p)) for p in phones(200)]
    await until(lambda: api.running == 8)
    await settle()
    assert api.running == 8
    assert checker.in_flight == 8
    assert checker.counters.in_flight == 8
    gate.set()
    results = await asyncio.gather(*tasks)
    assert [r.phone for r in results] == phones(200)
    assert api.max_running == 8
    assert len(api.calls) == 200
    assert checker.in_flight == 0
    assert checker.counters.in_flight == 0


async def test_backoff_sleep_does_not_hold_a_slot(ft: FakeTime) -> None:
    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        if phone == "13800000000" and n == 0:
            return transient(503, retry_after=5.0)
        return answer(phone)

    api = FakeApi(ft, respond)
    checker, _ = make(ft, api, max_in_flight=1)
    first = asyncio.create_task(checker.check("13800000000"))
    await until(lambda: len(api.calls) == 1)
    # The first check now sleeps 5 s in backoff; the only slot must be free meanwhile.
    second = asyncio.create_task(checker.check("13800000001"))
    await until(second.done)
    assert api.starts[1] == 0.0
    await first
    assert api.starts[2] == 5.0


async def test_slot_granted_to_a_cancelled_waiter_is_passed_on(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api, max_in_flight=1)
    a, b, c = phones(3)
    b_task: asyncio.Task[CheckOutcome] | None = None

    async def a_then_cancel_b() -> None:
        await checker.check(a)
        # Same step as a's release: b has been handed the slot but has not run yet.
        assert b_task is not None
        b_task.cancel()

    a_task = asyncio.create_task(a_then_cancel_b())
    await until(lambda: api.running == 1)
    b_task = asyncio.create_task(checker.check(b))
    c_task = asyncio.create_task(checker.check(c))
    await settle()
    gate.set()
    await until(c_task.done)
    await a_task
    assert b_task.cancelled()
    assert api.calls == [a, c]
    assert checker.in_flight == 0


# ---------------------------------------------------------------------------------------
# rate limit


async def test_rate_limit_spacing_and_no_initial_burst(ft: FakeTime) -> None:
    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        # Every third number fails once: retries count against the rate too.
        return transient(503) if int(phone) % 3 == 0 and n == 0 else answer(phone)

    api = FakeApi(ft, respond, latency=0.3)
    checker, _ = make(ft, api, max_in_flight=50, max_per_second=10.0)
    await asyncio.gather(*(checker.check(p) for p in phones(60)))
    assert len(api.starts) == 80  # 60 first attempts + 20 retries
    assert api.starts[0] == 0.0
    assert api.starts[1] >= 0.1 - 1e-9  # no burst at t=0
    gaps = [b - a for a, b in zip(api.starts, api.starts[1:], strict=False)]
    assert min(gaps) >= 0.1 - 1e-9
    assert max_per_window(api.starts) <= 11
    assert api.max_running <= 50
    assert checker.in_flight == 0


async def test_rate_limit_holds_when_slots_are_the_bottleneck(ft: FakeTime) -> None:
    # Uneven latencies free several slots at once; the starts must still be spaced.
    lat = iter([2.0, 0.1, 0.1, 0.1] * 50)

    async def respond(phone: str, n: int) -> CheckOutcome:
        await ft.sleep(next(lat))
        return answer(phone)

    api = FakeApi(ft, respond)
    checker, _ = make(ft, api, max_in_flight=4, max_per_second=5.0)
    await asyncio.gather(*(checker.check(p) for p in phones(40)))
    gaps = [b - a for a, b in zip(api.starts, api.starts[1:], strict=False)]
    assert min(gaps) >= 0.2 - 1e-9
    assert max_per_window(api.starts) <= 6
    assert api.max_running <= 4


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    # No "explain" phase: its line tracing makes a failing example very slow to report.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
)
@given(
    cap=st.integers(1, 6),
    rate=st.sampled_from([None, 2.0, 7.0, 40.0]),
    plans=st.lists(
        st.tuples(
            st.floats(0.0, 1.5),  # latency
            st.sampled_from(["ok", "503", "429", "429-after"]),  # first answer
        ),
        min_size=1,
        max_size=30,
    ),
)
def test_property_cap_and_rate_always_hold(
    cap: int, rate: float | None, plans: list[tuple[float, str]]
) -> None:
    async def scenario() -> None:
        ft = FakeTime()
        numbers = phones(len(plans))

        async def respond(phone: str, n: int) -> CheckOutcome | Exception:
            latency, kind = plans[numbers.index(phone)]
            await ft.sleep(latency)
            if n > 0 or kind == "ok":
                return answer(phone)
            after = 0.7 if "after" in kind else None
            return throttled(429, after) if kind.startswith("429") else transient(503)

        api = FakeApi(ft, respond)
        checker, _ = make(ft, api, max_in_flight=cap, max_per_second=rate, breaker_threshold=1000)
        tasks = [asyncio.create_task(outcome_or_error(checker.check(p))) for p in numbers]
        await until(lambda: all(t.done() for t in tasks))  # a deadlock fails, not hangs
        results = [t.result() for t in tasks]
        assert all(isinstance(r, CheckOutcome) for r in results)
        assert api.max_running <= cap
        if rate is not None:
            gaps = [b - a for a, b in zip(api.starts, api.starts[1:], strict=False)]
            assert all(g >= 1 / rate - 1e-9 for g in gaps)  # throttles only slow it down
            assert max_per_window(api.starts) <= rate + 1
        assert checker.in_flight == 0
        await ft.idle()

    asyncio.run(scenario())


# ---------------------------------------------------------------------------------------
# retries


async def test_retries_then_success_with_full_jitter(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503) if n < 2 else answer(p))
    checker, latencies = make(ft, api, seed=7, backoff_base=0.5, backoff_cap=0.8)
    stats = CheckStats()
    outcome = await checker.check("13800000008", stats)
    assert outcome.has_orders
    assert api.calls == ["13800000008"] * 3
    expected = random.Random(7)
    # Retry n (from 0) waits uniform(0, min(cap, base * 2**n)).
    assert ft.sleeps == [expected.uniform(0, 0.5), expected.uniform(0, 0.8)]
    assert stats == CheckStats(sent=3, retries=2)
    assert checker.counters.retries == 2
    assert checker.counters.transient_errors == 2
    assert checker.counters.hits == 1
    assert [o for _, o in latencies] == ["transient", "transient", "hit"]


async def test_fatal_error_is_not_retried(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: FatalApiError("HTTP 401", status=401))
    checker, latencies = make(ft, api)
    with pytest.raises(FatalApiError):
        await checker.check("13800000000")
    assert len(api.calls) == 1
    assert ft.sleeps == []
    assert checker.counters.fatal_errors == 1
    assert checker.counters.retries == 0
    assert latencies == [(0.0, "fatal")]


async def test_attempts_exhausted_raises_the_last_transient_error(ft: FakeTime) -> None:
    errors = [transient(503) for _ in range(3)]
    api = FakeApi(ft, lambda p, n: errors[n])
    checker, _ = make(ft, api, max_attempts=3)
    with pytest.raises(TransientApiError) as info:
        await checker.check("13800000000")
    assert info.value is errors[2]
    assert len(api.calls) == 3
    assert checker.counters.retries == 2
    assert checker.counters.retries_denied == 0


async def test_retry_after_is_honoured(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503, retry_after=2.5) if n == 0 else answer(p))
    checker, _ = make(ft, api)
    await checker.check("13800000000")
    assert ft.sleeps == [2.5]
    assert api.starts == [0.0, 2.5]


async def test_retry_after_is_capped(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503, retry_after=100.0) if n == 0 else answer(p))
    checker, _ = make(ft, api, retry_after_cap=3.0)
    await checker.check("13800000000")
    assert ft.sleeps == [3.0]
    assert api.starts == [0.0, 3.0]


async def test_429_with_retry_after_pauses_every_caller(ft: FakeTime) -> None:
    a, b = "13800000000", "13800000001"
    api = FakeApi(
        ft, lambda p, n: throttled(429, retry_after=2.0) if p == a and n == 0 else answer(p)
    )
    checker, _ = make(ft, api, max_per_second=10.0)

    async def later() -> CheckOutcome:
        await ft.sleep(0.5)
        return await checker.check(b)

    await asyncio.gather(checker.check(a), later())
    starts = dict(zip(api.calls[1:], api.starts[1:], strict=True))
    assert api.starts[0] == 0.0
    assert starts[b] >= 2.0  # b was not told anything, but waited politely
    assert starts[a] >= 2.0
    assert abs(starts[a] - starts[b]) >= 0.1 - 1e-9  # resumed at the rate, not in a burst
    assert checker.counters.rate_limited == 1


async def test_429_pause_requeues_a_caller_already_waiting_for_its_rate_slot(ft: FakeTime) -> None:
    a, b = "13800000000", "13800000001"
    api = FakeApi(
        ft,
        lambda p, n: throttled(429, retry_after=3.0) if p == a and n == 0 else answer(p),
        latency=0.5,
    )
    checker, _ = make(ft, api, max_per_second=1.0)
    # a starts at 0 and gets its 429 at 0.5; b reserved the 1.0 slot before that.
    await asyncio.gather(checker.check(a), checker.check(b))
    starts = list(zip(api.calls, api.starts, strict=True))
    assert starts[0] == (a, 0.0)
    assert all(t >= 3.5 for _, t in starts[1:])
    # Then spaced at the rate the 429 lowered (x 0.7), paced 2 % under it (headroom).
    assert sorted(t for _, t in starts[1:]) == [3.5, pytest.approx(3.5 + 1.02 / 0.7)]
    assert checker.counters.throttled == 1


async def test_retry_budget_denies_retries_when_empty(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503))
    checker, _ = make(
        ft,
        api,
        max_attempts=10,
        retry_budget_min=2,
        retry_budget_ratio=0.0,
        retry_budget_rate=0.0,
        breaker_threshold=100,
    )
    with pytest.raises(TransientApiError):
        await checker.check("13800000000")
    assert len(api.calls) == 3  # 1 + the 2 retries of the budget
    assert checker.counters.retries_denied == 1
    with pytest.raises(TransientApiError):
        await checker.check("13800000001")
    assert len(api.calls) == 4  # budget spent: no retry at all
    assert checker.counters.retries_denied == 2
    assert checker.counters.retries == 2


async def test_retry_budget_refills_per_success(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503) if p.endswith("1") and n == 0 else answer(p))
    checker, _ = make(ft, api, retry_budget_min=1, retry_budget_ratio=0.5, retry_budget_rate=0.0)
    await checker.check("13800000001")  # the one token: retried
    with pytest.raises(TransientApiError):
        await checker.check("13800000011")  # empty: denied
    assert checker.counters.retries_denied == 1
    await checker.check("13800000000")  # a success puts back half a token ...
    await checker.check("13800000002")  # ... and another half
    await checker.check("13800000021")  # so this one is retried again
    assert checker.counters.retries == 2
    assert checker.counters.retries_denied == 1


async def test_retry_budget_refills_with_time_so_retries_never_stop(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503) if n == 0 else answer(p))
    checker, _ = make(ft, api, retry_budget_min=1, retry_budget_ratio=0.0, retry_budget_rate=0.5)
    await checker.check("13800000001")
    with pytest.raises(TransientApiError):
        await checker.check("13800000002")  # empty, nothing succeeded meanwhile
    assert checker.counters.retries_denied == 1
    ft.now += 2.0  # two seconds at 0.5 tokens/s: one token back
    await checker.check("13800000003")
    assert checker.counters.retries == 2
    # The matcher's deferred checks wait for their token at this pace, not for ever.
    assert not await checker.wait_retry(deadline=ft.now + 1.0)
    assert await checker.wait_retry()
    assert checker.counters.retries_denied == 1


async def test_retries_count_only_retries_actually_sent(ft: FakeTime) -> None:
    # A retry whose backoff ends past the deadline is not sent, so not counted.
    api = FakeApi(ft, lambda p, n: transient(503, retry_after=5.0))
    checker, _ = make(ft, api)
    stats = CheckStats()
    with pytest.raises(TransientApiError):
        await checker.check("13800000000", stats, deadline=3.0)
    assert len(api.calls) == 1
    assert stats == CheckStats(sent=1, retries=0)
    assert checker.counters.retries == 0

    # A retry scheduled but halted during its backoff is not sent either.
    halted = CheckStats()
    task = asyncio.create_task(checker.check("13800000001", halted))
    await until(lambda: len(api.calls) == 2)
    halted.halt = True
    with pytest.raises(CheckHalted):
        await task
    assert len(api.calls) == 2
    assert halted.retries == 0
    assert checker.counters.retries == 0
    assert checker.counters.requests == 2


# ---------------------------------------------------------------------------------------
# circuit breaker


async def test_breaker_opens_then_callers_wait_for_the_probe_that_closes_it(
    ft: FakeTime,
) -> None:
    healthy = False
    probe_gate = asyncio.Event()

    async def respond(phone: str, n: int) -> CheckOutcome | Exception:
        if healthy:
            await probe_gate.wait()
            return answer(phone)
        return transient(503)

    api = FakeApi(ft, respond)
    checker, _ = make(ft, api, max_attempts=1, breaker_threshold=3, breaker_cooldown=10.0)
    for p in phones(3):
        with pytest.raises(TransientApiError):
            await checker.check(p)
    assert state(checker) == "open"
    assert checker.counters.breaker_opens == 1

    # A check whose deadline comes before the probe waits until then, then gives up.
    with pytest.raises(CircuitOpenError):
        await checker.check("13900000000", deadline=4.0)
    assert ft.now == 4.0
    assert len(api.calls) == 3  # no API call while open
    assert checker.counters.short_circuited == 1

    # Patient callers wait for the cooldown; one of them is the probe.
    healthy = True
    waiting = [asyncio.create_task(checker.check(p)) for p in phones(3, start=100)]
    await until(lambda: len(api.calls) == 4)
    await settle()
    assert ft.now == 10.0
    assert state(checker) == "half_open"
    assert len(api.calls) == 4  # exactly one probe; the others wait for its answer
    assert not any(t.done() for t in waiting)
    probe_gate.set()
    results = await asyncio.gather(*waiting)
    assert [r.phone for r in results] == phones(3, start=100)
    assert state(checker) == "closed"
    assert len(api.calls) == 6
    assert checker.counters.short_circuited == 1


async def test_failed_probe_reopens_the_breaker_and_waiters_keep_waiting(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503) if ft.now < 7.0 else answer(p))
    checker, _ = make(ft, api, max_attempts=1, breaker_threshold=2, breaker_cooldown=5.0)
    for p in phones(2):
        with pytest.raises(TransientApiError):
            await checker.check(p)
    assert state(checker) == "open"
    probe, short, patient = (
        asyncio.create_task(outcome_or_error(checker.check(p, deadline=d)))
        for p, d in zip(phones(3, start=100), [math.inf, 8.0, math.inf], strict=True)
    )
    # The probe at 5.0 fails and re-opens the breaker until 10.0.
    assert isinstance(await probe, TransientApiError)
    assert checker.counters.breaker_opens == 2
    # A waiter whose deadline (8.0) comes before the next probe gives up then ...
    assert isinstance(await short, CircuitOpenError)
    assert ft.now == 8.0
    assert state(checker) == "open"
    # ... a patient one keeps waiting, probes at 10.0, and gets its answer.
    outcome = await patient
    assert isinstance(outcome, CheckOutcome)
    assert ft.now == 10.0
    assert state(checker) == "closed"
    assert api.starts == [0.0, 0.0, 5.0, 10.0]
    assert checker.counters.short_circuited == 1


async def test_cancelled_probe_lets_another_probe_through(ft: FakeTime) -> None:
    gate = asyncio.Event()
    fail = True

    async def respond(phone: str, n: int) -> CheckOutcome | Exception:
        if fail:
            return transient(503)
        await gate.wait()
        return answer(phone)

    api = FakeApi(ft, respond)
    checker, _ = make(ft, api, max_attempts=1, breaker_threshold=1, breaker_cooldown=1.0)
    with pytest.raises(TransientApiError):
        await checker.check("13800000000")
    ft.now += 1.0
    fail = False
    probe = asyncio.create_task(checker.check("13800000001"))
    await until(lambda: len(api.calls) == 2)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert state(checker) == "half_open"
    gate.set()
    await checker.check("13800000002")
    assert state(checker) == "closed"


async def test_breaker_holds_callers_already_waiting_for_a_slot(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, lambda p, n: transient(503), gate=gate)
    checker, _ = make(ft, api, max_in_flight=1, max_attempts=1, breaker_threshold=1)
    first, queued = (
        asyncio.create_task(outcome_or_error(checker.check(p, deadline=5.0))) for p in phones(2)
    )
    await until(lambda: api.running == 1)
    await settle()
    gate.set()
    assert isinstance(await first, TransientApiError)
    assert isinstance(await queued, CircuitOpenError)  # admitted while closed, never sent
    assert len(api.calls) == 1
    assert checker.counters.short_circuited == 1


async def test_breaker_holds_callers_sleeping_in_backoff(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503))
    checker, _ = make(ft, api, max_attempts=5, breaker_threshold=2, breaker_cooldown=60.0)
    results = await asyncio.gather(
        *(outcome_or_error(checker.check(p, deadline=30.0)) for p in phones(2))
    )
    assert all(isinstance(r, CircuitOpenError) for r in results)
    assert len(api.calls) == 2  # both first attempts failed, then nothing more was sent
    assert checker.counters.short_circuited == 2


async def test_fatal_errors_do_not_trip_and_success_resets_the_count(ft: FakeTime) -> None:
    answers: list[CheckOutcome | Exception] = [FatalApiError("400", status=400)] * 3
    answers += [transient(503), CheckOutcome(phone="x", has_orders=False), transient(503)]
    script = iter(answers)
    api = FakeApi(ft, lambda p, n: next(script))
    checker, _ = make(ft, api, max_attempts=1, breaker_threshold=2)
    for p in phones(6):
        await outcome_or_error(checker.check(p))
    assert state(checker) == "closed"
    assert checker.counters.breaker_opens == 0


# ---------------------------------------------------------------------------------------
# cache


async def test_cache_hit_and_ttl_expiry(ft: FakeTime) -> None:
    api = FakeApi(ft)
    checker, _ = make(ft, api, cache_ttl=60.0)
    stats = CheckStats()
    first = await checker.check("13800000008", stats)
    second = await checker.check("13800000008", stats)
    assert second == first  # the same answer (kept packed, made again)
    assert len(api.calls) == 1
    assert stats == CheckStats(sent=1, cache_hits=1)
    assert checker.counters.cache_hits == 1
    ft.now += 59.9
    await checker.check("13800000008")
    assert len(api.calls) == 1
    ft.now += 0.1
    await checker.check("13800000008")
    assert len(api.calls) == 2


async def test_cache_is_a_bounded_lru(ft: FakeTime) -> None:
    api = FakeApi(ft)
    checker, _ = make(ft, api, cache_ttl=60.0, cache_size=2)
    a, b, c = phones(3)
    for p in (a, b, a, c):  # a is used again before c arrives, so b is the oldest
        await checker.check(p)
    assert api.calls == [a, b, c]
    await checker.check(a)
    await checker.check(c)
    assert api.calls == [a, b, c]
    await checker.check(b)
    assert api.calls == [a, b, c, b]
    checker.clear_cache()
    await checker.check(c)
    assert api.calls == [a, b, c, b, c]


async def test_errors_are_not_cached_and_zero_ttl_disables_cache(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503) if n == 0 else answer(p))
    checker, _ = make(ft, api, cache_ttl=60.0, max_attempts=1)
    with pytest.raises(TransientApiError):
        await checker.check("13800000000")
    await checker.check("13800000000")
    assert len(api.calls) == 2

    api2 = FakeApi(ft)
    disabled: list[dict[str, Any]] = [{"cache_ttl": 0.0}, {"cache_ttl": 60.0, "cache_size": 0}]
    for overrides in disabled:
        checker2, _ = make(ft, api2, **overrides)
        await checker2.check("13800000000")
        await checker2.check("13800000000")
        assert checker2.counters.cache_hits == 0
    assert len(api2.calls) == 4


# ---------------------------------------------------------------------------------------
# single-flight dedupe and cancellation


async def test_concurrent_identical_checks_share_one_call(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api)
    leader_stats, follower_stats = CheckStats(), CheckStats()
    leader = asyncio.create_task(checker.check("13800000008", leader_stats))
    follower = asyncio.create_task(checker.check("13800000008", follower_stats))
    await until(lambda: len(api.calls) == 1)
    await settle()
    gate.set()
    assert await leader is await follower
    assert len(api.calls) == 1
    assert leader_stats == CheckStats(sent=1)
    assert follower_stats == CheckStats(deduped=1)
    assert checker.counters.deduped == 1


async def test_followers_get_the_leaders_error(ft: FakeTime) -> None:
    gate = asyncio.Event()
    error = FatalApiError("HTTP 403", status=403)
    api = FakeApi(ft, lambda p, n: error, gate=gate)
    checker, _ = make(ft, api)
    tasks = [asyncio.create_task(outcome_or_error(checker.check("13800000000"))) for _ in range(3)]
    await until(lambda: len(api.calls) == 1)
    await settle()
    gate.set()
    assert await asyncio.gather(*tasks) == [error, error, error]
    assert len(api.calls) == 1


async def test_cancelled_leader_does_not_fail_its_followers(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api)
    leader = asyncio.create_task(checker.check("13800000008"))
    followers = [asyncio.create_task(checker.check("13800000008")) for _ in range(3)]
    await until(lambda: len(api.calls) == 1)
    await settle()
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    await until(lambda: len(api.calls) == 2)  # one follower took over as the new leader
    await settle()
    gate.set()
    results = await asyncio.gather(*followers)
    assert all(r.has_orders for r in results)
    assert len(api.calls) == 2
    assert checker.in_flight == 0


async def test_cancelled_follower_does_not_cancel_the_leader(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api)
    leader = asyncio.create_task(checker.check("13800000008"))
    follower = asyncio.create_task(checker.check("13800000008"))
    await until(lambda: len(api.calls) == 1)
    await settle()
    follower.cancel()
    with pytest.raises(asyncio.CancelledError):
        await follower
    gate.set()
    assert (await leader).has_orders


async def test_cancelling_100_checks_frees_every_slot(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api, max_in_flight=16, max_per_second=50.0, max_attempts=3)
    # Some in the API, some waiting for the rate limiter, most waiting for a slot;
    # a few duplicates wait as followers.
    numbers = phones(90) + phones(10)
    tasks = [asyncio.create_task(checker.check(p)) for p in numbers]
    await until(lambda: api.running == 16)
    for task in tasks:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    await ft.idle()
    assert checker.in_flight == 0
    assert checker.counters.in_flight == 0
    assert asyncio.all_tasks() == {asyncio.current_task()}
    # Every slot is really free: 16 new checks all reach the API at once.
    api.gate = asyncio.Event()
    fresh = [asyncio.create_task(checker.check(p)) for p in phones(16, start=500)]
    await until(lambda: api.running == 16)
    api.gate.set()
    await asyncio.gather(*fresh)
    assert checker.in_flight == 0


async def test_cancel_during_backoff_propagates(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: transient(503, retry_after=10.0))
    checker, _ = make(ft, api)
    task = asyncio.create_task(checker.check("13800000000"))
    await until(lambda: len(ft.sleeps) == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await ft.idle()
    assert checker.in_flight == 0
    assert len(api.calls) == 1


# ---------------------------------------------------------------------------------------
# hot path, stats, latency


async def test_happy_path_creates_no_tasks(ft: FakeTime) -> None:
    created = 0
    loop = asyncio.get_running_loop()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        nonlocal created
        created += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    api = FakeApi(ft)
    checker, _ = make(ft, api, cache_ttl=60.0)
    loop.set_task_factory(factory)
    try:
        for p in phones(50) + phones(50):
            await checker.check(p)
    finally:
        loop.set_task_factory(None)
    assert created == 0
    assert len(api.calls) == 50


async def test_stats_and_latency_reporting(ft: FakeTime) -> None:
    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        if phone.endswith("1") and n == 0:
            return transient(503)
        if phone.endswith("2"):
            return FatalApiError("HTTP 400", status=400)
        return answer(phone)

    api = FakeApi(ft, respond, latency=0.25)
    checker, latencies = make(ft, api, cache_ttl=60.0)
    one, two = CheckStats(), CheckStats()
    await checker.check("13800000008", one)  # hit
    await checker.check("13800000000", one)  # miss
    await checker.check("13800000001", one)  # transient, then miss
    await checker.check("13800000008", two)  # cached
    with pytest.raises(FatalApiError):
        await checker.check("13800000002", two)
    assert one == CheckStats(sent=4, retries=1)
    assert two == CheckStats(sent=1, cache_hits=1)
    assert [o for _, o in latencies] == ["hit", "miss", "transient", "miss", "fatal"]
    assert [s for s, _ in latencies] == pytest.approx([0.25] * 5)
    assert checker.counters == CheckerCounters(
        requests=5,
        numbers=5,
        answered=3,
        hits=1,
        misses=2,
        transient_errors=1,
        server_errors=1,
        fatal_errors=1,
        retries=1,
        cache_hits=1,
    )


# ---------------------------------------------------------------------------------------
# throttling is backpressure (AIMD), never a failure


async def test_bare_429_lowers_the_rate_and_the_check_is_resent(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: throttled() if n == 0 else answer(p))
    checker, latencies = make(ft, api, max_per_second=50.0, max_attempts=1)
    stats = CheckStats()
    outcome = await checker.check("13800000008", stats)
    assert outcome.has_orders
    assert api.calls == ["13800000008"] * 2  # resent although max_attempts=1
    assert checker.rate == pytest.approx(50.0 * 0.7)
    assert api.starts[1] >= 1.02 / 50.0 - 1e-9  # resent in its paced slot, not at once
    assert stats == CheckStats(sent=2, retries=1)
    counters = checker.counters
    assert (counters.throttled, counters.rate_limited, counters.transient_errors) == (1, 1, 0)
    assert counters.retries == 1
    assert counters.retries_denied == 0
    assert [o for _, o in latencies] == ["throttled", "hit"]


async def test_25_bare_429s_in_a_row_never_open_the_breaker(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: throttled() if n < 25 else answer(p))
    checker, _ = make(ft, api, breaker_threshold=25, max_attempts=1)
    outcome = await checker.check("13800000000")
    assert outcome.phone == "13800000000"
    assert len(api.calls) == 26
    assert state(checker) == "closed"
    assert checker.counters.breaker_opens == 0
    assert checker.counters.throttled == 25
    assert checker.counters.transient_errors == 0
    # Then real failures still open it.
    api.respond = lambda p, n: transient(503)
    for p in phones(25):
        await outcome_or_error(checker.check(p))
    assert state(checker) == "open"


async def test_throttle_between_failures_resets_the_breaker_count(ft: FakeTime) -> None:
    # 503, 503, then a 429 (an answer: the API is up), resent: 503, then 503 once more.
    script: list[Exception] = [transient(503), transient(503), throttled()]
    script += [transient(503), transient(503)]
    replies = iter(script)
    api = FakeApi(ft, lambda p, n: next(replies))
    checker, _ = make(ft, api, breaker_threshold=3, max_attempts=1)
    for p in phones(4):
        assert isinstance(await outcome_or_error(checker.check(p)), TransientApiError)
    assert len(api.calls) == 5
    assert state(checker) == "closed"  # 2 failures, reset by the 429, then 2 more
    assert checker.counters.breaker_opens == 0


async def test_counters_split_transient_outcomes_by_kind(ft: FakeTime) -> None:
    first: dict[str, Exception] = {
        "13800000001": TransientApiError("read timeout", kind="timeout"),
        "13800000002": TransientApiError("connection refused", kind="connect"),
        "13800000003": TransientApiError("connection reset", kind="reset"),
        "13800000004": transient(502),
        "13800000005": throttled(),
        "13800000006": TransientApiError("odd"),
    }
    api = FakeApi(ft, lambda p, n: first[p] if n == 0 else answer(p))
    checker, _ = make(ft, api)
    for p in first:
        await checker.check(p)
    c = checker.counters
    assert (c.timeouts, c.connect_errors, c.resets, c.server_errors) == (1, 1, 1, 1)
    assert (c.throttled, c.rate_limited) == (1, 1)
    assert c.transient_errors == 5  # throttling excluded
    assert c.retries == 6
    assert c.requests == 12


# ---------------------------------------------------------------------------------------
# status


async def test_status_text_forms(ft: FakeTime) -> None:
    unpaced, _ = make(ft, FakeApi(ft))
    assert unpaced.status().state == "ok"
    assert unpaced.status().text == "ok"

    api = FakeApi(
        ft,
        lambda p, n: (
            (throttled(retry_after=3.0) if p.endswith("1") else throttled())
            if n == 0
            else answer(p)
        ),
    )
    checker, _ = make(ft, api, max_per_second=100.0)
    assert checker.status().text == "ok, 100/s"
    await checker.check("13800000000")  # a bare 429: rate x 0.7
    status = checker.status()
    assert (status.state, status.text) == ("throttled", "throttled, 70/s")
    assert status.limit == checker.concurrency_limit
    assert status.in_flight == 0

    task = asyncio.create_task(checker.check("13800000001"))  # a 429 with Retry-After: 3
    await until(lambda: checker.counters.throttled == 2)
    status = checker.status()
    assert status.state == "paused"
    assert status.text.startswith("paused 3 s (Retry-After)")
    await task
    ft.now += 10.0
    assert checker.status().text.startswith("ok, ")

    down, _ = make(
        ft, FakeApi(ft, lambda p, n: transient(503)), max_attempts=1, breaker_threshold=1,
        breaker_cooldown=10.0,
    )  # fmt: skip
    await outcome_or_error(down.check("13800000000"))
    status = down.status()
    assert (status.state, status.text) == ("down", "API down, probe in 10 s")
    assert status.probe_in == pytest.approx(10.0)
    ft.now += 3.5
    assert down.status().text == "API down, probe in 7 s"
    ft.now += 6.5
    assert down.status().state == "probing"
    assert down.status().text == "API down, probing"


# ---------------------------------------------------------------------------------------
# per-caller flags: halt and deferred


async def test_halt_stops_resends(ft: FakeTime) -> None:
    stats = CheckStats()

    def respond(phone: str, n: int) -> Exception:
        stats.halt = True  # the lookup found its hit elsewhere while this was on the wire
        return throttled()

    api = FakeApi(ft, respond)
    checker, _ = make(ft, api)
    with pytest.raises(CheckHalted):
        await checker.check("13800000000", stats)
    assert len(api.calls) == 1
    assert stats.sent == 1
    assert not stats.on_wire
    assert checker.in_flight == 0

    with pytest.raises(CheckHalted):
        await checker.check("13800000001", stats)  # already halted: nothing is sent
    assert len(api.calls) == 1


async def test_on_wire_is_set_only_while_the_request_is_out(ft: FakeTime) -> None:
    gate = asyncio.Event()
    api = FakeApi(ft, gate=gate)
    checker, _ = make(ft, api)
    stats = CheckStats()
    task = asyncio.create_task(checker.check("13800000000", stats))
    await until(lambda: api.running == 1)
    assert stats.on_wire
    gate.set()
    await task
    assert not stats.on_wire


async def test_deferred_stats_count_the_first_request_as_a_retry(ft: FakeTime) -> None:
    api = FakeApi(ft)
    checker, _ = make(ft, api)
    stats = CheckStats(deferred=True)
    await checker.check("13800000000", stats)
    assert stats == CheckStats(sent=1, retries=1, deferred=True)
    assert checker.counters.retries == 1
    assert checker.counters.requests == 1


# ---------------------------------------------------------------------------------------
# slow start (no ceiling)


async def test_paced_slow_start_doubles_the_rate_until_the_first_throttle(ft: FakeTime) -> None:
    calls = {"n": 0}

    def outcome(p: str, n: int) -> CheckOutcome:
        calls["n"] += 1
        return throttled() if calls["n"] == 40 else answer(p)

    api = FakeApi(ft, outcome)
    checker, _ = make(ft, api, max_in_flight=8, start_rate=50.0)
    assert checker.rate == 50.0  # paced from the first request: no unpaced burst
    seen: list[float] = []
    for chunk in range(6):
        await asyncio.gather(*(checker.check(p) for p in phones(8, start=chunk * 8)))
        assert checker.rate is not None
        seen.append(checker.rate)
    # Doubled while answers came back clean (50 -> 100 -> ...), then the 40th request was
    # throttled: the slow start ended with a cut, and the rate no longer doubles.
    peak = max(seen)
    assert peak >= 200.0
    assert seen[-1] < peak
    assert checker.status().state == "throttled"
    before = checker.rate
    await asyncio.gather(*(checker.check(p) for p in phones(8, start=100)))
    assert checker.rate is not None and checker.rate < 2 * before


async def test_first_throttle_ends_an_unpaced_start_with_a_paced_rate(ft: FakeTime) -> None:
    api = FakeApi(ft, lambda p, n: throttled() if p.endswith("9") and n == 0 else answer(p))
    checker, _ = make(ft, api, max_in_flight=64)  # start_rate=None: unpaced
    assert checker.rate is None
    for p in phones(10):  # 13800000000 .. 13800000009: the last one is throttled once
        await checker.check(p)
    assert checker.rate is not None  # paced from now on, at half the measured rate


# ---------------------------------------------------------------------------------------
# fair share through Checker.lookup()


async def test_two_lookups_of_one_checker_each_get_half_the_slots(ft: FakeTime) -> None:
    events: dict[str, asyncio.Event] = {}
    running: dict[str, int] = {"a": 0, "b": 0, "warm-up": 0}
    peak = dict(running)

    async def handler(phone: str) -> bool:
        owner = {"138": "a", "139": "b"}.get(phone[:3], "warm-up")
        running[owner] += 1
        peak[owner] = max(peak[owner], running[owner])
        try:
            await events.setdefault(phone, asyncio.Event()).wait()
        finally:
            running[owner] -= 1
        return False

    api = FakeOrderApi(handler)
    checker = Checker(api, limits(max_in_flight=8), clock=ft.clock, sleep=ft.sleep)
    warm = [f"177{i:08d}" for i in range(4)]
    for p in warm:
        events[p] = asyncio.Event()
        events[p].set()
        await checker.check(p)
    assert checker.concurrency_limit == 8  # slow start grown to max_in_flight
    a_numbers = [f"138{i:08d}" for i in range(10)]
    b_numbers = [f"139{i:08d}" for i in range(10)]
    for p in a_numbers + b_numbers:
        events[p] = asyncio.Event()

    async def lookup(numbers: list[str]) -> int:
        async with checker.lookup("token#1") as checks:
            assert checks.deadline == math.inf
            results = await asyncio.gather(*(checks.check(p, CheckStats()) for p in numbers))
        return len(results)

    a = asyncio.create_task(lookup(a_numbers))
    b = asyncio.create_task(lookup(b_numbers))
    await until(lambda: api.in_flight == 8)
    await settle()
    assert (running["a"], running["b"]) == (4, 4)  # half each, although each has 10 waiting
    for p in a_numbers:  # lookup a finishes and closes: b's share widens to every slot
        events[p].set()
    assert await a == 10
    await until(lambda: running["b"] == 8)
    await settle()
    assert running["b"] == 8
    assert peak["a"] == 4
    for p in b_numbers:
        events[p].set()
    assert await b == 10
    assert checker.in_flight == 0
    assert len(api.calls) == 24


async def test_a_lookup_alone_and_a_crowd_split_the_slots_by_group(ft: FakeTime) -> None:
    gate = asyncio.Event()
    running: dict[str, int] = {}

    async def handler(phone: str) -> bool:
        group = "alone" if phone.startswith("138") else "crowd"
        running[group] = running.get(group, 0) + 1
        await gate.wait()
        return False

    api = FakeOrderApi(handler)
    checker = Checker(api, limits(max_in_flight=12, max_per_second=1e9), clock=ft.clock,
                      sleep=ft.sleep)  # fmt: skip
    assert checker.concurrency_limit == 12

    async def lookup(group: str, numbers: list[str]) -> None:
        async with checker.lookup(group) as checks:
            await asyncio.gather(*(checks.check(p, CheckStats()) for p in numbers))

    tasks = [asyncio.create_task(lookup("token#1", [f"138{i:08d}" for i in range(12)]))]
    tasks += [
        asyncio.create_task(lookup("token#2", [f"13{5 + k}{i:08d}" for i in range(12)]))
        for k in range(3)
    ]
    await until(lambda: api.in_flight == 12)
    await settle()
    assert running == {"alone": 6, "crowd": 6}  # groups split first: 50/50
    gate.set()
    await asyncio.gather(*tasks)
    assert checker.in_flight == 0
