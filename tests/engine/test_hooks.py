"""The hooks the checker composes, one policy at a time, on the one fake clock.

Every policy meets the checker through the same few hooks: a synchronous ``try_*`` fast
path and an awaited wait before the request, then one report after it. These tests pin
each hook alone (the local quota, the FIFO slots and the fair share built on them, the
breaker of a quota that shares none), then the checker driving a recording quota: pacing
goes through the quota interface whatever the quota is, with no path of its own.
"""

from __future__ import annotations

import asyncio
import math

import pytest
from support.fakes import FakeTime
from test_checker import FakeApi, limits, phones, settle, throttled

from lookup.domain.models import CheckOutcome
from lookup.engine.checker import Checker
from lookup.engine.checkstate import CheckerStatus
from lookup.engine.policies import (
    UNSHARED_BREAKER,
    ConcurrencyLimit,
    FairScheduler,
    FifoSlots,
    Gate,
    LocalQuota,
    Quota,
    SharedBreaker,
)
from lookup.engine.policies.pacing import SLOW_START_ANSWERS

# -- the local quota: try_admit / admit / on_throttle / on_clean ----------------------------


async def test_local_quota_try_admit_is_the_fast_path_and_admit_waits_for_the_slot() -> None:
    time = FakeTime(step=True)
    quota = LocalQuota(10.0, clock=time, sleep=time.sleep, headroom=0.0)
    assert quota.try_admit()  # the first start: free, no wait
    assert not quota.try_admit()  # the next one is 0.1 s away: not without waiting
    assert await quota.admit()
    assert time.now == pytest.approx(0.1) and time.sleeps == [pytest.approx(0.1)]
    assert not await quota.admit(max_wait=0.05)  # the slot after is 0.1 s away
    assert time.now == pytest.approx(0.1)  # nothing reserved, no sleep


async def test_local_quota_on_throttle_pauses_and_lowers_the_rate() -> None:
    time = FakeTime(step=True)
    quota = LocalQuota(10.0, clock=time, sleep=time.sleep)
    assert quota.try_admit()
    await quota.on_throttle(0.0, 2.0)
    assert quota.rate is not None and quota.rate < 10.0
    assert quota.paused_for == pytest.approx(2.0)
    assert not quota.try_admit()
    assert await quota.admit()
    assert time.now >= 2.0 and quota.paused_for == 0.0


def test_local_quota_on_clean_counts_only_answers_sent_at_the_current_rate() -> None:
    time = FakeTime(step=True)
    quota = LocalQuota(None, clock=time, sleep=time.sleep, start=50.0)
    assert quota.slow_start and quota.rate == 50.0
    quota.pacer.reserve()
    quota.pacer.reserve()  # a caller held back: the rate is what limits
    time.now = 1.0
    for _ in range(SLOW_START_ANSWERS):
        quota.on_clean(sent_ago=2.0)  # sent before the pacer's last change: says nothing
    assert quota.rate == 50.0
    for _ in range(SLOW_START_ANSWERS):
        quota.on_clean(sent_ago=0.01)
    assert quota.rate == 100.0 and quota.slow_start


def test_local_quota_tells_its_rate_changes() -> None:
    time = FakeTime(step=True)
    seen: list[tuple[float | None, str]] = []
    quota = LocalQuota(10.0, clock=time, sleep=time.sleep,
                       on_change=lambda rate, why: seen.append((rate, why)))  # fmt: skip
    assert quota.try_admit()
    quota.throttle(0.0, None)
    assert seen == [(quota.rate, "throttled")]


async def test_unshared_breaker_is_never_open_elsewhere_and_every_probe_is_ours() -> None:
    breaker: SharedBreaker = UNSHARED_BREAKER
    assert breaker.open_for() == 0.0
    assert await breaker.claim_probe()
    await breaker.opened(10.0, "HTTP 503")
    assert breaker.open_for() == 0.0  # nothing is shared: the checker's own breaker opens
    await breaker.closed()


# -- one FIFO slot class: the concurrency limit and the fair share --------------------------


def test_concurrency_limit_and_fair_gate_are_the_one_fifo_slot_class() -> None:
    assert ConcurrencyLimit is FifoSlots
    gate = FairScheduler(lambda: 4).open()
    assert isinstance(gate, Gate) and isinstance(gate, FifoSlots)
    assert gate.share == gate.limit == 4


async def test_fifo_slots_set_limit_wakes_waiters_in_order_when_it_grows() -> None:
    slots = FifoSlots(1, ceiling=3)
    assert slots.try_acquire()
    order: list[int] = []

    async def take(i: int) -> None:
        await slots.acquire()
        order.append(i)

    tasks = [asyncio.create_task(take(i)) for i in range(3)]
    await settle()
    assert order == [] and slots.waiting == 3
    slots.set_limit(10)  # clamped to the ceiling: two more holders, the oldest first
    await settle()
    assert order == [0, 1] and slots.limit == 3 and slots.active == 3
    slots.release()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2]


