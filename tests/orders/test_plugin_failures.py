"""Plug-ins that fail in every way: whatever a check raises is a failed check, every call is
bounded by the per-check timeout, and answers are held to the one rule of ``orders.base``."""

from __future__ import annotations

import asyncio
import threading
from types import ModuleType

import pytest

from lookup.domain.errors import ConfigError, FatalApiError, TransientApiError
from lookup.domain.models import CheckOutcome
from lookup.orders import load_plugin
from lookup.orders.calls import DaemonThreads

HIT = "13812341234"
GUARD = 30.0  # a hang guard only: every call below ends at its timeout (a fraction of a second)


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "support"))
    import plugins_for_tests

    return plugins_for_tests


@pytest.mark.parametrize(
    ("name", "raised"),
    [
        ("RaisesSystemExit", "SystemExit"),
        ("RaisesKeyboardInterrupt", "KeyboardInterrupt"),
        ("RaisesGeneratorExit", "GeneratorExit"),
        ("RaisesCustomBase", "CustomBase: odd"),
        ("AsyncRaisesSystemExit", "SystemExit"),
        ("AsyncRaisesKeyboardInterrupt", "KeyboardInterrupt"),
        ("AsyncRaisesCancelled", "CancelledError"),
        ("AsyncRaisesGeneratorExit", "GeneratorExit"),
        ("AsyncRaisesCustomBase", "CustomBase: odd"),
        ("failing_factory", None),
    ],
)
async def test_any_base_exception_is_a_failed_check(
    plugins: ModuleType, name: str, raised: str | None
) -> None:
    if raised is None:  # a factory that raises is a start-up error, not a check
        with pytest.raises(ConfigError, match="RuntimeError: no session for 138\\*\\*\\*\\*2046"):
            load_plugin(f"plugins_for_tests:{name}")
        return
    api = load_plugin(f"plugins_for_tests:{name}")
    async with asyncio.timeout(GUARD), api:
        with pytest.raises(TransientApiError, match=raised) as info:
            await api.check(HIT)
        assert info.value.kind == "other"
        # the plug-in is still usable: the next check fails the same way, nothing escaped
        with pytest.raises(TransientApiError):
            await api.check(HIT)


async def test_an_exception_whose_str_raises_is_still_one_failed_check(
    plugins: ModuleType,
) -> None:
    api = load_plugin("plugins_for_tests:RaisesUnprintable")
    async with api:
        with pytest.raises(TransientApiError, match=r"_Unprintable: \(its message cannot be shown"):
            await api.check(HIT)


@pytest.mark.parametrize("name", ["BlocksForever", "AwaitsForever"])
async def test_a_blocked_check_is_abandoned_at_the_timeout(plugins: ModuleType, name: str) -> None:
    api = load_plugin(f"plugins_for_tests:{name}", call_timeout=0.2)
    async with asyncio.timeout(GUARD), api:
        with pytest.raises(TransientApiError, match=r"no answer within 0\.2 s") as info:
            await api.check(HIT)
    assert info.value.kind == "timeout"


async def test_the_callers_own_cancellation_passes(plugins: ModuleType) -> None:
    api = load_plugin("plugins_for_tests:AwaitsForever", call_timeout=GUARD)
    async with api:
        task = asyncio.create_task(api.check(HIT))
        for _ in range(3):  # let it reach the plug-in's await
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()


async def test_stuck_threads_never_block_the_others() -> None:
    pool = DaemonThreads(max_threads=2)
    gate = threading.Event()
    try:
        stuck = [pool.submit(gate.wait) for _ in range(2)]
        _, future = pool.submit(lambda: 42)  # queued: both threads are busy
        assert not future.done() and pool.threads == 2
        gate.set()
        assert await asyncio.wait_for(future, GUARD) == (True, 42)
        for _, f in stuck:
            assert (await asyncio.wait_for(f, GUARD))[0] is True
    finally:
        gate.set()


async def test_exceptions_come_back_as_values_from_threads() -> None:
    pool = DaemonThreads(max_threads=1)

    def exits() -> None:
        raise SystemExit(0)

    _, future = pool.submit(exits)
    ok, value = await asyncio.wait_for(future, GUARD)
    assert ok is False and isinstance(value, SystemExit)


# -- answers that are not answers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("NegativeCount", "answered -5 \\(order_count\\)"),
        ("MakesNegativeCount", "invalid CheckOutcome"),
        ("HasOrdersWithZero", "has_orders=True with order_count=0"),
        ("AnswersAnotherNumber", "answered for 138\\*\\*\\*\\*0000 when asked about"),
    ],
)
async def test_implausible_outcomes_are_unexpected_answers(
    plugins: ModuleType, name: str, says: str
) -> None:
    api = load_plugin(f"plugins_for_tests:{name}")
    async with api:
        with pytest.raises(FatalApiError, match=f"unexpected answer: .*{says}"):
            await api.check(HIT)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"order_count": -5},
        {"order_count": True},
        {"order_count": 1.5},
        {"order_count": 10**12},
        {"has_orders": 1},
        {"has_orders": "yes"},
    ],
)
def test_the_model_refuses_implausible_fields(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"phone": HIT, "has_orders": False, **kwargs}
    with pytest.raises(ValueError, match="CheckOutcome"):
        CheckOutcome(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "spec", ["../etc:passwd", "os.path/../x:y", "plugins_for_tests:a-b", "a b:c", "x:1y"]
)
def test_a_plugin_spec_that_is_a_path_is_bad_input(spec: str) -> None:
    with pytest.raises(ConfigError, match="dotted Python names"):
        load_plugin(spec)
