"""Time, said honestly: a plan that cannot finish within the deadline at the rate is said
before the first check, and a lookup the deadline ended says so and counts only real
failures as failures."""

from __future__ import annotations

import asyncio

import pytest

from lookup.domain.models import Limits
from lookup.engine.matcher import deadline_warning, find
from lookup.orders import FakeOrderApi

GUARD = 30.0


@pytest.mark.parametrize(
    ("candidates", "rate", "deadline", "per_request", "says"),
    [
        (10_000, 20.0, 300.0, 1, ("at 20 checks/s the 10,000 candidates need about 500 s, "
                                "more than the 300 s deadline: give --deadline 600")),
        (10_000, 20.0, 300.0, 100, None),  # a batch endpoint: 100 requests, 5 s
        (100_000, 20.0, 10.0, 100, ("at 20 requests/s of 100 numbers the 100,000 candidates "
                                    "need about 50 s")),
        (6_000, 20.0, 300.0, 1, None),  # exactly 300 s: it fits
        (10_000, None, 300.0, 1, None),  # no ceiling
    ],
)  # fmt: skip
def test_deadline_warning(
    candidates: int, rate: float | None, deadline: float, per_request: int, says: str | None
) -> None:
    text = deadline_warning(candidates, rate, deadline, per_request)
    if says is None:
        assert text is None
    else:
        assert text is not None and text.startswith(says)
        assert "a hint" in text and "more digits" in text


async def test_a_lookup_the_deadline_ended_says_so_and_counts_no_failures() -> None:
    api = FakeOrderApi(lambda phone: False)
    limits = Limits(max_per_second=20, start_rate=20, deadline=1.0)
    async with asyncio.timeout(GUARD):
        result = await find("1385715****", api=api, limits=limits)
    assert result.status == "inconclusive"
    reason = result.reason or ""
    assert reason.startswith("the deadline (1 s) came: ")
    assert "no check failed" in reason and "kept failing" not in reason
    assert "at 20 checks/s the 10,000 candidates need about 500 s" in reason
    assert sum(t.errors for t in result.tiers) == 0


async def test_real_failures_are_still_counted_when_the_deadline_comes() -> None:
    calls = 0

    def flaky(phone: str) -> bool:
        nonlocal calls
        calls += 1
        if calls % 2:
            from lookup.domain.errors import TransientApiError

            raise TransientApiError("busy", status=503)
        return False

    limits = Limits(max_per_second=50, start_rate=50, deadline=1.0, max_attempts=1)
    async with asyncio.timeout(GUARD):
        result = await find("1385715****", api=FakeOrderApi(flaky), limits=limits)
    assert result.status == "inconclusive"
    failed = sum(t.errors for t in result.tiers)
    assert failed > 0
    assert f"{failed:,} checks failed" in (result.reason or "")
