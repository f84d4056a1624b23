"""The Checker's quota hook (lookup.engine.policies.quota): checkers that pace by one budget.

Two checkers over one :class:`LocalQuota` stand for two processes over one shared quota:
they share the spacing, a throttle seen by one lowers (once) the rate of both, a
``Retry-After`` pauses both. In-memory fakes of :class:`SharedBreaker` and
:class:`SharedOutcomes` pin what the checker asks of the optional parts. Time is virtual
(``FakeTime`` of support.fakes).
"""

from __future__ import annotations

import itertools
import math

from support.fakes import FakeTime
from test_checker import (
    FakeApi,
    answer,
    outcome_or_error,
    phones,
    settle,
    throttled,
    transient,
)

from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker, CheckStats
from lookup.engine.policies import UNSHARED_BREAKER, LocalQuota, SharedBreaker, SharedOutcomes


def quota_checker(
    time: FakeTime, api: FakeApi, quota: LocalQuota | SharedQuota, **overrides: object
) -> Checker:
    base: dict[str, object] = {"max_per_second": 10.0, "cache_ttl": 0.0, "max_in_flight": 4}
    return Checker(
        api, Limits(**(base | overrides)), clock=time.clock, sleep=time.sleep, quota=quota
    )


def gaps(starts: list[float]) -> list[float]:
    ordered = sorted(starts)
    return [b - a for a, b in itertools.pairwise(ordered)]


async def test_two_checkers_share_one_spacing_and_not_their_own() -> None:
    time = FakeTime()
    quota = LocalQuota(10.0, clock=time.clock, sleep=time.sleep)
    a_api, b_api = FakeApi(time), FakeApi(time)
    a, b = quota_checker(time, a_api, quota), quota_checker(time, b_api, quota)
    for n, phone in enumerate(phones(10)):
        await (a if n % 2 else b).check(phone)
    starts = a_api.starts + b_api.starts
    assert len(starts) == 10
    # One budget of 10/s (2 % headroom) over both: every start ~0.102 s after the last.
    assert min(gaps(starts)) >= 0.1
    assert max(starts) - min(starts) >= 0.9
    assert a.rate == b.rate == quota.rate == 10.0


async def test_a_throttle_seen_by_one_lowers_the_rate_of_both_once() -> None:
    time = FakeTime()
    quota = LocalQuota(10.0, clock=time.clock, sleep=time.sleep)

    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        return throttled() if n == 0 else answer(phone)

    a = quota_checker(time, FakeApi(time, respond), quota)
    b = quota_checker(time, FakeApi(time), quota)
    assert (await a.check("13800000008")).has_orders
    assert quota.pacer.decreases == 1
    assert a.rate == b.rate == quota.rate and quota.rate is not None and quota.rate < 10.0
    assert a.status().state == "throttled" and a.counters.throttled == 1
    # Both pace by the one quota only: no pacer of their own to hear a second decrease.
    assert a.quota is quota and b.quota is quota


async def test_retry_after_seen_by_one_pauses_both() -> None:
    time = FakeTime()
    quota = LocalQuota(10.0, clock=time.clock, sleep=time.sleep)

    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        return throttled(503, retry_after=3.0) if n == 0 else answer(phone)

    a = quota_checker(time, FakeApi(time, respond), quota)
    b_api = FakeApi(time)
    b = quota_checker(time, b_api, quota)
    first = await outcome_or_error(a.check("13800000001"))  # throttled, resent after 3 s
    assert isinstance(first, CheckOutcome)
    assert time.now >= 3.0
    quota.throttle(0.0, 2.0)  # another pause, seen by B only through the quota
    resume = time.now + 2.0
    assert b.status().state == "paused"
    await b.check("13800000002")
    assert b_api.starts == [resume]


async def test_deadline_before_the_shared_slot_sends_nothing() -> None:
    time = FakeTime()
    quota = LocalQuota(1.0, clock=time.clock, sleep=time.sleep)
    api = FakeApi(time)
    checker = quota_checker(time, api, quota, max_per_second=1.0)
    await checker.check("13800000001")
    late = await outcome_or_error(checker.check("13800000002", deadline=time.now + 0.5))
    assert not isinstance(late, CheckOutcome)
    assert "deadline" in str(late) and api.calls == ["13800000001"]


# -- the optional parts -------------------------------------------------------------------


class FakeSharedBreaker:
    """One breaker state for many checkers, in memory (what a store would hold)."""

    def __init__(self, time: FakeTime) -> None:
        self.time = time
        self.open_until = -math.inf
        self.prober: object | None = None
        self.events: list[str] = []

    def open_for(self) -> float:
        return max(0.0, self.open_until - self.time.now)

    async def opened(self, cooldown: float, error: str) -> None:
        self.events.append(f"opened {cooldown:.0f} {error}")
        self.open_until = self.time.now + cooldown
        self.prober = None

    async def claim_probe(self) -> bool:
        if self.open_for() > 0 or self.prober is not None:
            self.events.append("probe refused")
            return False
        self.prober = object()
        self.events.append("probe claimed")
        return True

    async def closed(self) -> None:
        self.events.append("closed")
        self.open_until = -math.inf
        self.prober = None