def test_fair_share_is_computed_when_shares_change_not_per_check() -> None:
    asked: list[int] = []
    limit = 8

    def current() -> int:
        asked.append(limit)
        return limit

    fair = FairScheduler(current)
    a, b = fair.open("svc"), fair.open("svc")
    assert a.share == b.share == 4
    before = len(asked)
    for _ in range(100):
        if a.try_enter():
            a.leave()
    assert len(asked) == before  # entering and leaving read no limit, compute no share
    limit = 2
    fair.rebalance()  # the checker's window moved
    assert a.share == b.share == 1
    fair.close(b)
    assert a.share == 2


# -- the checker drives whatever quota it is given through the same hooks -------------------


class RecordingQuota:
    """A :class:`Quota` that admits after ``wait`` seconds (none for ``try_admit``) and
    records each hook the checker calls."""

    breaker: SharedBreaker = UNSHARED_BREAKER
    outcomes = None
    slow_start = False

    def __init__(self, time: FakeTime, *, fast: bool, wait: float = 0.5) -> None:
        self.time = time
        self.fast = fast
        self.wait = wait
        self.calls: list[str] = []
        self.rate: float | None = 20.0
        self.paused_for = 0.0

    def try_admit(self) -> bool:
        self.calls.append("try_admit")
        return self.fast

    async def admit(self, max_wait: float = math.inf) -> bool:
        self.calls.append("admit")
        if self.wait > max_wait:
            return False
        await self.time.sleep(self.wait)
        return True

    async def on_throttle(self, sent_ago: float, retry_after: float | None) -> None:
        self.calls.append(f"on_throttle {retry_after}")
        self.rate = 10.0

    def on_clean(self, sent_ago: float = 0.0) -> None:
        self.calls.append("on_clean")


def test_recording_quota_is_a_quota() -> None:
    quota: Quota = RecordingQuota(FakeTime(), fast=True)
    assert quota.try_admit()


async def test_checker_paces_by_the_quota_fast_path_without_awaiting_it() -> None:
    time = FakeTime()
    quota = RecordingQuota(time, fast=True)
    api = FakeApi(time)
    checker = Checker(api, limits(), clock=time.clock, sleep=time.sleep, quota=quota)
    await checker.check("13800000001")
    assert quota.calls == ["try_admit", "on_clean"]
    assert api.starts == [0.0] and checker.rate == 20.0


async def test_checker_waits_on_the_quota_and_reports_a_throttle_then_the_answer() -> None:
    time = FakeTime()

    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        return throttled(retry_after=1.0) if n == 0 else CheckOutcome(phone=phone, has_orders=True)

    quota = RecordingQuota(time, fast=False)
    api = FakeApi(time, respond)
    checker = Checker(api, limits(max_in_flight=4), clock=time.clock, sleep=time.sleep,
                      quota=quota)  # fmt: skip
    outcome = await checker.check("13800000001")
    assert outcome.has_orders
    assert quota.calls == ["try_admit", "admit", "on_throttle 1.0", "try_admit", "admit",
                           "on_clean"]  # fmt: skip
    assert api.starts == [0.5, 1.0]
    assert checker.rate == 10.0  # the quota's rate, learned after its next admit
    assert checker.status().state == "throttled"


async def test_checker_gives_up_when_the_quota_slot_falls_after_the_deadline() -> None:
    time = FakeTime()
    quota = RecordingQuota(time, fast=False, wait=5.0)
    api = FakeApi(time)
    checker = Checker(api, limits(), clock=time.clock, sleep=time.sleep, quota=quota)
    with pytest.raises(Exception, match="deadline"):
        await checker.check("13800000001", deadline=1.0)
    assert api.calls == [] and checker.in_flight == 0


async def test_checker_without_a_quota_paces_by_its_own_local_quota() -> None:
    time = FakeTime()
    api = FakeApi(time)
    checker = Checker(api, limits(max_per_second=10.0), clock=time.clock, sleep=time.sleep)
    assert isinstance(checker.quota, LocalQuota)
    await asyncio.gather(*(checker.check(p) for p in phones(3)))
    assert api.starts == [0.0, pytest.approx(0.102), pytest.approx(0.204)]
    status = checker.status()
    assert isinstance(status, CheckerStatus) and status.state == "ok" and status.rate == 10.0


async def test_a_one_lookup_checker_keeps_no_cache_and_no_single_flight() -> None:
    # One lookup never asks the same number twice: neither could ever hit, so neither
    # costs anything. A second ask of a number (not something find does) is sent again.
    time = FakeTime()
    api = FakeApi(time)
    checker = Checker(api, limits(cache_ttl=300.0), clock=time.clock, sleep=time.sleep,
                      one_lookup=True)  # fmt: skip
    await checker.check("13800000001")
    await checker.check("13800000001")
    assert api.calls == ["13800000001", "13800000001"]
    assert checker.counters.cache_hits == checker.counters.deduped == 0
    shared = Checker(api, limits(cache_ttl=300.0), clock=time.clock, sleep=time.sleep)
    await shared.check("13800000002")
    await shared.check("13800000002")
    assert api.calls.count("13800000002") == 1 and shared.counters.cache_hits == 1
