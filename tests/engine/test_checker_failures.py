"""Whatever a source raises is a failed check, never a "no"; every call is bounded by the
lookup's deadline. Real time, small deadlines: the sources below fail at once or block."""

from __future__ import annotations

import asyncio

import pytest

from lookup.domain.errors import TransientApiError
from lookup.domain.models import CheckOutcome, Limits
from lookup.engine.checker import Checker
from lookup.engine.matcher import find
from lookup.orders import FakeOrderApi

HIT = "13857152046"
GUARD = 30.0  # hang guard only


class CustomBase(BaseException):
    pass


RAISED = [
    SystemExit(0),
    KeyboardInterrupt(),
    GeneratorExit(),
    asyncio.CancelledError(),
    CustomBase("odd"),
    ValueError("a bug"),
]

FAST = Limits(max_attempts=1, backoff_base=0, max_per_second=None, start_rate=None,
              retry_budget_rate=1000, deadline=0.5)  # fmt: skip


def raising(exc: BaseException) -> FakeOrderApi:
    async def handler(phone: str) -> bool:
        raise exc

    return FakeOrderApi(handler)


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
async def test_a_stray_exception_is_a_transient_failure(exc: BaseException) -> None:
    checker = Checker(raising(exc), FAST)
    async with asyncio.timeout(GUARD):
        with pytest.raises(TransientApiError, match=f"raised {type(exc).__name__}") as info:
            await checker.check(HIT)
    assert info.value.kind == "other"
    assert checker.counters.transient_errors == 1


@pytest.mark.parametrize("exc", RAISED, ids=lambda e: type(e).__name__)
async def test_a_lookup_whose_checks_raise_is_inconclusive_never_not_found(
    exc: BaseException,
) -> None:
    async with asyncio.timeout(GUARD):
        result = await find("1385715204*", api=raising(exc), limits=FAST)
    assert result.status == "inconclusive"
    assert not result.complete
    assert "not 'no'" in (result.reason or "")


async def test_an_endless_await_is_cut_at_the_deadline() -> None:
    async def handler(phone: str) -> bool:
        await asyncio.Event().wait()
        return False

    api = FakeOrderApi(handler)
    async with asyncio.timeout(GUARD):
        result = await find("1385715204*", api=api, limits=FAST, deadline=0.3)
    assert result.status == "inconclusive"
    assert api.in_flight == 0


async def test_a_source_that_bounds_itself_gets_no_timer_until_the_deadline_nears() -> None:
    class Bounded(FakeOrderApi):
        call_timeout = 5.0

    api = Bounded(lambda phone: phone == HIT)
    checker = Checker(api, FAST)
    assert checker._self_bound == 5.0
    assert await checker.check(HIT, deadline=checker.clock() + 60) == CheckOutcome(
        phone=HIT, has_orders=True
    )


async def test_the_lookups_own_cancellation_is_not_a_failure() -> None:
    started = asyncio.Event()

    async def handler(phone: str) -> bool:
        started.set()
        await asyncio.Event().wait()
        return False

    checker = Checker(FakeOrderApi(handler), FAST)
    task = asyncio.create_task(checker.check(HIT))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert checker.counters.transient_errors == 0