class FakeOutcomes:
    def __init__(self) -> None:
        self.known: dict[str, CheckOutcome] = {}
        self.claims: list[str] = []
        self.published: list[tuple[str, bool | None]] = []

    async def claim(self, phone: str) -> CheckOutcome | None:
        self.claims.append(phone)
        return self.known.get(phone)

    async def publish(self, phone: str, outcome: CheckOutcome | None) -> None:
        self.published.append((phone, None if outcome is None else outcome.has_orders))
        if outcome is not None:
            self.known[phone] = outcome


class SharedQuota(LocalQuota):
    """A LocalQuota that also shares a breaker and outcomes (as the Redis one does)."""

    def __init__(
        self,
        time: FakeTime,
        breaker: SharedBreaker | None = None,
        outcomes: SharedOutcomes | None = None,
    ) -> None:
        super().__init__(None, clock=time.clock, sleep=time.sleep)
        self.breaker = breaker if breaker is not None else UNSHARED_BREAKER
        self.outcomes = outcomes


async def test_one_checkers_open_breaker_holds_the_other_and_one_probe_closes_it() -> None:
    time = FakeTime()
    shared = FakeSharedBreaker(time)
    quota = SharedQuota(time, breaker=shared)
    down = {"on": True}

    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        return transient() if down["on"] else answer(phone)

    a_api, b_api = FakeApi(time, respond), FakeApi(time, respond)
    overrides = {"max_per_second": None, "breaker_threshold": 2, "breaker_cooldown": 10.0,
                 "max_attempts": 1}  # fmt: skip
    a = quota_checker(time, a_api, quota, **overrides)
    b = quota_checker(time, b_api, quota, **overrides)
    for phone in phones(2):
        assert not isinstance(await outcome_or_error(a.check(phone)), CheckOutcome)
    assert a.breaker_state == "open" and shared.events[0].startswith("opened 10 HTTP 503")

    # B has seen no failure, yet sends nothing while A's breaker is open: it waits.
    b_result = await outcome_or_error(b.check("13800000099", deadline=time.now + 5.0))
    assert b_api.calls == [] and b.breaker_state == "open"
    assert "circuit breaker" in str(b_result)

    down["on"] = False
    time.now += 10.0  # both cooldowns over: one of them probes, for both
    outcome = await b.check("13800000099")
    assert outcome.phone == "13800000099" and b.breaker_state == "closed"
    assert shared.events[-2:] == ["probe claimed", "closed"]
    await a.check("13800000098")  # A's own probe now finds the shared breaker closed
    assert a.breaker_state == "closed"
    assert len(a_api.calls) == 3 and len(b_api.calls) == 1


async def test_a_probe_claimed_elsewhere_makes_this_checker_wait() -> None:
    time = FakeTime()
    shared = FakeSharedBreaker(time)
    quota = SharedQuota(time, breaker=shared)
    api = FakeApi(time)
    checker = quota_checker(time, api, quota, max_per_second=None, breaker_cooldown=1.0)
    checker._breaker.hold(1.0)
    shared.prober = "another process"
    time.now += 1.0
    result = await outcome_or_error(checker.check("13800000001", deadline=time.now + 2.0))
    assert not isinstance(result, CheckOutcome) and api.calls == []
    assert shared.events and set(shared.events) == {"probe refused"}


async def test_shared_outcomes_answer_without_a_request_and_get_every_answer() -> None:
    time = FakeTime()
    outcomes = FakeOutcomes()
    outcomes.known["13800000008"] = CheckOutcome(phone="13800000008", has_orders=True)
    quota = SharedQuota(time, outcomes=outcomes)

    def respond(phone: str, n: int) -> CheckOutcome | Exception:
        return transient() if phone.endswith("3") else answer(phone)

    api = FakeApi(time, respond)
    checker = quota_checker(time, api, quota, max_per_second=None, max_attempts=1)
    stats = CheckStats()
    assert (await checker.check("13800000008", stats)).has_orders
    assert api.calls == [] and stats.cache_hits == 1 and stats.sent == 0
    assert not (await checker.check("13800000001", stats)).has_orders
    failed = await outcome_or_error(checker.check("13800000003", stats))
    assert not isinstance(failed, CheckOutcome)
    await settle()  # the release of a failed claim is not awaited by the check
    assert outcomes.claims == ["13800000008", "13800000001", "13800000003"]
    assert outcomes.published == [("13800000001", False), ("13800000003", None)]
